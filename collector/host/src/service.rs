//! Installing netbar's daemons as system services, and running as one.
//!
//! Linux: a hardened systemd unit. Each daemon runs as its own system user
//! (`netbar` for the agent, `netbar-collector` for the collector, made by
//! the package or by `install-service`), with a private state directory
//! only it can read (the agent's records), the rest of the file system
//! read-only, no new privileges, a system call filter, a memory ceiling,
//! and restarts on failure. The collector locks the customer's session
//! through logind, which a polkit rule (deploy/debian/) allows its user.
//! Logs go to standard error, which systemd sends to the journal.
//!
//! Windows: a service registered with the service control manager through
//! the `windows-service` crate, started automatically and restarted on
//! failure (5 s, 5 s, 60 s; also when it stops with an error rather than
//! crashing), logging to daily files in `logs` beside its configuration
//! (as installed, `%ProgramData%\netbar\logs`). A service that cannot
//! start or stops on an error writes why to the Application event log
//! (source: the service's name) and stops with the service-specific exit
//! code [`FAILED`], which `sc query` shows and which sets the recovery
//! actions off.
//!
//! Installing and removing are idempotent on both systems: installing over
//! an installed service updates it, removing an absent one succeeds.

use std::path::{Path, PathBuf};

/// The service-specific exit code of a service that stopped on an error.
pub const FAILED: u32 = 1;

/// What differs between the daemons.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The service's name on both systems, and its state directory's.
    pub name: &'static str,
    pub description: &'static str,
    /// The command line after the binary, `{config}` standing for the path.
    pub arguments: &'static str,
    /// The same for the Windows service control manager's entry point.
    pub windows_arguments: &'static str,
    pub memory_max: &'static str,
    /// Open files (the agent's embedded bus holds one per station).
    pub open_files: u32,
    pub cpu_weight: u32,
    /// The system user it runs as.
    pub user: &'static str,
    /// Its folder under /var/lib (the default data or spool folder).
    pub state_directory: &'static str,
}

/// How the venue agent is installed.
pub const AGENT: Service = Service {
    name: "netbar-agent",
    description: "netbar venue agent",
    arguments: "run --config {config}",
    windows_arguments: "service --config {config}",
    memory_max: "512M",
    // The embedded bus holds a socket per station.
    open_files: 65536,
    cpu_weight: 100,
    user: "netbar",
    // The default `[data] dir`.
    state_directory: "netbar",
};

/// How a station's collector is installed.
pub const COLLECTOR: Service = Service {
    name: "netbar-collector",
    description: "netbar station collector",
    arguments: "--config {config} run",
    windows_arguments: "--config {config} service",
    memory_max: "64M",
    open_files: 1024,
    cpu_weight: 20,
    user: "netbar-collector",
    state_directory: "netbar-collector",
};

/// The daemon a service runs: it runs until the future it is given
/// resolves (the service was asked to stop) and says why if it fails.
pub type Daemon = Box<dyn FnOnce(Stop) -> anyhow::Result<()> + Send>;

/// Resolves when the service control manager asks the service to stop.
pub type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The systemd unit for `binary` reading `config`.
pub fn systemd_unit(service: &Service, binary: &Path, config: &Path) -> String {
    let arguments = service.arguments.replace("{config}", &config.display().to_string());
    format!(
        "\
[Unit]
Description={description}
Documentation=https://github.com/netbar/netbar
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart={binary} {arguments}
Restart=always
RestartSec=2
User={user}
# Group netbar may read /etc/netbar (configuration and keys, 0640).
Group=netbar
# Its state (the agent's records and CA, the collector's spool) lives in
# /var/lib/{state}, {user}'s only.
StateDirectory={state}
StateDirectoryMode=0700
UMask=0077
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CPUWeight={cpu_weight}
MemoryMax={memory_max}
LimitNOFILE={open_files}
StandardError=journal
Environment=NETBAR_LOG=info

[Install]
WantedBy=multi-user.target
",
        description = service.description,
        binary = binary.display(),
        user = service.user,
        state = service.state_directory,
        cpu_weight = service.cpu_weight,
        memory_max = service.memory_max,
        open_files = service.open_files,
    )
}

/// Where the unit goes, and whether to call systemctl.
#[derive(Debug, Clone)]
pub struct Target {
    pub unit_dir: PathBuf,
    pub systemctl: bool,
}

/// Installs the unit and, unless told not to, enables and starts it.
#[cfg(not(windows))]
pub fn install(service: &Service, target: &Target, config: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let binary = std::env::current_exe().context("cannot find this binary's own path")?;
    let config = std::path::absolute(config).with_context(|| format!("cannot resolve {}", config.display()))?;
    let unit = target.unit_dir.join(format!("{}.service", service.name));
    std::fs::create_dir_all(&target.unit_dir).with_context(|| format!("cannot create {}", target.unit_dir.display()))?;
    std::fs::write(&unit, systemd_unit(service, &binary, &config)).with_context(|| format!("cannot write {}", unit.display()))?;
    if target.systemctl {
        add_user(service.user)?;
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", service.name])?;
    }
    Ok(unit)
}

/// Stops, disables and removes the unit.
#[cfg(not(windows))]
pub fn uninstall(service: &Service, target: &Target) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let unit = target.unit_dir.join(format!("{}.service", service.name));
    if target.systemctl {
        // Not running or not enabled is fine: the goal is its absence.
        let _ = systemctl(&["disable", "--now", service.name]);
    }
    match std::fs::remove_file(&unit) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot remove {}", unit.display()));
        }
        _ => {}
    }
    if target.systemctl {
        systemctl(&["daemon-reload"])?;
    }
    Ok(unit)
}

/// Makes the group netbar and the service's system user in it, unless they
/// exist (the packages' postinst does the same).
#[cfg(not(windows))]
fn add_user(user: &str) -> anyhow::Result<()> {
    let run = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .map_err(|error| anyhow::anyhow!("cannot run {program} to make the service's user {user}: {error}"))?;
        anyhow::ensure!(status.success(), "{program} {} failed: {status}", args.join(" "));
        Ok(())
    };
    run("groupadd", &["--force", "--system", "netbar"])?;
    let known = std::process::Command::new("id").args(["-u", user]).output().is_ok_and(|output| output.status.success());
    if !known {
        run(
            "useradd",
            &["--system", "--gid", "netbar", "--home-dir", "/nonexistent", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        )?;
    }
    Ok(())
}

#[cfg(not(windows))]
fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|error| anyhow::anyhow!("cannot run systemctl {}: {error}", args.join(" ")))?;
    anyhow::ensure!(status.success(), "systemctl {} failed: {status}", args.join(" "));
    Ok(())
}

#[cfg(windows)]
pub use windows::{install, run_dispatcher, uninstall};

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_dispatcher;
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    use super::{Daemon, FAILED, Service, Target};

    /// The service this process runs and its daemon, handed from
    /// [`run_dispatcher`] to the service's main function.
    static DAEMON: Mutex<Option<(&'static Service, Daemon)>> = Mutex::new(None);
    /// Why the daemon failed, for the process's own exit code.
    static FAILURE: Mutex<Option<anyhow::Error>> = Mutex::new(None);

    /// The service does not exist (`ERROR_SERVICE_DOES_NOT_EXIST`).
    const NO_SUCH_SERVICE: i32 = 1060;
    /// How long a service may take to stop before uninstalling gives up.
    const STOP_TIMEOUT: Duration = Duration::from_secs(30);

    windows_service::define_windows_service!(ffi_service_main, service_main);

    /// Hands the process to the service control manager, which runs
    /// `daemon` as `service` (`netbar-agent service`). Returns the daemon's
    /// failure, after it was reported to the event log.
    pub fn run_dispatcher(service: &'static Service, daemon: Daemon) -> anyhow::Result<()> {
        *DAEMON.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((service, daemon));
        service_dispatcher::start(service.name, ffi_service_main)
            .with_context(|| format!("cannot reach the service control manager (is {} started as a service?)", service.name))?;
        match FAILURE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn status(state: ServiceState, accept: ServiceControlAccept, exit_code: ServiceExitCode) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code,
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        }
    }

    /// Records why the service failed: the event log, the daemon's own log
    /// when it has one, and the process's exit code.
    fn failed(service: &Service, error: anyhow::Error) {
        let text = format!("{} failed: {error:#}", service.name);
        tracing::error!("{text}");
        if let Err(report) = crate::win32::report_error(service.name, &text) {
            tracing::error!("cannot write to the event log: {report}");
        }
        *FAILURE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
    }

    fn service_main(_arguments: Vec<OsString>) {
        let Some((service, daemon)) = DAEMON.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() else { return };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stop = Mutex::new(Some(stop));
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                if let Some(stop) = stop.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
                    let _ = stop.send(());
                }
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let handle = match service_control_handler::register(service.name, handler) {
            Ok(handle) => handle,
            Err(error) => return failed(service, anyhow::Error::from(error).context("cannot register with the service control manager")),
        };
        let _ = handle.set_service_status(status(
            ServiceState::Running,
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            ServiceExitCode::Win32(0),
        ));
        let outcome = daemon(Box::pin(async move {
            let _ = stopped.await;
        }));
        let exit_code = match outcome {
            Ok(()) => ServiceExitCode::Win32(0),
            Err(error) => {
                failed(service, error);
                ServiceExitCode::ServiceSpecific(FAILED)
            }
        };
        let _ = handle.set_service_status(status(ServiceState::Stopped, ServiceControlAccept::empty(), exit_code));
    }

    /// Registers the service (or updates the registered one) to run this
    /// binary with `config`, sets its recovery actions and starts it unless
    /// it runs already.
    pub fn install(service: &Service, _target: &Target, config: &Path) -> anyhow::Result<PathBuf> {
        let config = std::path::absolute(config).with_context(|| format!("cannot resolve {}", config.display()))?;
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)
            .context("cannot open the service control manager (run as administrator)")?;
        let info = ServiceInfo {
            name: OsString::from(service.name),
            display_name: OsString::from(service.description),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: std::env::current_exe().context("cannot find this binary's own path")?,
            launch_arguments: service
                .windows_arguments
                .split(' ')
                .map(|argument| if argument == "{config}" { config.as_os_str().to_owned() } else { OsString::from(argument) })
                .collect(),
            dependencies: vec![],
            account_name: None,
            account_password: None,
        };
        let access = ServiceAccess::QUERY_STATUS | ServiceAccess::START | ServiceAccess::CHANGE_CONFIG;
        let registered = match manager.open_service(service.name, access) {
            Ok(registered) => {
                registered.change_config(&info).with_context(|| format!("cannot update the service {}", service.name))?;
                registered
            }
            Err(error) if not_registered(&error) => {
                manager.create_service(&info, access).with_context(|| format!("cannot register the service {}", service.name))?
            }
            Err(error) => return Err(error).with_context(|| format!("cannot open the service {}", service.name)),
        };
        registered.set_description(service.description).context("cannot describe the service")?;
        // Restarted after 5 s, 5 s, then 60 s; the count forgotten after a
        // day; also when it stops with an error rather than crashing.
        let restart = |seconds| ServiceAction { action_type: ServiceActionType::Restart, delay: Duration::from_secs(seconds) };
        let recovery = ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(5), restart(5), restart(60)]),
        };
        registered.update_failure_actions(recovery).context("cannot set the service's recovery actions")?;
        if let Err(error) = registered.set_failure_actions_on_non_crash_failures(true) {
            // Every Windows since Vista has it; without it (wine has not),
            // the service is still restarted when it crashes.
            eprintln!("warning: {}: recovery only after a crash, not after it stops on an error: {error}", service.name);
        }
        let running = registered.query_status().context("cannot query the service")?.current_state;
        if !matches!(running, ServiceState::Running | ServiceState::StartPending) {
            registered.start::<&str>(&[]).with_context(|| format!("cannot start the service {}", service.name))?;
        }
        Ok(PathBuf::from(service.name))
    }

    /// Stops the service, waits until it has, and unregisters it; an absent
    /// service is already removed.
    pub fn uninstall(service: &Service, _target: &Target) -> anyhow::Result<PathBuf> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .context("cannot open the service control manager (run as administrator)")?;
        let access = ServiceAccess::STOP | ServiceAccess::DELETE | ServiceAccess::QUERY_STATUS;
        let registered = match manager.open_service(service.name, access) {
            Ok(registered) => registered,
            Err(error) if not_registered(&error) => return Ok(PathBuf::from(service.name)),
            Err(error) => return Err(error).with_context(|| format!("cannot open the service {}", service.name)),
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match registered.query_status().context("cannot query the service")?.current_state {
                ServiceState::Stopped => break,
                ServiceState::StopPending => {}
                _ => {
                    // Refused while starting: asked again on the next round.
                    let _ = registered.stop();
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "{} did not stop within {} s", service.name, STOP_TIMEOUT.as_secs());
            std::thread::sleep(Duration::from_millis(100));
        }
        registered.delete().with_context(|| format!("cannot unregister the service {}", service.name))?;
        Ok(PathBuf::from(service.name))
    }

    fn not_registered(error: &windows_service::Error) -> bool {
        matches!(error, windows_service::Error::Winapi(error) if error.raw_os_error() == Some(NO_SUCH_SERVICE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_hardened_and_runs_the_given_binary() {
        for service in [AGENT, COLLECTOR] {
            let unit = systemd_unit(&service, Path::new("/usr/bin/x"), Path::new("/etc/netbar/x.toml"));
            let arguments = service.arguments.replace("{config}", "/etc/netbar/x.toml");
            assert!(unit.contains(&format!("ExecStart=/usr/bin/x {arguments}\n")), "{unit}");
            let state = format!("StateDirectory={}", service.state_directory);
            let user = format!("User={}", service.user);
            for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=always", "SystemCallFilter=@system-service", &state, &user]
            {
                assert!(unit.lines().any(|l| l == line), "{}: missing {line}", service.name);
            }
        }
    }

    /// The units in the .deb packages (deploy/systemd/) are the ones
    /// `install-service` writes for the packaged paths; regenerate them with
    /// `NETBAR_WRITE_UNITS=1 cargo test -p netbar-host packaged_units`.
    #[test]
    fn packaged_units_are_the_ones_install_service_writes() {
        for service in [AGENT, COLLECTOR] {
            let name = service.name;
            let unit = systemd_unit(
                &service,
                Path::new(&format!("/usr/bin/{name}")),
                Path::new(&format!("/etc/netbar/{}.toml", name.trim_start_matches("netbar-"))),
            );
            let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../deploy/systemd/{name}.service"));
            if std::env::var_os("NETBAR_WRITE_UNITS").is_some() {
                std::fs::write(&packaged, &unit).unwrap();
            }
            assert_eq!(std::fs::read_to_string(&packaged).unwrap_or_default(), unit, "{} is stale", packaged.display());
        }
    }

    #[cfg(not(windows))]
    #[test]
    fn install_and_uninstall_without_systemctl() {
        for service in [AGENT, COLLECTOR] {
            let dir = std::env::temp_dir().join(format!("netbar-unit-{}-{}", service.name, std::process::id()));
            let target = Target { unit_dir: dir.clone(), systemctl: false };
            let unit = install(&service, &target, Path::new("x.toml")).unwrap();
            let text = std::fs::read_to_string(&unit).unwrap();
            let absolute = std::path::absolute("x.toml").unwrap();
            assert!(text.contains(&format!("--config {}", absolute.display())), "{text}");
            // Installing again replaces it.
            assert_eq!(install(&service, &target, Path::new("y.toml")).unwrap(), unit);
            assert!(std::fs::read_to_string(&unit).unwrap().contains("y.toml"));
            uninstall(&service, &target).unwrap();
            assert!(!unit.exists());
            uninstall(&service, &target).unwrap();
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
