//! `netbar-collector simulate`: a venue in one process.
//!
//! N virtual stations run the real station logic (spool, delivery receipts,
//! commands, authentication) against simulated PCs, with customers who log
//! in with a ticket, play, log out, and now and then use a station without
//! registering. Every tenth station bridges a smoke detector; typing
//! `smoke [N]` on standard input sets it off, `clear [N]` clears it. With
//! `--desk`, customers wait for a real ticket from the front desk instead
//! of inventing one: `ticket N CODE` sends station N's next customer in
//! with CODE (what `netbar-agent demo` does). For demos and load tests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use netbar_protocol::messages::{Reading, SensorKind};
use netbar_protocol::{SensorId, StationId};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, Sensor, Source};
use crate::machine::{Machine, VirtualPc};
use crate::sensors::Sample;
use crate::station::{self, LocalCall, LoginAnswer, LoginCall};

/// Options of `simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many stations.
    #[arg(long, default_value_t = 20)]
    stations: usize,
    /// The venue (default: the config's, else "demo").
    #[arg(long)]
    venue: Option<String>,
    /// The broker's host (default: the config's, else 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// The broker's port (default: the config's, else 1883).
    #[arg(long)]
    port: Option<u16>,
    /// A directory of station keys: `<station>.key`, or `<station>/station.key`
    /// as `netbar-agent enroll station --out DIR` writes them.
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Where the stations' spools go (default: a directory under the system's temp dir).
    #[arg(long, value_name = "DIR")]
    spool_root: Option<PathBuf>,
    /// Time scale of customer behaviour: 0.1 makes everything ten times faster.
    #[arg(long, default_value_t = 1.0)]
    pace: f64,
    /// Telemetry interval, seconds.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// Customers log in only with tickets handed over on standard input
    /// (`ticket N CODE`), as a front desk would give them.
    #[arg(long)]
    desk: bool,
}

/// The id of simulated station `n` (from 1).
pub(crate) fn station_id(n: usize) -> String {
    format!("sim-{n:03}")
}

fn uniform(low: f64, high: f64) -> f64 {
    low + (high - low) * rand::random::<f64>()
}

/// Runs the simulation until Ctrl-C or `quit`.
pub(crate) async fn run(base: Option<Config>, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!((1..=20_000).contains(&args.stations), "--stations must be between 1 and 20000");
    anyhow::ensure!(args.pace > 0.0 && args.pace.is_finite(), "--pace must be a positive number");
    anyhow::ensure!((0.05..=3600.0).contains(&args.interval), "--interval must be between 0.05 and 3600 seconds");
    let name = args.venue.clone().or_else(|| base.as_ref().map(|c| c.station.venue.to_string())).unwrap_or_else(|| "demo".to_owned());
    let venue: netbar_protocol::VenueId = name.parse().with_context(|| format!("--venue {name:?}"))?;
    let spool_root = args.spool_root.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("netbar-simulate-{venue}")));
    let (stop, stopped) = watch::channel(false);
    let mut sensors: Vec<(usize, mpsc::Sender<Sample>)> = Vec::new();
    let mut desk: Vec<mpsc::Sender<String>> = Vec::new();
    let mut tasks = Vec::new();
    for n in 1..=args.stations {
        let id: StationId = station_id(n).parse().context("station id")?;
        let mut config = match &base {
            Some(base) => base.clone(),
            None => Config::parse(std::path::Path::new("(simulate)"), crate::config::DEFAULT_CONFIG).context("default config")?,
        };
        config.station.venue = venue.clone();
        config.station.id = id.clone();
        // `<dir>/<id>.key`, or `<dir>/<id>/station.key` as `netbar-agent enroll station --out <dir>` writes it.
        config.station.key_file = args.keys_dir.as_ref().map(|dir| {
            let flat = dir.join(format!("{id}.key"));
            if flat.exists() { flat } else { dir.join(id.as_str()).join("station.key") }
        });
        if let Some(host) = &args.host {
            config.broker.host = host.clone();
        }
        if let Some(port) = args.port {
            config.broker.port = port;
        }
        config.telemetry.interval = Duration::from_secs_f64(args.interval);
        config.spool.dir = Some(spool_root.join(id.as_str()));
        config.sensors.clear();
        let (sample_sender, samples) = mpsc::channel(16);
        if n % 10 == 1 {
            let sensor: SensorId = format!("smoke-{id}").parse().context("sensor id")?;
            config.sensors.push(Sensor {
                id: sensor,
                kind: SensorKind::Smoke,
                source: Source::Simulated,
                silent_after: Duration::from_secs(3600),
            });
            let _ = sample_sender.try_send(Sample {
                sensor: 0,
                reading: Reading::Alarm { active: false },
                battery_percent: Some(95),
                tamper: false,
            });
            sensors.push((n, sample_sender));
        }
        let pc = Arc::new(Mutex::new(VirtualPc::new((n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))));
        let (locals, local_calls) = mpsc::channel(8);
        let tickets = args.desk.then(|| {
            let (sender, tickets) = mpsc::channel(4);
            desk.push(sender);
            tickets
        });
        tasks.push(tokio::spawn(customer(n, pc.clone(), locals, args.pace, stopped.clone(), tickets)));
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tasks.push(tokio::spawn(async move {
            // A simulated PC has no lock screen to tamper with.
            let (_, tampers) = tokio::sync::mpsc::channel(1);
            if let Err(error) = station::run(config, Machine::simulated(pc), local_calls, samples, tampers, shutdown).await {
                tracing::error!(station = %id, "{error:#}");
            }
        }));
    }
    eprintln!("simulating {} stations of venue {venue}; type `smoke [N]`, `clear [N]`, `ticket N CODE` or `quit`", args.stations);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let mut words = line.split_whitespace();
                    let verb = words.next().unwrap_or("");
                    let target: Option<usize> = words.next().and_then(|word| word.parse().ok());
                    if verb == "ticket" {
                        match (target.and_then(|n| desk.get(n.wrapping_sub(1))), words.next()) {
                            (Some(customers), Some(code)) => {
                                let _ = customers.send(code.to_owned()).await;
                            }
                            _ => eprintln!("`ticket N CODE` needs --desk and a station number from 1 to {}", args.stations),
                        }
                        continue;
                    }
                    let active = match verb {
                        "smoke" => true,
                        "clear" => false,
                        "quit" | "exit" => break,
                        "" => continue,
                        other => {
                            eprintln!("unknown command {other:?}: smoke [N], clear [N], quit");
                            continue;
                        }
                    };
                    let sensor = sensors.iter().find(|(n, _)| target.is_none_or(|t| t == *n));
                    match sensor {
                        Some((n, samples)) => {
                            let _ = samples.send(Sample { sensor: 0, reading: Reading::Alarm { active }, battery_percent: Some(95), tamper: false }).await;
                            eprintln!("smoke detector of {} {}", station_id(*n), if active { "alarming" } else { "clear" });
                        }
                        None => eprintln!("station {} bridges no smoke detector (every tenth does: 1, 11, 21, …)", target.unwrap_or(0)),
                    }
                }
                // Standard input closed (a service, a pipe): run until Ctrl-C.
                Ok(None) | Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    break;
                }
            },
        }
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// A customer at station `n`: comes, logs in, plays, leaves; sometimes plays
/// without logging in. With `desk`, customers come with the tickets it hands over.
async fn customer(
    n: usize,
    pc: Arc<Mutex<VirtualPc>>,
    locals: mpsc::Sender<LocalCall>,
    pace: f64,
    mut stopped: watch::Receiver<bool>,
    mut desk: Option<mpsc::Receiver<String>>,
) {
    let pause = |low: f64, high: f64| Duration::from_secs_f64(uniform(low, high) * pace);
    let set_playing = |playing: bool| {
        if let Ok(mut pc) = pc.lock() {
            pc.playing = playing;
        }
    };
    let mut visit = 0u32;
    loop {
        let ticket = match desk.as_mut() {
            None => {
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    _ = tokio::time::sleep(pause(5.0, 40.0)) => {}
                }
                visit += 1;
                format!("T-{n:03}-{visit}")
            }
            Some(tickets) => {
                let ticket = tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    ticket = tickets.recv() => match ticket {
                        Some(ticket) => Some(ticket),
                        None => return,
                    },
                    _ = tokio::time::sleep(pause(300.0, 1800.0)) => None,
                };
                match ticket {
                    Some(ticket) => ticket,
                    // Nobody sent over for a while: now and then someone sits down anyway.
                    None => {
                        if rand::random::<f64>() < 0.05 {
                            set_playing(true);
                            tokio::time::sleep(pause(20.0, 60.0)).await;
                            set_playing(false);
                        }
                        continue;
                    }
                }
            }
        };
        if desk.is_none() && rand::random::<f64>() < 0.05 {
            // Someone sits down and starts a game without registering.
            set_playing(true);
            tokio::time::sleep(pause(20.0, 60.0)).await;
            set_playing(false);
            continue;
        }
        let (answer, answered) = oneshot::channel();
        if locals.send(LocalCall::Login(LoginCall { ticket, answer })).await.is_err() {
            return;
        }
        if let Ok(LoginAnswer::Unlocked { .. }) = answered.await {
            set_playing(true);
            tokio::time::sleep(pause(60.0, 600.0)).await;
            let (answer, _answered) = oneshot::channel();
            if locals.send(LocalCall::Logout(answer)).await.is_err() {
                return;
            }
            set_playing(false);
        }
    }
}
