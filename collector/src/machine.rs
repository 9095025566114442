//! The PC a station runs on: the real one, or a simulated one.
//!
//! The station's logic is the same for both; only sampling the hardware and
//! carrying out commands differ. `simulate` runs many stations against
//! [`VirtualPc`]s in one process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netbar_protocol::local::{Evacuation, Notice, Shown as ShownNow};
use netbar_protocol::messages::{Action, Disk, LockState, NoticeLevel, Telemetry, Temperature};

use crate::actions;
use crate::config::Actions;
use crate::probe::{Probe, Use};
use crate::screen::Screens;

/// A simulated PC: what a customer does to it and what commands do to it.
#[derive(Debug)]
pub(crate) struct VirtualPc {
    pub(crate) locked: bool,
    /// A game runs (with or without a session).
    pub(crate) playing: bool,
    booted: Instant,
    noise: u64,
}

impl VirtualPc {
    pub(crate) fn new(seed: u64) -> VirtualPc {
        VirtualPc { locked: true, playing: false, booted: Instant::now(), noise: seed | 1 }
    }

    /// A number in [0, 1), from a per-PC xorshift: cheap and deterministic.
    fn jitter(&mut self) -> f64 {
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 7;
        self.noise ^= self.noise << 17;
        (self.noise >> 11) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self, lock_state: LockState, session: Option<String>) -> (Telemetry, Use) {
        let cpu = if self.playing { 45.0 + 30.0 * self.jitter() } else { 1.0 + 4.0 * self.jitter() };
        const GIB: u64 = 1 << 30;
        let usage = Use {
            interactive_users: u32::from(!self.locked),
            apps_running: u32::from(self.playing),
            input_idle: Some(if self.playing { Duration::from_millis(200) } else { Duration::from_secs(600) }),
        };
        let telemetry = Telemetry {
            cpu_percent: cpu,
            memory_used_bytes: if self.playing { 9 * GIB } else { 3 * GIB },
            memory_total_bytes: 16 * GIB,
            uptime_secs: self.booted.elapsed().as_secs(),
            temperatures: vec![Temperature { label: "CPU".into(), celsius: (35.0 + cpu * 0.45).round() }],
            disks: vec![Disk { mount: "C:\\".into(), free_bytes: 180_000_000_000, total_bytes: 512_000_000_000 }],
            interactive_users: usage.interactive_users,
            input_idle_ms: usage.input_idle.map(|idle| idle.as_millis() as u64),
            apps_running: usage.apps_running,
            lock_state,
            session,
        };
        (telemetry, usage)
    }
}

/// Samples the station's state.
#[derive(Debug)]
pub(crate) enum Sampler {
    Real(Box<Probe>),
    Virtual(Arc<Mutex<VirtualPc>>),
}

impl Sampler {
    pub(crate) fn sample(&mut self, lock_state: LockState, session: Option<String>) -> (Telemetry, Use) {
        match self {
            Sampler::Real(probe) => probe.sample(lock_state, session),
            Sampler::Virtual(pc) => match pc.lock() {
                Ok(mut pc) => pc.sample(lock_state, session),
                Err(poisoned) => poisoned.into_inner().sample(lock_state, session),
            },
        }
    }
}

/// Carries out commands and reads the lock state.
#[derive(Debug, Clone)]
pub(crate) enum Executor {
    /// The lock screen where one is attached, else the configured programs.
    Real(Actions, Option<Arc<Screens>>),
    Virtual(Arc<Mutex<VirtualPc>>),
}

/// How long the lock screen may take to show what it was told.
const SHOW_WAIT: Duration = Duration::from_secs(3);

impl Executor {
    /// Runs the action; `Err` says why it failed.
    pub(crate) async fn execute(&self, action: &Action) -> Result<(), String> {
        match self {
            Executor::Real(actions, screens) => {
                if let Some(screens) = screens {
                    match show(screens, action).await {
                        Shown::Done => return Ok(()),
                        Shown::NotAttached => {}
                        Shown::Failed(error) => return Err(error),
                    }
                }
                let result = match action {
                    Action::Lock { .. } => actions::run(&actions.lock, "", "").await,
                    Action::Unlock { .. } => actions::run(&actions.unlock, "", "").await,
                    Action::Notify { level, text, .. } => actions::run(&actions.notify, text, actions::level_name(*level)).await,
                    Action::RefuseLogin { .. } | Action::AllClear => Ok(String::new()),
                };
                result.map(|_| ())
            }
            Executor::Virtual(pc) => {
                let mut pc = pc.lock().map_err(|_| "virtual PC poisoned".to_owned())?;
                match action {
                    Action::Lock { .. } => {
                        pc.locked = true;
                        pc.playing = false;
                    }
                    Action::Unlock { .. } => pc.locked = false,
                    Action::Notify { .. } | Action::RefuseLogin { .. } | Action::AllClear => {}
                }
                Ok(())
            }
        }
    }

    /// The state the station is really in.
    pub(crate) async fn lock_state(&self) -> LockState {
        match self {
            Executor::Real(actions, screens) => match screens.as_ref().and_then(|screens| screens.shown()) {
                Some(ShownNow::Locked) => LockState::Locked,
                Some(ShownNow::Session) => LockState::Unlocked,
                None if actions.lock_state.is_empty() => LockState::Unknown,
                None => actions::lock_state(actions).await,
            },
            Executor::Virtual(pc) => match pc.lock() {
                Ok(pc) if pc.locked => LockState::Locked,
                Ok(_) => LockState::Unlocked,
                Err(_) => LockState::Unknown,
            },
        }
    }
}

/// What the lock screen made of an action.
enum Shown {
    Done,
    /// None is attached: the configured program carries it out.
    NotAttached,
    Failed(String),
}

/// Carries out `action` on the lock screen: what it must show changes
/// whether or not one is attached (one attaching later shows it); a lock
/// or unlock is done when the attached one shows it.
async fn show(screens: &Screens, action: &Action) -> Shown {
    let attached = screens.shown().is_some();
    match action {
        Action::Lock { .. } | Action::Unlock { .. } => {
            let locked = matches!(action, Action::Lock { .. });
            if locked {
                screens.update(|screen| screen.notice = None);
            }
            if !attached {
                screens.update(|screen| screen.locked = locked);
                return Shown::NotAttached;
            }
            if screens.show(locked, SHOW_WAIT).await {
                Shown::Done
            } else {
                Shown::Failed(format!(
                    "the lock screen did not show the {} within {} s",
                    if locked { "lock" } else { "session" },
                    SHOW_WAIT.as_secs()
                ))
            }
        }
        Action::Notify { level: NoticeLevel::Evacuation, text, incident, .. } => {
            let evacuation = Evacuation { incident: incident.clone().unwrap_or_default(), text: text.clone() };
            screens.update(|screen| screen.evacuation = Some(evacuation));
            if attached { Shown::Done } else { Shown::NotAttached }
        }
        Action::Notify { level, text, ends, .. } => {
            let notice = Notice { level: *level, text: text.clone(), ends: *ends, at: jiff::Timestamp::now() };
            screens.update(|screen| screen.notice = Some(notice));
            if attached { Shown::Done } else { Shown::NotAttached }
        }
        Action::AllClear => {
            screens.update(|screen| screen.evacuation = None);
            Shown::Done
        }
        Action::RefuseLogin { .. } => Shown::Done,
    }
}

/// A station's PC: how to sample it and how to command it.
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) sampler: Sampler,
    pub(crate) executor: Executor,
    /// The customer's lock screen, if this PC runs one.
    pub(crate) screens: Option<Arc<Screens>>,
}

impl Machine {
    /// The PC this process runs on.
    pub(crate) fn real(apps: &[String], actions: &Actions, screens: Option<Arc<Screens>>) -> Machine {
        Machine { sampler: Sampler::Real(Box::new(Probe::new(apps))), executor: Executor::Real(actions.clone(), screens.clone()), screens }
    }

    /// A simulated PC.
    pub(crate) fn simulated(pc: Arc<Mutex<VirtualPc>>) -> Machine {
        Machine { sampler: Sampler::Virtual(pc.clone()), executor: Executor::Virtual(pc), screens: None }
    }
}
