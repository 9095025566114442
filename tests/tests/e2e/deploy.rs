//! Keeping a venue running across upgrades and accidents: schema
//! migrations from a database the previous release wrote, and backups
//! taken while the agent works.

use std::path::Path;
use std::process::Command as Run;

use netbar_tests::{TempDir, binary};

use super::agent::Venue;

/// A database written by netbar at commit 32b41c6 (schema before the
/// regulator outbox, no schema version): three check-ins (one refused) and
/// one check-out. Made by running that commit's agent; see tests/fixtures/README.md.
const PREVIOUS_RELEASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/netbar-32b41c6.sqlite");

fn records(command: &str, db: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["records", command, "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    Run::new(binary("netbar-agent")).args(&args).output().unwrap()
}

fn exported(db: &Path) -> String {
    let output = records("export", db, &["--from", "2000-01-01", "--to", "2100-01-01"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn user_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db).unwrap().query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap()
}

/// The previous release's database opens in this one: migrated to the
/// current schema, its chain intact, and the agent appends to it.
#[test]
fn a_database_of_the_previous_release_migrates_and_its_chain_holds() {
    let mut venue = Venue::new("upgrade");
    let data = venue.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("netbar.sqlite");
    // Every tool works on copies: the fixture stays as the old release wrote it.
    std::fs::copy(PREVIOUS_RELEASE, &db).unwrap();
    assert_eq!(user_version(&db), 0, "the fixture predates schema versions");
    let reference = venue.dir.path().join("reference.sqlite");
    std::fs::copy(PREVIOUS_RELEASE, &reference).unwrap();
    let old = exported(&reference);
    let old_entries = old.lines().count();
    assert_eq!(old_entries, 4, "{old}");

    venue.start();
    let token = venue.sign_in("li", "cashier");
    let body = serde_json::json!({"document_type": "other", "number": "U0000001", "birth_date": "1990-01-01"});
    let (status, answer) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body));
    assert_eq!(status, 201, "{answer}");
    venue.agent.take().unwrap().terminate();

    assert_eq!(user_version(&db), 2, "migrated to the current schema");
    let verify = records("verify", &db, &[]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let now = exported(&db);
    assert!(now.starts_with(&old), "the old entries are untouched, in order");
    assert_eq!(now.lines().count(), old_entries + 1, "{now}");
    assert!(now.contains(answer["result"]["ticket"].as_str().unwrap()));
}

/// A database from a newer netbar is refused, not touched.
#[test]
fn a_database_of_a_newer_release_is_refused() {
    let dir = TempDir::new("newer");
    let db = dir.path().join("netbar.sqlite");
    std::fs::copy(PREVIOUS_RELEASE, &db).unwrap();
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let before = std::fs::read(&db).unwrap();
    let verify = records("verify", &db, &[]);
    assert_eq!(verify.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(stderr.contains("schema version 99, written by a newer netbar"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not touched");
}

/// A backup taken during a burst of check-ins verifies, holds every
/// check-in acknowledged before it started, and restores.
#[test]
fn a_backup_taken_while_the_agent_works_verifies_and_restores() {
    let mut venue = Venue::new("backup");
    venue.start();
    let token = venue.sign_in("li", "cashier");
    let db = venue.dir.path().join("data").join("netbar.sqlite");
    let check_in = |n: u32| {
        let body = serde_json::json!({"document_type": "other", "number": format!("B{n:07}"), "birth_date": "1990-01-01"});
        let (status, answer) = netbar_tests::http(venue.http, "POST", "/api/v1/checkins", Some(&token), Some(&body));
        assert_eq!(status, 201, "{answer}");
        answer["result"]["ticket"].as_str().unwrap().to_owned()
    };
    let before: Vec<String> = (0..20).map(check_in).collect();
    let (http, burst_token) = (venue.http, token.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burst = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = serde_json::json!({"document_type": "other", "number": format!("B{n:07}"), "birth_date": "1990-01-01"});
                netbar_tests::http(http, "POST", "/api/v1/checkins", Some(&burst_token), Some(&body));
                n += 1;
            }
            n - 1000
        })
    };
    let dir = TempDir::new("backup-copy");
    let copy = dir.path().join("copy.sqlite");
    let backup = records("backup", &db, &["--to", copy.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = burst.join().unwrap();
    assert!(backup.status.success(), "{}{}", String::from_utf8_lossy(&backup.stdout), String::from_utf8_lossy(&backup.stderr));
    assert!(String::from_utf8_lossy(&backup.stdout).contains("registration log intact"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600, "personal data: owner only");
    }
    let copied = exported(&copy);
    for ticket in &before {
        assert!(copied.contains(ticket), "{ticket} missing from the backup");
    }
    assert!(during > 0, "check-ins went on during the backup");
    let again = records("backup", &db, &["--to", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "an existing file is not overwritten");

    // Restored in place of a lost database, after the agent stopped.
    venue.agent.take().unwrap().terminate();
    let restored = dir.path().join("restored.sqlite");
    let restore = Run::new(binary("netbar-agent"))
        .args(["records", "restore", "--from", copy.to_str().unwrap(), "--db", restored.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(exported(&restored), copied);
}
