//! Starting a program in the customer's desktop session: the collector
//! starts the lock screen this way.
//!
//! On Linux the collector that starts it runs in that session already (the
//! desktop's autostart, or a test's display), so the program is started as
//! a child. On Windows a service runs in session 0, which has no desktop:
//! the program is started in the active console session as the user logged
//! on there (`win32::spawn_in_console`); run by hand, the collector starts
//! it as a child.

use std::io;

/// A started program.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Child(std::process::Child),
    #[cfg(windows)]
    Console(crate::win32::ConsoleProcess),
}

impl Process {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for it to end (blocking); how it ended.
    pub fn wait(self) -> io::Result<String> {
        match self.inner {
            Inner::Child(mut child) => child.wait().map(|status| status.to_string()),
            #[cfg(windows)]
            Inner::Console(process) => process.wait().map(|code| format!("exit code: {code}")),
        }
    }
}

/// Starts `argv` in the customer's session.
pub fn spawn(argv: &[String]) -> io::Result<Process> {
    let (program, args) = argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program configured"))?;
    #[cfg(windows)]
    {
        let line: Vec<String> = argv.iter().map(|arg| quote(arg)).collect();
        if let Some(process) = crate::win32::spawn_in_console(&line.join(" "))? {
            return Ok(Process { pid: process.id(), inner: Inner::Console(process) });
        }
    }
    let child = std::process::Command::new(program).args(args).stdin(std::process::Stdio::null()).spawn()?;
    Ok(Process { pid: child.id(), inner: Inner::Child(child) })
}

/// One argument of a Windows command line, quoted as the C runtime reads it.
#[cfg_attr(not(windows), allow(dead_code))]
fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_owned();
    }
    let mut quoted = String::from('"');
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                quoted.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                quoted.push('"');
                backslashes = 0;
            }
            other => {
                quoted.extend(std::iter::repeat_n('\\', backslashes));
                quoted.push(other);
                backslashes = 0;
            }
        }
    }
    quoted.extend(std::iter::repeat_n('\\', backslashes * 2));
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_arguments_are_quoted_as_read_back() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote(r"C:\Program Files\netbar\lock.exe"), r#""C:\Program Files\netbar\lock.exe""#);
        assert_eq!(quote(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote(r"dir\ "), r#""dir\ ""#);
        assert_eq!(quote(r"end\"), r"end\");
        assert_eq!(quote(r"sp ace\"), r#""sp ace\\""#);
        assert_eq!(quote(""), r#""""#);
    }

    #[test]
    fn a_started_program_is_waited_for() {
        let argv: Vec<String> =
            if cfg!(windows) { vec!["cmd".into(), "/C".into(), "exit 3".into()] } else { vec!["sh".into(), "-c".into(), "exit 3".into()] };
        let process = spawn(&argv).unwrap();
        assert!(process.id() > 0);
        let status = process.wait().unwrap();
        assert!(status.contains('3'), "{status}");
        assert!(spawn(&[]).is_err());
    }
}
