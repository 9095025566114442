//! A PostgreSQL server of a test's own: Debian's binaries, a data directory
//! made by initdb in the test's folder, a free port, trust authentication
//! on loopback. PostgreSQL refuses to run as root, so as root the server
//! runs as the `postgres` user Debian's package creates.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Process, free_port, installed, wait_for};

/// One of PostgreSQL's programs, from the newest version installed.
pub fn program(name: &str) -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin").join(name))))
        .filter(|(_, path)| path.exists())
        .collect();
    versions.sort();
    let found = versions.pop().map(|(_, path)| path.to_string_lossy().into_owned()).unwrap_or_default();
    installed(&[&found, &format!("/usr/lib/postgresql/15/bin/{name}")], "postgresql")
}

/// The user and group the server runs as: `postgres` when the test runs as
/// root, else the test's own.
fn server_user() -> Option<(u32, u32)> {
    let id = |flag: &str, user: Option<&str>| -> Option<u32> {
        let output = Command::new("id").arg(flag).args(user).output().ok()?;
        String::from_utf8(output.stdout).ok()?.trim().parse().ok()
    };
    if id("-u", None)? != 0 {
        return None;
    }
    let user = id("-u", Some("postgres")).expect("the postgres user (Debian's postgresql package creates it)");
    let group = id("-g", Some("postgres")).expect("the postgres group");
    Some((user, group))
}

/// A running server; stopped (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Postgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    data: PathBuf,
    user: Option<(u32, u32)>,
    process: Option<Process>,
}

impl Postgres {
    /// Makes a cluster under `dir` and starts it.
    pub fn start(dir: &Path) -> Postgres {
        let data = dir.join("postgres");
        std::fs::create_dir_all(&data).expect("the data directory");
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("the data directory's owner");
        }
        let mut initdb = Command::new(program("initdb"));
        initdb.args(["-D", data.to_str().expect("UTF-8 path"), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"]);
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb.output().expect("initdb runs");
        assert!(output.status.success(), "initdb: {}", String::from_utf8_lossy(&output.stderr));
        let mut server = Postgres { port: free_port(), data, user, process: None };
        server.restart();
        server
    }

    /// Starts the server again (after [`Postgres::kill`]) on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let data = self.data.to_str().expect("UTF-8 path");
        let log = self.data.parent().expect("the test's folder").join("postgres.log");
        let file = std::fs::File::create(&log).expect("the server's log");
        let mut command = Command::new(program("postgres"));
        command
            .args(["-D", data, "-p", &self.port.to_string(), "-k", data, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("the server's log"))
            .stderr(file);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().expect("postgres starts");
        self.process = Some(Process { child, stderr: log });
        let port = self.port;
        wait_for("PostgreSQL to accept connections", std::time::Duration::from_secs(30), || {
            Command::new(program("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// Stops the server at once (SIGKILL): what it committed is on disk.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// A connection string for it.
    pub fn connection(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// Runs `sql` with psql; its rows, each a list of columns.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let output = Command::new(program("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8").lines().map(|line| line.split('|').map(str::to_owned).collect()).collect()
    }

    /// The one value `sql` selects.
    pub fn value(&self, sql: &str) -> String {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0].join("|")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}
