//! `netbar-agent check-id`, run as a user would run it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use netbar_tests::binary;
use serde_json::Value;

fn check_id(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary("netbar-agent"))
        .arg("check-id")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netbar-agent starts");
    child.stdin.take().expect("piped").write_all(stdin.as_bytes()).expect("stdin written");
    child.wait_with_output().expect("netbar-agent exits")
}

fn lines(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "exit {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("UTF-8").lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

#[test]
fn chinese_numbers_valid_legacy_invalid_and_minor() {
    let output = check_id(
        &["--at", "2026-11-22T20:00:00+08:00", "11010519491231002x", "110105491231002", "310104201001151236", "11010519491231002"],
        "",
    );
    let lines = lines(&output);
    assert_eq!(lines.len(), 4);
    let adult = &lines[0];
    assert_eq!(adult["input"], "11010519491231002x");
    assert_eq!(adult["valid"], true);
    assert_eq!(adult["number"], "11010519491231002X");
    assert_eq!(adult["birth_date"], "1949-12-31");
    assert_eq!(adult["age"], 76);
    assert_eq!(adult["allowed"], true);
    assert_eq!(adult["reasons"], serde_json::json!([]));
    assert_eq!(adult["until"], Value::Null);

    assert_eq!(lines[1]["number"], "11010519491231002X");
    assert_eq!(lines[1]["converted_from_legacy"], true);

    let minor = &lines[2];
    assert_eq!(minor["age"], 16);
    assert_eq!(minor["allowed"], false);
    assert_eq!(minor["reasons"], serde_json::json!(["under_age"]));
    // 18th birthday, 2028-01-15, at midnight in Shanghai.
    assert_eq!(minor["until"], "2028-01-14T16:00:00Z");

    let invalid = &lines[3];
    assert_eq!(invalid["valid"], false);
    assert_eq!(invalid["error"], "length");
    assert_eq!(invalid["allowed"], false);
}

#[test]
fn birthday_depends_on_the_venue_zone() {
    // Born 2008-11-23: at 2026-11-22T16:30Z it is already the 23rd in
    // Shanghai but still the 22nd in UTC.
    let args = |tz: &'static str| ["--at", "2026-11-22T16:30:00Z", "--tz", tz, "-"];
    let number = "110105200811230010\n";
    let shanghai = lines(&check_id(&args("Asia/Shanghai"), number));
    let utc = lines(&check_id(&args("UTC"), number));
    assert_eq!(shanghai[0]["valid"], true, "{}", shanghai[0]);
    assert_eq!((shanghai[0]["age"].as_i64(), shanghai[0]["allowed"].as_bool()), (Some(18), Some(true)));
    assert_eq!((utc[0]["age"].as_i64(), utc[0]["allowed"].as_bool()), (Some(17), Some(false)));
    assert_eq!(utc[0]["until"], "2026-11-23T00:00:00Z");
}

#[test]
fn korean_numbers_from_stdin_with_curfew() {
    // 23:00 in Seoul: a 2012-born youth is outside 09:00–22:00 until 09:00.
    let input = "120601-3000004\n\n900101-1234568\n900101-12345\n";
    let lines = lines(&check_id(&["--jurisdiction", "kr", "--at", "2026-11-22T23:00:00+09:00", "-"], input));
    assert_eq!(lines.len(), 3, "blank lines are skipped");
    assert_eq!(lines[0]["birth_date"], "2012-06-01");
    assert_eq!(lines[0]["allowed"], false);
    assert_eq!(lines[0]["reasons"], serde_json::json!(["youth_hours"]));
    assert_eq!(lines[0]["until"], "2026-11-23T00:00:00Z");
    assert_eq!(lines[1]["allowed"], true);
    assert_eq!(lines[2]["error"], "length");

    let guarded = self::lines(&check_id(&["--jurisdiction", "kr", "--guardian", "--at", "2026-11-22T23:00:00+09:00", "-"], input));
    assert_eq!(guarded[0]["allowed"], true);
}

#[test]
fn bad_options_say_what_is_wrong() {
    let output = check_id(&["--tz", "Mars/Olympus", "11010519491231002X"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tz \"Mars/Olympus\" is not a known time zone"));

    let output = check_id(&["--at", "tomorrow", "11010519491231002X"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--at \"tomorrow\" is not an RFC 3339 instant"));

    let dir = std::env::temp_dir().join(format!("netbar-e2e-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "name = \"x\"\nadult_age = 18\nretention_days = 60\n[minors]\naccess = \"never\"\n").unwrap();
    let output = check_id(&["--policy", policy.to_str().unwrap(), "11010519491231002X"], "");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("policy field `minors.access`: unknown variant `never`"), "{stderr}");
    assert!(output.stdout.is_empty());
}
