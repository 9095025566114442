//! Reading the station's hardware and use, cheaply.
//!
//! One [`Probe`] lives for the whole run and refreshes only what telemetry
//! needs: global CPU, memory, component temperatures, disks and the process
//! list (names only). Nothing is re-enumerated that can be refreshed.
//!
//! Windows: the CPU's busy share comes from the system's own idle and busy
//! times (GetSystemTimes) rather than sysinfo's performance counters, which
//! need the PDH service a locked-down or damaged PC may lack; the users'
//! sessions and the console's input idle time from Remote Desktop Services
//! (WTSEnumerateSessions), which a service in session 0 can ask.

use std::time::Duration;

use netbar_protocol::messages::{Disk, LockState, Telemetry, Temperature};
use sysinfo::{Components, Disks, MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System, UpdateKind};

/// What the probe saw besides the telemetry body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Use {
    /// Users logged in at the console.
    pub(crate) interactive_users: u32,
    /// Configured applications running.
    pub(crate) apps_running: u32,
    /// Time since the last keyboard or mouse input, when the OS tells it.
    pub(crate) input_idle: Option<Duration>,
}

/// The station's sensors of its own state.
pub(crate) struct Probe {
    system: System,
    /// The processors' times at the last sample (Windows).
    #[cfg(windows)]
    cpu_times: Option<netbar_host::win32::CpuTimes>,
    components: Components,
    disks: Disks,
    apps: Vec<String>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("apps", &self.apps).finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe watching for the named applications.
    pub(crate) fn new(apps: &[String]) -> Probe {
        let refresh = RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram());
        #[cfg(not(windows))]
        let refresh = refresh.with_cpu(sysinfo::CpuRefreshKind::nothing().with_cpu_usage());
        Probe {
            system: System::new_with_specifics(refresh),
            #[cfg(windows)]
            cpu_times: netbar_host::win32::cpu_times().ok(),
            components: Components::new_with_refreshed_list(),
            disks: Disks::new_with_refreshed_list(),
            apps: apps.iter().map(|app| app.to_lowercase()).collect(),
        }
    }

    /// Samples the station now.
    pub(crate) fn sample(&mut self, lock_state: LockState, session: Option<String>) -> (Telemetry, Use) {
        let cpu = self.cpu_percent();
        self.system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.components.refresh(false);
        self.disks.refresh(false);
        let apps_running = if self.apps.is_empty() {
            0
        } else {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::All,
                true,
                ProcessRefreshKind::nothing().with_exe(UpdateKind::Never),
            );
            let running = self
                .system
                .processes()
                .values()
                .filter(|process| {
                    let name = process.name().to_string_lossy().to_lowercase();
                    self.apps.iter().any(|app| is_app(&name, app))
                })
                .count();
            u32::try_from(running).unwrap_or(u32::MAX)
        };
        let temperatures = self
            .components
            .iter()
            .filter_map(|component| {
                let celsius = f64::from(component.temperature()?);
                ((-50.0..=150.0).contains(&celsius)).then(|| Temperature { label: truncate(component.label(), 64), celsius })
            })
            .take(netbar_protocol::messages::MAX_LIST)
            .collect();
        let disks = self
            .disks
            .iter()
            .map(|disk| Disk {
                mount: truncate(&disk.mount_point().to_string_lossy(), 256),
                free_bytes: disk.available_space().min(disk.total_space()),
                total_bytes: disk.total_space(),
            })
            .take(netbar_protocol::messages::MAX_LIST)
            .collect();
        let (interactive_users, input_idle) = users();
        let usage = Use { interactive_users, apps_running, input_idle };
        let telemetry = Telemetry {
            cpu_percent: if cpu.is_finite() { cpu.clamp(0.0, 100.0) } else { 0.0 },
            memory_used_bytes: self.system.used_memory().min(self.system.total_memory()),
            memory_total_bytes: self.system.total_memory(),
            uptime_secs: System::uptime(),
            temperatures,
            disks,
            interactive_users: usage.interactive_users,
            input_idle_ms: usage.input_idle.map(|idle| u64::try_from(idle.as_millis()).unwrap_or(u64::MAX)),
            apps_running,
            lock_state,
            session,
        };
        (telemetry, usage)
    }

    /// The processors' busy share since the last sample, in percent.
    #[cfg(not(windows))]
    fn cpu_percent(&mut self) -> f64 {
        self.system.refresh_cpu_usage();
        f64::from(self.system.global_cpu_usage())
    }

    #[cfg(windows)]
    fn cpu_percent(&mut self) -> f64 {
        let now = netbar_host::win32::cpu_times().ok();
        let busy = match (now, self.cpu_times) {
            (Some(now), Some(before)) => now.busy_percent_since(&before),
            _ => 0.0,
        };
        self.cpu_times = now.or(self.cpu_times);
        busy
    }
}

/// Whether a process named `name` is the application `app` (both lower
/// case). Linux keeps only the first 15 bytes of a process name.
fn is_app(name: &str, app: &str) -> bool {
    const LINUX_COMM: usize = 15;
    name == app || (cfg!(target_os = "linux") && name.len() == LINUX_COMM && app.starts_with(name))
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Users logged in at a terminal or display (from utmp), and the input
/// idle time, which a system service on Linux cannot read without a
/// connection to the customer's display server: reported as unknown rather
/// than guessed.
#[cfg(not(windows))]
fn users() -> (u32, Option<Duration>) {
    // glibc's struct utmp on 64-bit Linux: 384 bytes, ut_type (i32) first;
    // USER_PROCESS = 7 marks a logged-in session.
    const RECORD: usize = 384;
    const USER_PROCESS: i32 = 7;
    let Ok(bytes) = std::fs::read("/var/run/utmp") else { return (0, None) };
    let sessions = bytes
        .chunks_exact(RECORD)
        .filter(|record| record.get(..4).and_then(|b| b.try_into().ok()).map(i32::from_ne_bytes) == Some(USER_PROCESS))
        .count();
    (u32::try_from(sessions).unwrap_or(u32::MAX), None)
}

/// Active sessions with a user logged on, and the console session's input
/// idle time when Windows keeps it.
#[cfg(windows)]
fn users() -> (u32, Option<Duration>) {
    match netbar_host::win32::sessions() {
        Ok(sessions) => (sessions.active, sessions.input_idle),
        Err(error) => {
            tracing::debug!(%error, "cannot enumerate the sessions");
            (0, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_a_valid_telemetry_body() {
        let mut probe = Probe::new(&["definitely-not-running-7f3a".to_owned()]);
        let (telemetry, usage) = probe.sample(LockState::Unknown, None);
        assert!(telemetry.memory_total_bytes > 0, "{telemetry:?}");
        assert_eq!(usage.apps_running, 0);
        netbar_protocol::Message::from(telemetry.clone()).validate().unwrap();
        let (again, _) = probe.sample(LockState::Locked, Some("s-1".into()));
        assert_eq!(again.lock_state, LockState::Locked);
        assert!(again.uptime_secs >= telemetry.uptime_secs);
    }

    #[test]
    fn configured_apps_are_counted() {
        let own = std::env::current_exe().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let mut probe = Probe::new(&[own.to_uppercase()]);
        let (telemetry, usage) = probe.sample(LockState::Unknown, None);
        assert!(usage.apps_running >= 1, "the test process itself runs: {own}");
        assert_eq!(telemetry.apps_running, usage.apps_running);
    }

    #[test]
    fn app_names() {
        assert!(is_app("steam.exe", "steam.exe"));
        assert!(!is_app("steam", "steam.exe"));
        assert_eq!(is_app("leagueclientux.", "leagueclientux.exe"), cfg!(target_os = "linux"));
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("温度传感器", 7), "温度");
        assert_eq!(truncate("CPU", 64), "CPU");
    }
}
