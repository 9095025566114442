//! Carrying out commands with the programs the configuration names, and
//! finding out what really happened.

use std::time::Duration;

use netbar_protocol::messages::{LockState, NoticeLevel};
use tokio::process::Command;

use crate::config::Actions;

/// How long an action may take before it counts as failed.
const ACTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `argv` with `{text}` and `{level}` replaced; returns its standard
/// output, or why it failed.
pub(crate) async fn run(argv: &[String], text: &str, level: &str) -> Result<String, String> {
    let argv: Vec<String> = argv.iter().map(|arg| arg.replace("{text}", text).replace("{level}", level)).collect();
    let (program, args) = argv.split_first().ok_or("no program configured")?;
    let mut command = Command::new(program);
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(ACTION_TIMEOUT, command.output()).await {
        Err(_) => return Err(format!("{program} did not finish within {} s", ACTION_TIMEOUT.as_secs())),
        Ok(Err(error)) => return Err(format!("cannot run {program}: {error}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.trim().chars().take(300).collect();
        Err(format!("{program} failed ({}): {stderr}", output.status))
    }
}

/// Asks the configured program for the station's real lock state.
pub(crate) async fn lock_state(actions: &Actions) -> LockState {
    match run(&actions.lock_state, "", "").await {
        Ok(output) => parse_lock_state(&output),
        Err(error) => {
            tracing::warn!(%error, "cannot read the lock state");
            LockState::Unknown
        }
    }
}

fn parse_lock_state(output: &str) -> LockState {
    match output.trim().to_ascii_lowercase().as_str() {
        "yes" | "locked" | "true" | "1" => LockState::Locked,
        "no" | "unlocked" | "false" | "0" => LockState::Unlocked,
        _ => LockState::Unknown,
    }
}

/// The `{level}` text of a notice.
pub(crate) fn level_name(level: NoticeLevel) -> &'static str {
    match level {
        NoticeLevel::Info => "info",
        NoticeLevel::Warning => "warning",
        NoticeLevel::Evacuation => "evacuation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell command line as an action's argv.
    fn shell(line: &str) -> Vec<String> {
        if cfg!(windows) { vec!["cmd".into(), "/C".into(), line.into()] } else { vec!["sh".into(), "-c".into(), line.into()] }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_programs_and_reports_failures() {
        let echo = shell("echo {level}/{text}");
        assert_eq!(run(&echo, "leave now", "evacuation").await.unwrap().trim_end(), "evacuation/leave now");
        let failing = shell(if cfg!(windows) { "echo broken 1>&2 & exit /b 3" } else { "echo broken >&2; exit 3" });
        let error = run(&failing, "", "").await.unwrap_err();
        assert!(error.contains("exit code: 3") || error.contains("exit status: 3"), "{error}");
        assert!(error.contains("broken"), "{error}");
        let missing = vec!["/nonexistent/netbar-lock".to_owned()];
        assert!(run(&missing, "", "").await.unwrap_err().contains("cannot run /nonexistent/netbar-lock"));
    }

    #[test]
    fn lock_state_output() {
        assert_eq!(parse_lock_state("yes\n"), LockState::Locked);
        assert_eq!(parse_lock_state("Unlocked"), LockState::Unlocked);
        assert_eq!(parse_lock_state("maybe"), LockState::Unknown);
    }
}
