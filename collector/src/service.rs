//! Installing netbar's daemons as system services. The agent includes this
//! same file (`#[path]`), so both install the same way.
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
//! the `windows-service` crate, started automatically, restarted on failure,
//! logging to a rotating file under `%ProgramData%\netbar\logs`. That code is
//! behind `cfg(windows)` and kept small, since it cannot be built on the
//! Linux machines this project is developed on.

use std::path::{Path, PathBuf};

/// What differs between the daemons.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    /// The service's name on both systems, and its state directory's.
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    /// The command line after the binary, `{config}` standing for the path.
    pub(crate) arguments: &'static str,
    /// The same for the Windows service control manager's entry point.
    #[cfg_attr(not(windows), allow(dead_code, reason = "read by the Windows installer only"))]
    pub(crate) windows_arguments: &'static str,
    pub(crate) memory_max: &'static str,
    /// Open files (the agent's embedded bus holds one per station).
    pub(crate) open_files: u32,
    pub(crate) cpu_weight: u32,
    /// The system user it runs as.
    pub(crate) user: &'static str,
    /// Its folder under /var/lib (the default data or spool folder).
    pub(crate) state_directory: &'static str,
}

/// The systemd unit for `binary` reading `config`.
pub(crate) fn systemd_unit(service: &Service, binary: &Path, config: &Path) -> String {
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
pub(crate) struct Target {
    pub(crate) unit_dir: PathBuf,
    pub(crate) systemctl: bool,
}

/// Installs the unit and, unless told not to, enables and starts it.
#[cfg(not(windows))]
pub(crate) fn install(service: &Service, target: &Target, config: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let binary = std::env::current_exe().context("cannot find the collector's own path")?;
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
pub(crate) fn uninstall(service: &Service, target: &Target) -> anyhow::Result<PathBuf> {
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
pub(crate) use windows::{install, run_dispatcher, uninstall};

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};

    use std::time::Duration;

    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode, ServiceInfo, ServiceStartType,
        ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_dispatcher;
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    use super::{Service, Target};

    windows_service::define_windows_service!(ffi_service_main, service_main);

    /// Hands the process to the service control manager (`netbar-collector service`).
    pub(crate) fn run_dispatcher() -> anyhow::Result<()> {
        service_dispatcher::start(crate::SERVICE.name, ffi_service_main)?;
        Ok(())
    }

    fn status(state: ServiceState, accept: ServiceControlAccept) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: ServiceExitCode::Win32(0),
            checkpoint: 0,
            wait_hint: Duration::from_secs(5),
            process_id: None,
        }
    }

    fn service_main(_arguments: Vec<std::ffi::OsString>) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stop = std::sync::Mutex::new(Some(stop));
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                if let Some(stop) = stop.lock().ok().and_then(|mut stop| stop.take()) {
                    let _ = stop.send(());
                }
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(handle) = service_control_handler::register(crate::SERVICE.name, handler) else { return };
        let _ = handle.set_service_status(status(ServiceState::Running, ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN));
        if let Err(error) = crate::run_service(true, async move {
            let _ = stopped.await;
        }) {
            tracing::error!("{error:#}");
        }
        let _ = handle.set_service_status(status(ServiceState::Stopped, ServiceControlAccept::empty()));
    }

    pub(crate) fn install(service: &Service, _target: &Target, config: &Path) -> anyhow::Result<PathBuf> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let info = ServiceInfo {
            name: OsString::from(service.name),
            display_name: OsString::from(service.description),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: std::env::current_exe()?,
            launch_arguments: service
                .windows_arguments
                .split(' ')
                .map(|argument| if argument == "{config}" { config.as_os_str().to_owned() } else { OsString::from(argument) })
                .collect(),
            dependencies: vec![],
            account_name: None,
            account_password: None,
        };
        let created = manager.create_service(&info, ServiceAccess::START | ServiceAccess::CHANGE_CONFIG)?;
        created.set_description(service.description)?;
        created.start::<&str>(&[])?;
        Ok(PathBuf::from(service.name))
    }

    pub(crate) fn uninstall(service: &Service, _target: &Target) -> anyhow::Result<PathBuf> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
        let opened = manager.open_service(service.name, ServiceAccess::STOP | ServiceAccess::DELETE | ServiceAccess::QUERY_STATUS)?;
        let _ = opened.stop();
        opened.delete()?;
        Ok(PathBuf::from(service.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_hardened_and_runs_the_given_binary() {
        let unit = systemd_unit(&crate::SERVICE, Path::new("/usr/bin/x"), Path::new("/etc/netbar/x.toml"));
        let arguments = crate::SERVICE.arguments.replace("{config}", "/etc/netbar/x.toml");
        assert!(unit.contains(&format!("ExecStart=/usr/bin/x {arguments}\n")), "{unit}");
        let state = format!("StateDirectory={}", crate::SERVICE.state_directory);
        let user = format!("User={}", crate::SERVICE.user);
        for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=always", "SystemCallFilter=@system-service", &state, &user] {
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
    }

    /// The unit in the .deb (deploy/systemd/) is the one `install-service`
    /// writes for the packaged paths; regenerate it with
    /// `NETBAR_WRITE_UNITS=1 cargo test -p <crate> packaged_unit`.
    #[test]
    fn packaged_unit_is_the_one_install_service_writes() {
        let name = crate::SERVICE.name;
        let unit = systemd_unit(
            &crate::SERVICE,
            Path::new(&format!("/usr/bin/{name}")),
            Path::new(&format!("/etc/netbar/{}.toml", name.trim_start_matches("netbar-"))),
        );
        let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/systemd/{name}.service"));
        if std::env::var_os("NETBAR_WRITE_UNITS").is_some() {
            std::fs::write(&packaged, &unit).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&packaged).unwrap_or_default(), unit, "{} is stale", packaged.display());
    }

    #[cfg(not(windows))]
    #[test]
    fn install_and_uninstall_without_systemctl() {
        let dir = std::env::temp_dir().join(format!("netbar-unit-{}-{}", crate::SERVICE.name, std::process::id()));
        let target = Target { unit_dir: dir.clone(), systemctl: false };
        let unit = install(&crate::SERVICE, &target, Path::new("x.toml")).unwrap();
        let text = std::fs::read_to_string(&unit).unwrap();
        let absolute = std::path::absolute("x.toml").unwrap();
        assert!(text.contains(&format!("--config {}", absolute.display())), "{text}");
        uninstall(&crate::SERVICE, &target).unwrap();
        assert!(!unit.exists());
        uninstall(&crate::SERVICE, &target).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
