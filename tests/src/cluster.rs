//! The regulator's clustered brokers, each node started on loopback from
//! the deployed configuration in deploy/regulator with only its names,
//! addresses and files replaced: a three-node NATS JetStream cluster and a
//! three-node RabbitMQ cluster. The end-to-end tests and the city
//! benchmark share them.

use std::path::{Path, PathBuf};
use std::process::Command as Run;
use std::time::Duration;

use crate::{Process, free_port, installed, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn deployed(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator").join(file)).expect("deploy/regulator")
}

/// A node of a three-node cluster of the regulator's, killed and started
/// again by a test.
pub trait Node {
    /// Its MQTT listener (TLS) on 127.0.0.1.
    fn mqtt_port(&self) -> u16;
    /// Dies at once (SIGKILL).
    fn kill(&mut self);
    fn start(&mut self);
    /// Its process (the Erlang VM for RabbitMQ), while it runs.
    fn pid(&self) -> Option<u32>;
}

/// The URL of a node's MQTT listener.
pub fn url(node: &impl Node) -> String {
    format!("mqtts://127.0.0.1:{}", node.mqtt_port())
}

pub fn nats_server() -> PathBuf {
    installed(&["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"], "nats-server")
}

/// A deployed NATS configuration with its listeners on loopback ports, its
/// JetStream store under `dir` and the test's certificate; nothing of the
/// deployed machine's addresses or files left.
pub fn nats_config(deployed: &str, client_port: u16, mqtt_port: u16, dir: &Path, cert: &Path, key: &Path) -> String {
    let config = deployed
        .replace("listen: 0.0.0.0:4222", &format!("listen: 127.0.0.1:{client_port}"))
        .replace("listen: 0.0.0.0:8883", &format!("listen: 127.0.0.1:{mqtt_port}"))
        .replace("/var/lib/nats/jetstream", dir.join("jetstream").to_str().expect("UTF-8 path"))
        .replace("/etc/nats/feed-broker.pem", cert.to_str().expect("UTF-8 path"))
        .replace("/etc/nats/feed-broker.key", key.to_str().expect("UTF-8 path"));
    assert!(
        !config.lines().any(|line| !line.trim_start().starts_with('#') && (line.contains("/etc/") || line.contains("0.0.0.0"))),
        "{config}"
    );
    config
}

/// A node made from deploy/regulator/jetstream-cluster.conf.
#[derive(Debug)]
pub struct NatsNode {
    config: PathBuf,
    log: PathBuf,
    mqtt_port: u16,
    process: Option<Process>,
}

impl Node for NatsNode {
    fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    fn start(&mut self) {
        let process = Process::start(&nats_server(), &["-c", self.config.to_str().expect("UTF-8 path")], self.log.clone());
        let port = self.mqtt_port;
        wait_for("a NATS node's MQTT listener", WAIT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        self.process = Some(process);
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::id)
    }
}

/// Three NATS nodes routed to each other, running; `users` are entries
/// added to the deployed configuration's list.
pub fn nats_cluster(dir: &Path, cert: &Path, key: &Path, users: &str) -> Vec<NatsNode> {
    let deployed = deployed("jetstream-cluster.conf").replace("users = [\n", &format!("users = [\n{users}"));
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route = |port: u16| format!("nats-route://127.0.0.1:{port}");
    (0..3)
        .map(|n| {
            let (client_port, mqtt_port) = (free_port(), free_port());
            let node = dir.join(format!("nats-{}", n + 1));
            std::fs::create_dir_all(&node).expect("a node's folder");
            let deployed = deployed
                .replace("server_name: netbar_feed_1", &format!("server_name: netbar_feed_{}", n + 1))
                .replace("listen: 0.0.0.0:6222", &format!("listen: 127.0.0.1:{}", routes[n]))
                .replace("nats-route://feed-2.regulator.example:6222", &format!("{}\n    {}", route(routes[0]), route(routes[1])))
                .replace("nats-route://feed-3.regulator.example:6222", &route(routes[2]));
            let config = nats_config(&deployed, client_port, mqtt_port, &node, cert, key);
            let path = node.join("nats.conf");
            std::fs::write(&path, config).expect("a node's configuration");
            let mut node = NatsNode { config: path, log: node.join("nats.log"), mqtt_port, process: None };
            node.start();
            node
        })
        .collect()
}

/// One node of a three-node RabbitMQ cluster, made from
/// deploy/regulator/rabbitmq.conf; the nodes share an Erlang cookie.
#[derive(Debug)]
pub struct RabbitNode {
    name: String,
    dir: PathBuf,
    home: PathBuf,
    dist_port: u16,
    mqtt_port: u16,
    process: Option<Process>,
}

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl RabbitNode {
    fn env(&self) -> Vec<(String, String)> {
        let path = |name: &str| self.dir.join(name).to_str().expect("UTF-8 path").to_owned();
        vec![
            ("HOME".into(), self.home.to_str().expect("UTF-8 path").to_owned()),
            ("RABBITMQ_NODENAME".into(), self.name.clone()),
            ("RABBITMQ_DIST_PORT".into(), self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), path("enabled_plugins")),
            ("RABBITMQ_PID_FILE".into(), path("rabbitmq.pid")),
        ]
    }

    /// A rabbitmqctl (or rabbitmq-queues) command against this node; what it printed.
    pub fn ctl(&self, tool: &str, args: &[&str]) -> String {
        let env = self.env();
        let output = Run::new(Path::new(RABBITMQ_BIN).join(tool))
            .args(["-n", &self.name])
            .args(args)
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .output()
            .expect("RabbitMQ's tools");
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{tool} {args:?}: {said}{}", String::from_utf8_lossy(&output.stderr));
        said
    }

    /// What the node logged (its log folder's files).
    pub fn log(&self) -> String {
        let files = std::fs::read_dir(self.dir.join("log")).into_iter().flatten().filter_map(Result::ok);
        files.filter_map(|file| std::fs::read_to_string(file.path()).ok()).collect()
    }

    /// The JSON a `--formatter json` command printed.
    pub fn ctl_json(&self, tool: &str, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["--formatter", "json"]);
        let said = self.ctl(tool, &args);
        let start = said.find(['[', '{']).unwrap_or(0);
        serde_json::from_str(said[start..].trim()).unwrap_or_else(|error| panic!("{tool} {args:?} printed {said:?}: {error}"))
    }
}

impl Node for RabbitNode {
    fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    fn start(&mut self) {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        let program = installed(&["/usr/lib/rabbitmq/bin/rabbitmq-server"], "rabbitmq-server");
        self.process = Some(Process::start_with(&program, &[], self.dir.join("out.log"), crate::Stdin::Null, &env));
        let port = self.mqtt_port;
        wait_for("a RabbitMQ node's MQTT listener", WAIT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// The Erlang VM itself gets SIGKILL.
    fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Run::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        let _ = std::fs::remove_file(self.dir.join("rabbitmq.pid"));
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("rabbitmq.pid")).ok().and_then(|pid| pid.trim().parse().ok())
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running three-node RabbitMQ cluster as deploy/regulator says to make
/// one: the regulator's quorum queue (rabbitmq-definitions.json) declared
/// on all three once they run, before any venue publishes, and the users
/// of rabbitmq.conf's instructions: `regulator` with the password
/// `regulator`, every other (venue-1, bridge-310104) with `venue`.
pub fn rabbitmq_cluster(dir: &Path, ca: &Path, cert: &Path, key: &Path, regulator: &str, venue: &str) -> Vec<RabbitNode> {
    let deployed = deployed("rabbitmq.conf");
    let home = dir.join("erlang");
    std::fs::create_dir_all(&home).expect("the Erlang home");
    let cookie = home.join(".erlang.cookie");
    std::fs::write(&cookie, format!("netbar-test-{}", std::process::id())).expect("the Erlang cookie");
    // Erlang refuses a cookie others may read.
    #[cfg(unix)]
    std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400)).expect("the Erlang cookie");
    let names: Vec<String> = (1..=3).map(|n| format!("netbar-feed-{n}-{}@localhost", std::process::id())).collect();
    let mut nodes: Vec<RabbitNode> = (0..3)
        .map(|n| {
            let node = dir.join(format!("rabbitmq-{}", n + 1));
            std::fs::create_dir_all(&node).expect("a node's folder");
            let mqtt_port = free_port();
            let config = deployed
                .replace("mqtt.listeners.ssl.default = 8883", &format!("mqtt.listeners.ssl.default = 127.0.0.1:{mqtt_port}"))
                .replace("/etc/rabbitmq/feed-ca.pem", ca.to_str().expect("UTF-8 path"))
                .replace("/etc/rabbitmq/feed-broker.pem", cert.to_str().expect("UTF-8 path"))
                .replace("/etc/rabbitmq/feed-broker.key", key.to_str().expect("UTF-8 path"))
                .replace("rabbit@feed-1", &names[0])
                .replace("rabbit@feed-2", &names[1])
                .replace("rabbit@feed-3", &names[2]);
            assert!(!config.lines().any(|line| !line.trim_start().starts_with('#') && line.contains("/etc/")), "{config}");
            std::fs::write(node.join("rabbitmq.conf"), config).expect("a node's configuration");
            std::fs::write(node.join("enabled_plugins"), "[rabbitmq_mqtt].\n").expect("a node's plugins");
            RabbitNode { name: names[n].clone(), dir: node, home: home.clone(), dist_port: free_port(), mqtt_port, process: None }
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    wait_for("the three nodes to form one cluster", WAIT, || {
        nodes[0].ctl_json("rabbitmqctl", &["cluster_status"])["running_nodes"].as_array().is_some_and(|nodes| nodes.len() == 3)
    });
    let definitions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/regulator/rabbitmq-definitions.json");
    nodes[0].ctl("rabbitmqctl", &["import_definitions", definitions.to_str().expect("UTF-8 path")]);
    let members = nodes[0].ctl_json("rabbitmq-queues", &["quorum_status", "mqtt-subscription-netbar-ingestqos1"]);
    assert_eq!(members.as_array().map(Vec::len), Some(3), "the regulator's queue on every node: {members}");
    // The users, exactly as rabbitmq.conf says to make them.
    for line in deployed.lines().filter_map(|line| line.strip_prefix("#   rabbitmqctl ")) {
        let words: Vec<String> = line.split(' ').map(|word| word.trim_matches('\'').replace("'...'", "")).collect();
        let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
        if args[0] == "add_user" {
            args[2] = if args[1] == "regulator" { regulator } else { venue };
        }
        nodes[0].ctl("rabbitmqctl", &args);
    }
    nodes
}
