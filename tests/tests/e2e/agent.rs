//! `netbar-agent` commands run as an installer would.

use std::process::Command as Run;

use netbar_tests::{TempDir, binary};

fn agent_config(dir: &TempDir) -> std::path::PathBuf {
    let printed = Run::new(binary("netbar-agent")).arg("print-config").output().unwrap();
    let text = String::from_utf8(printed.stdout)
        .unwrap()
        .replace("dir = \"/var/lib/netbar\"", &format!("dir = \"{}\"", dir.path().join("data").display()));
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn enrolling_a_station_writes_a_collector_config_that_checks() {
    let dir = TempDir::new("enroll");
    let config = agent_config(&dir);
    let out = dir.path().join("out");
    let enroll = |extra: &[&str]| {
        let mut args = vec!["enroll", "--config", config.to_str().unwrap(), "station", "st-017", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        Run::new(binary("netbar-agent")).args(&args).output().unwrap()
    };
    let first = enroll(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let station = out.join("st-017");
    let key = std::fs::read_to_string(station.join("station.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(station.join("station.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let check = Run::new(binary("netbar-collector"))
        .args(["--config", station.join("collector.toml").to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("station st-017 of venue venue-1"));

    let again = enroll(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("enrolled already; --rekey"));
    assert_eq!(std::fs::read_to_string(station.join("station.key")).unwrap(), key, "the old key is untouched");
    assert!(enroll(&["--rekey"]).status.success());
    assert_ne!(std::fs::read_to_string(station.join("station.key")).unwrap(), key, "a new key");

    let sensor = Run::new(binary("netbar-agent"))
        .args(["enroll", "--config", config.to_str().unwrap(), "sensor", "smoke-1", "--station", "st-404", "--kind", "smoke"])
        .output()
        .unwrap();
    assert_eq!(sensor.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&sensor.stderr).contains("station st-404 is not enrolled"));
}

#[test]
fn a_bad_agent_config_is_refused_with_file_key_and_reason() {
    let dir = TempDir::new("agent-config");
    let config = agent_config(&dir);
    let text = std::fs::read_to_string(&config).unwrap().replace("[http]", "[http]\nport = 80");
    std::fs::write(&config, text).unwrap();
    let output = Run::new(binary("netbar-agent")).args(["check-config", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: key `http.port`: unknown field `port`", config.display())), "{stderr}");
}
