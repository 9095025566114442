//! Helpers for the end-to-end tests, which drive the real binaries from
//! outside.

pub mod browser;
pub mod cluster;
pub mod display;
#[cfg(unix)]
pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of a workspace binary, freshly built.
///
/// `cargo test` builds the binaries of a package only for that package's
/// own tests, so the first call builds every binary of the workspace with
/// the same cargo and profile as the tests (a no-op when they are up to
/// date) and the tests never run a stale one.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let profile_dir = BUILT.get_or_init(build_binaries).as_ref().unwrap_or_else(|error| panic!("{error}"));
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is not a binary of the workspace", path.display());
    path
}

fn build_binaries() -> Result<PathBuf, String> {
    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().map_err(|error| format!("cannot locate the test executable: {error}"))?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or("the test executable is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().ok_or("the test executable is not in <target>/<profile>/deps")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(&workspace).args(["build", "--quiet", "--workspace", "--bins", "--target-dir"]).arg(target_dir);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().map_err(|error| format!("cannot run cargo to build the binaries: {error}"))?;
    if !status.success() {
        return Err(format!("building the workspace binaries failed: {status}"));
    }
    Ok(profile_dir.to_path_buf())
}

/// A scratch directory, removed when dropped (kept when `NETBAR_KEEP_TEMP`
/// is set, to look at after a failure).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `name` and this process.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("netbar-e2e-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("NETBAR_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Waits until `condition` holds, checking every few milliseconds, or panics
/// with `what` after `deadline`.
pub fn wait_for(what: &str, deadline: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + deadline;
    while !condition() {
        assert!(std::time::Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A child process killed when dropped, its standard output and error kept
/// in a file.
#[derive(Debug)]
pub struct Process {
    child: std::process::Child,
    stderr: PathBuf,
}

/// How a started process gets its standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing: reads see end of file.
    Null,
    /// A pipe the test writes to with [`Process::write`].
    Piped,
}

impl Process {
    /// Starts `program` with `args`, standard output and error to `stderr`.
    pub fn start(program: &Path, args: &[&str], stderr: PathBuf) -> Process {
        Process::start_with(program, args, stderr, Stdin::Null, &[])
    }

    /// Starts `program` with `args`, standard output and error to `stderr`, the given
    /// standard input and extra environment variables.
    pub fn start_with(program: &Path, args: &[&str], stderr: PathBuf, stdin: Stdin, env: &[(&str, &str)]) -> Process {
        let log = std::fs::File::create(&stderr).expect("stderr file");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(if stdin == Stdin::Piped { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(log.try_clone().expect("stderr file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
        Process { child, stderr }
    }

    /// Writes `text` to its standard input (started with [`Stdin::Piped`]).
    pub fn write(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("started with Stdin::Piped");
        stdin.write_all(text.as_bytes()).expect("write to the process");
        stdin.flush().expect("flush to the process");
    }

    /// What it wrote to standard output and error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Kills it with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (SIGTERM) and waits until it has.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A mosquitto broker of our own, on an ephemeral port, with our own config.
#[derive(Debug)]
pub struct Mosquitto {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    process: Option<Process>,
    dir: TempDir,
    extra: String,
    persistent: bool,
}

/// The first of `candidates` that exists; a test needing a program that is
/// not installed fails saying which Debian package `tests/setup` installs for it.
pub fn installed(candidates: &[&str], package: &str) -> PathBuf {
    candidates.iter().map(PathBuf::from).find(|path| path.exists()).unwrap_or_else(|| {
        panic!("{} is not installed (tests/setup installs Debian's {package} package)", candidates.first().copied().unwrap_or("?"))
    })
}

/// Where mosquitto is installed.
pub fn mosquitto_binary() -> PathBuf {
    installed(&["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"], "mosquitto")
}

impl Mosquitto {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// Starts a broker with more configuration after the plain listener
    /// (another listener with TLS, for instance).
    pub fn start_with(extra: &str) -> Mosquitto {
        let mut broker =
            Mosquitto { port: free_port(), process: None, dir: TempDir::new("mosquitto"), extra: extra.to_owned(), persistent: false };
        broker.restart();
        broker
    }

    /// Like [`Mosquitto::start_with`], keeping sessions and queued messages
    /// on disk across a [`Mosquitto::shut_down`] and restart, as a
    /// regulator's broker would.
    pub fn start_persistent(extra: &str) -> Mosquitto {
        let mut broker =
            Mosquitto { port: free_port(), process: None, dir: TempDir::new("mosquitto"), extra: extra.to_owned(), persistent: true };
        broker.restart();
        broker
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::id)
    }

    /// What the broker logged since it last started.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::stderr).unwrap_or_default()
    }

    /// Stops the broker the orderly way (SIGTERM): it saves what it keeps.
    pub fn shut_down(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate();
        }
    }

    /// Stops the broker (SIGKILL): an outage.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let config = self.dir.path().join("mosquitto.conf");
        let persistence = if self.persistent {
            // Started as root, mosquitto drops to its own user: that user
            // must be able to write the database.
            let store = self.dir.path().join("persistence");
            std::fs::create_dir_all(&store).expect("persistence directory");
            #[cfg(unix)]
            std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("persistence directory mode");
            format!("persistence true\npersistence_location {}/\nmax_queued_messages 100000\n", store.display())
        } else {
            "persistence false\n".to_owned()
        };
        let text = format!("listener {} 127.0.0.1\nallow_anonymous true\n{persistence}max_packet_size 1048576\n{}", self.port, self.extra);
        std::fs::write(&config, text).expect("mosquitto config");
        let process =
            Process::start(&mosquitto_binary(), &["-c", config.to_str().expect("UTF-8 path")], self.dir.path().join("mosquitto.log"));
        let port = self.port;
        wait_for("mosquitto to listen", std::time::Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        self.process = Some(process);
    }
}

/// A test's own MQTT client: everything it receives lands in a channel.
pub struct Client {
    client: rumqttc::Client,
    messages: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

impl Client {
    /// Connects to 127.0.0.1:`port` and subscribes to `filters`; returns once
    /// the subscriptions are acknowledged.
    pub fn connect(port: u16, filters: &[&str]) -> Client {
        Client::connect_as(port, &format!("test-{}", free_port()), false, filters)
    }

    /// Like [`Client::connect`] with a fixed client id; when `persistent`,
    /// the session outlives the connection and the client reconnects after
    /// the broker went away (for a broker restarted by the test).
    pub fn connect_as(port: u16, id: &str, persistent: bool, filters: &[&str]) -> Client {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_session(!persistent);
        options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        options.set_keep_alive(std::time::Duration::from_secs(30));
        let (client, mut connection) = rumqttc::Client::new(options, 256);
        for filter in filters {
            client.subscribe(*filter, rumqttc::QoS::AtLeastOnce).expect("subscribe");
        }
        let (sender, messages) = std::sync::mpsc::channel();
        let (subscribed, ready) = std::sync::mpsc::channel();
        let expected = filters.len();
        std::thread::spawn(move || {
            let mut acks = 0;
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == expected {
                            let _ = subscribed.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                        if sender.send((publish.topic.clone(), publish.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) if persistent => std::thread::sleep(std::time::Duration::from_millis(100)),
                    Err(_) => return,
                }
            }
        });
        if expected > 0 {
            ready.recv_timeout(std::time::Duration::from_secs(10)).expect("subscriptions acknowledged");
        }
        Client { client, messages }
    }

    /// Publishes `payload` on `topic` at QoS 1.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.into()).expect("publish");
    }

    /// The next message for which `pick` returns something, within `deadline`;
    /// other messages are skipped.
    pub fn expect<T>(&self, what: &str, deadline: std::time::Duration, mut pick: impl FnMut(&str, &[u8]) -> Option<T>) -> T {
        let end = std::time::Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.messages.recv_timeout(left) {
                Ok((topic, payload)) => {
                    if let Some(found) = pick(&topic, &payload) {
                        return found;
                    }
                }
                Err(_) => panic!("timed out after {deadline:?} waiting for {what}"),
            }
        }
    }

    /// The next decodable message on `topic` of `kind`, within `deadline`.
    pub fn expect_message(&self, topic: &str, kind: netbar_protocol::Kind, deadline: std::time::Duration) -> netbar_protocol::Envelope {
        self.expect(&format!("a {kind} on {topic}"), deadline, |t, payload| {
            if t != topic {
                return None;
            }
            netbar_protocol::decode(payload).ok().filter(|envelope| envelope.kind() == kind)
        })
    }
}

/// A minimal HTTP/1.1 client for the agent's API: sends one request and
/// returns the status and the body parsed as JSON (Null when not JSON).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let (status, body) = http_text(port, method, path, token, body);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// Like [`http`], with the response body as text.
pub fn http_text(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&serde_json::Value>) -> (u16, String) {
    try_http_text(port, method, path, token, body).unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// Like [`http_text`], an I/O failure returned rather than a panic (for
/// benchmarks that report the limit they hit).
pub fn try_http_text(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    // Read up to Content-Length when there is one: some servers
    // (chromedriver) say "Connection: close" and keep the socket open.
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk)?;
        response.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&response);
        let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            head.lines()
                .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .is_some_and(|length| body.len() >= length)
        });
        if read == 0 || complete {
            break;
        }
    }
    let response = String::from_utf8_lossy(&response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

/// CPU seconds (user + system) process `pid` has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        let output = Command::new("getconf").arg("CLK_TCK").output().ok();
        output.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised name, utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<f64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / ticks
}

/// Peak resident set size (VmHWM) of process `pid` in KiB, from /proc.
pub fn peak_rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A CA and a server certificate (for 127.0.0.1) and a client certificate
/// (for `client`) it signed, as PEM files in `dir` named after `name`:
/// the CA, then server certificate, server key, client certificate, client key.
pub fn certificates(dir: &Path, name: &str, client: &str) -> (PathBuf, [PathBuf; 4]) {
    let (ca, server, mut clients) = certificates_for(dir, name, &[client]);
    let (client_cert, client_key) = clients.remove(0);
    (ca, [server.0, server.1, client_cert, client_key])
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate for
/// each of `clients` (its common name and only name), as PEM files in `dir`
/// named after `name`: the CA, (server certificate, key), and (certificate,
/// key) per client.
pub fn certificates_for(dir: &Path, name: &str, clients: &[&str]) -> (PathBuf, (PathBuf, PathBuf), Vec<(PathBuf, PathBuf)>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let issue = |subject: &str, file: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![subject.to_owned()]).expect("parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, subject);
        let certificate = params.signed_by(&key, &issuer).expect("certificate");
        let (cert_path, key_path) = (dir.join(format!("{name}-{file}.pem")), dir.join(format!("{name}-{file}.key")));
        std::fs::write(&cert_path, certificate.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    };
    let server = issue("127.0.0.1", "server");
    let clients = clients.iter().map(|client| issue(client, &format!("client-{client}"))).collect();
    let ca_path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    (ca_path, server, clients)
}
