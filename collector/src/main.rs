//! `netbar-collector`: the station side of netbar.
//!
//! It reports the station's status, hardware and use to the venue agent over
//! MQTT, carries out the agent's commands, hands the lock screen's logins to
//! the agent and keeps what must arrive in an on-disk spool until the agent
//! acknowledges it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio::sync::mpsc;

mod actions;
mod config;
mod held;
mod link;
mod local;
mod machine;
mod probe;
mod pump;
mod screen;
mod sensors;
mod simulate;
mod spool;
mod station;

/// Reports a station's sessions, hardware and bridged sensors to the venue agent.
#[derive(Debug, Parser)]
#[command(name = "netbar-collector", version, about)]
struct Cli {
    /// The configuration file (default: $NETBAR_COLLECTOR_CONFIG, then the
    /// system path, then the user's config directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector in the foreground (the default).
    Run,
    /// Print the configuration with every key at its default, commented.
    PrintConfig {
        /// Windows' defaults (folders under %ProgramData%\netbar), whatever this system is.
        #[arg(long)]
        windows: bool,
    },
    /// Check the configuration file and exit.
    CheckConfig,
    /// Send a login ticket to the running collector, as the lock screen does.
    Login {
        /// The ticket the front desk printed.
        ticket: String,
    },
    /// End the session at this station, as the lock screen's logout button does.
    Logout,
    /// Install and start the system service (systemd on Linux, the service
    /// control manager on Windows) running with the given --config.
    InstallService {
        /// Where to write the systemd unit.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// Only write the unit; do not call systemctl.
        #[arg(long)]
        no_systemctl: bool,
    },
    /// Stop and remove the system service.
    UninstallService {
        /// Where the systemd unit is.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// Only remove the unit; do not call systemctl.
        #[arg(long)]
        no_systemctl: bool,
    },
    /// Make this station's TLS key and a certificate request for the venue
    /// CA (`netbar-agent enroll station ID --csr FILE`); the key stays here.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Run N virtual stations in this process against a broker, behaving
    /// like a venue (logins, games, idle, a smoke alarm on demand).
    Simulate(simulate::Args),
    /// Entry point for the Windows service control manager.
    #[command(hide = true)]
    Service,
    #[command(flatten)]
    Generate(netbar_manual::Generate),
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Write tls.key (readable by its owner only) and ID.csr to --out.
    Request {
        /// This station's id, as it will be enrolled.
        #[arg(long)]
        id: netbar_protocol::StationId,
        /// Where to write them (default: next to the system configuration file).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace a key made before (the certificate issued for it stops matching).
        #[arg(long)]
        force: bool,
    },
}

/// Makes the station's key and certificate request; returns the request's path.
fn pki_request(id: &netbar_protocol::StationId, out: &Path, force: bool) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let key_path = out.join("tls.key");
    if key_path.exists() && !force {
        anyhow::bail!("{} exists; --force replaces it (the certificate issued for it stops matching)", key_path.display());
    }
    netbar_host::private::create_folder(out)?;
    let key = rcgen::KeyPair::generate().context("cannot make a key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, id.as_str());
    let request = params.serialize_request(&key).context("cannot make the certificate request")?;
    netbar_host::private::write_private(&key_path, &key.serialize_pem())?;
    let request_path = out.join(format!("{id}.csr"));
    netbar_host::private::write_public(&request_path, &request.pem().context("certificate request")?)?;
    Ok(request_path)
}

use netbar_host::service::{self, COLLECTOR as SERVICE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netbar-collector: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn load(explicit: Option<&Path>) -> anyhow::Result<config::Config> {
    let path = config::locate(explicit).map_err(anyhow::Error::msg)?;
    Ok(config::Config::load(&path)?)
}

/// Runs the collector until `shutdown` resolves: the foreground `run` and
/// the Windows service both come here. A Windows service has no console, so
/// it logs to files by default.
fn run_service(config: Option<&Path>, as_service: bool, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config = load(config)?;
    let service_config = as_service.then_some(config.path.as_path());
    let _guard = netbar_host::logging::init(SERVICE.name, config.log.dir.as_deref(), service_config, config.log.keep_files)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let (logins, login_queue) = mpsc::channel(64);
        let listen = config.local.listen;
        let (tampers, tamper_queue) = mpsc::channel(16);
        let screens = screen::Screens::new(config.look(), config.actions.clone(), config.lock_screen.hung_after, true, tampers);
        if !config.lock_screen.program.is_empty() {
            let mut program = config.lock_screen.program.clone();
            program.extend(["--connect".to_owned(), listen.to_string()]);
            tokio::spawn(screen::keep_running(program, screens.clone()));
        }
        let served = screens.clone();
        tokio::spawn(async move {
            if let Err(error) = local::serve(listen, logins, Some(served)).await {
                tracing::error!("{error:#}");
            }
        });
        let client_id = format!("netbar-{}-{}", config.station.venue, config.station.id);
        let samples = sensors::start(&config.sensors, &client_id);
        let machine = machine::Machine::real(&config.telemetry.apps, &config.actions, Some(screens));
        station::run(config, machine, login_queue, samples, tamper_queue, shutdown).await
    })
}

/// Sends a request to the running collector's local interface and prints the answer.
fn local_request(cli: &Cli, request: serde_json::Value) -> anyhow::Result<()> {
    let address = load(cli.config.as_deref()).map(|config| config.local.listen).unwrap_or_else(|_| config::Config::default_listen());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    println!("{}", runtime.block_on(local::request(address, request))?);
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let target = |unit_dir: &Path, no_systemctl: bool| service::Target { unit_dir: unit_dir.to_owned(), systemctl: !no_systemctl };
    match cli.command {
        Some(Command::PrintConfig { windows }) => {
            print!("{}", config::default_text(windows));
            Ok(())
        }
        Some(Command::CheckConfig) => {
            let config = load(cli.config.as_deref())?;
            println!("configuration is valid: station {} of venue {}", config.station.id, config.station.venue);
            Ok(())
        }
        Some(Command::Login { ref ticket }) => local_request(&cli, serde_json::json!({ "ticket": ticket })),
        Some(Command::Logout) => local_request(&cli, serde_json::json!({ "logout": true })),
        Some(Command::InstallService { ref unit_dir, no_systemctl }) => {
            // Refuse to install a service that would fail at start.
            let path = config::locate(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
            config::Config::load(&path)?;
            let installed = service::install(&SERVICE, &target(unit_dir, no_systemctl), &path)?;
            println!("installed {}", installed.display());
            Ok(())
        }
        Some(Command::UninstallService { ref unit_dir, no_systemctl }) => {
            let removed = service::uninstall(&SERVICE, &target(unit_dir, no_systemctl))?;
            println!("removed {}", removed.display());
            Ok(())
        }
        Some(Command::Service) => {
            #[cfg(windows)]
            {
                let config = cli.config.clone();
                service::run_dispatcher(&SERVICE, Box::new(move |stop| run_service(config.as_deref(), true, stop)))
            }
            #[cfg(not(windows))]
            {
                anyhow::bail!("`service` is the Windows service entry point; on Linux, systemd runs `run`")
            }
        }
        Some(Command::Pki(PkiCommand::Request { id, out, force })) => {
            let out = out.unwrap_or_else(|| config::system_path().parent().map(Path::to_path_buf).unwrap_or_default());
            let request = pki_request(&id, &out, force)?;
            println!(
                "key {} (stays on this station) and request {}: take the request to the cashier PC and run `netbar-agent enroll station {id} --csr {}`",
                out.join("tls.key").display(),
                request.display(),
                request.file_name().map(|name| name.to_string_lossy()).unwrap_or_default()
            );
            Ok(())
        }
        Some(Command::Simulate(args)) => {
            let base = match &cli.config {
                Some(path) => Some(config::Config::load(path)?),
                None => None,
            };
            let _ = netbar_host::logging::init(SERVICE.name, None, None, 1);
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(simulate::run(base, args))
        }
        Some(Command::Generate(ref what)) => Ok(what.run(Cli::command())?),
        Some(Command::Run) | None => run_service(cli.config.as_deref(), false, netbar_host::shutdown()),
    }
}
