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
    // 개인정보 보호법 제24조의2: what is said of a number is no more than the
    // registration log keeps, YYMMDD-G, for a valid one and a broken one.
    assert_eq!((lines[0]["input"].as_str(), lines[0]["number"].as_str()), (Some("120601-3"), Some("120601-3")));
    assert_eq!((lines[2]["input"].as_str(), lines[2]["number"].as_str()), (Some("900101-1"), None));
    let output = check_id(&["--jurisdiction", "kr", "--at", "2026-11-22T23:00:00+09:00", "-"], input);
    for tail in ["3000004", "1234568", "-12345"] {
        assert!(!String::from_utf8_lossy(&output.stdout).contains(tail), "{tail} in {}", String::from_utf8_lossy(&output.stdout));
    }

    let guarded = self::lines(&check_id(&["--jurisdiction", "kr", "--guardian", "--at", "2026-11-22T23:00:00+09:00", "-"], input));
    assert_eq!(guarded[0]["allowed"], true);
}

/// Foreign permanent resident ID cards: the 2023 edition (9, province,
/// ISO 3166-1 numeric nationality, birth date, sequence, MOD 11-2) and the
/// 2017 one (alpha-3 nationality, province and city, YYMMDD, check digit),
/// read with the nationality and province they carry; a broken one refused.
#[test]
fn permanent_residence_cards_at_the_command_line() {
    let at = ["--at", "2026-12-07T12:00:00+08:00"];
    let output = check_id(&[&at[..], &["932682198501010017", "KAZ110090123105", "932682198501010018", "931586201001010022"]].concat(), "");
    let lines = lines(&output);
    assert_eq!((lines[0]["kind"].as_str(), lines[0]["allowed"].as_bool()), (Some("cn_permanent_residence"), Some(true)), "{}", lines[0]);
    assert_eq!(
        lines[0]["permanent_residence"],
        serde_json::json!({"edition": "2023", "nationality": "SAU", "nationality_name": "Saudi Arabia", "province": 32, "province_name": "江苏省"})
    );
    assert_eq!((lines[0]["sex"].as_str(), lines[0]["birth_date"].as_str()), (Some("male"), Some("1985-01-01")));
    assert_eq!(lines[1]["permanent_residence"]["edition"], "2017");
    assert_eq!((lines[1]["birth_date"].as_str(), lines[1]["check_digit_matches"].as_bool()), (Some("1990-12-31"), Some(true)));
    assert_eq!((lines[2]["valid"].as_bool(), lines[2]["error"].as_str()), (Some(false), Some("check_character")));
    // A holder of 16 is a minor like any other: 第二十一条.
    assert_eq!((lines[3]["valid"].as_bool(), lines[3]["reasons"].clone()), (Some(true), serde_json::json!(["under_age"])), "{}", lines[3]);
}

/// Students as policy data: under the Game Industry Act as it read until
/// 2023 (kr-until-2023.toml) a presumed student of 18 is refused at night
/// and `--student no` admits them; under today's kr it changes nothing.
#[test]
fn the_student_rule_is_policy_data_at_the_command_line() {
    let old = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/policies/kr-until-2023.toml");
    let night = ["--jurisdiction", "kr", "--at", "2027-01-15T23:00:00+09:00"];
    let decide = |extra: &[&str]| lines(&check_id(&[&night[..], extra, &["080615-3"]].concat(), ""))[0].clone();
    let presumed = decide(&["--policy", old]);
    assert_eq!(
        (presumed["allowed"].as_bool(), presumed["youth"].as_str(), presumed["ask_student"].as_bool()),
        (Some(false), Some("presumed_student"), Some(true)),
        "{presumed}"
    );
    let left_school = decide(&["--policy", old, "--student", "no"]);
    assert_eq!((left_school["allowed"].as_bool(), left_school["youth"].as_str()), (Some(true), None), "{left_school}");
    let today = decide(&["--student", "yes"]);
    assert_eq!(
        (today["allowed"].as_bool(), today["ask_student"].as_bool()),
        (Some(true), Some(false)),
        "born 2008: not a youth since 1 January 2027: {today}"
    );
    let output = check_id(&[&night[..], &["--student", "maybe", "080615-3"]].concat(), "");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("\"maybe\" is neither yes nor no"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
