//! `netbar-agent check-id`: the front desk's checks, from the command line.
//!
//! Each number is validated as a document of the jurisdiction, and a valid
//! one is run through the policy at the given instant in the venue's zone.
//! One JSON object per number goes to standard output, in input order. Under
//! a policy that keeps no document numbers (Korea's) the output holds no
//! more of a number than the registration log would: the input is echoed
//! cut to its first seven digits. `--explain` prints the rules table: each
//! rule, the article it comes from and the test that shows it.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::ValueEnum;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use netbar_protocol::identity::{self, Document, DocumentType};
use netbar_protocol::policy::{self, Circumstances, Decision, Policy};
use serde::Serialize;

/// Whose rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Jurisdiction {
    /// Mainland China: resident identity cards, residence permits and
    /// permanent-residence cards; no minors.
    Cn,
    /// Korea: resident registration numbers, youth hours 09:00–22:00.
    Kr,
}

impl Jurisdiction {
    fn document_type(self) -> DocumentType {
        match self {
            Jurisdiction::Cn => DocumentType::CnId,
            Jurisdiction::Kr => DocumentType::KrRrn,
        }
    }

    fn preset(self) -> &'static str {
        match self {
            Jurisdiction::Cn => "cn",
            Jurisdiction::Kr => "kr",
        }
    }

    fn default_zone(self) -> &'static str {
        match self {
            Jurisdiction::Cn => "Asia/Shanghai",
            Jurisdiction::Kr => "Asia/Seoul",
        }
    }
}

/// Arguments of `check-id`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Document numbers; `-` reads one number a line from standard input
    /// (blank lines are skipped).
    #[arg(required_unless_present = "explain", value_name = "NUMBER")]
    numbers: Vec<String>,
    /// Print the jurisdiction's rules (what netbar enforces and keeps, the
    /// article each comes from, the test that shows it) and exit.
    #[arg(long)]
    explain: bool,
    /// Whose documents and rules.
    #[arg(long, value_enum, default_value = "cn")]
    jurisdiction: Jurisdiction,
    /// The venue's time zone (IANA name); defaults to Asia/Shanghai for cn
    /// and Asia/Seoul for kr.
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// The instant to decide at, RFC 3339; defaults to now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// A policy file in TOML instead of the jurisdiction's preset.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// A guardian accompanies the person.
    #[arg(long)]
    guardian: bool,
    /// Whether the person is enrolled at a school whose students the policy
    /// counts as minors (without it: the policy's presumption).
    #[arg(long, value_name = "yes|no", value_parser = yes_or_no)]
    student: Option<bool>,
}

fn yes_or_no(text: &str) -> Result<bool, String> {
    match text {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(format!("{other:?} is neither yes nor no")),
    }
}

/// One output line.
#[derive(Debug, Serialize)]
struct Line<'a> {
    /// What was typed, as much of it as the policy keeps.
    input: &'a str,
    valid: bool,
    error: Option<&'static str>,
    detail: Option<String>,
    kind: Option<&'static str>,
    number: Option<&'a str>,
    birth_date: Option<String>,
    sex: Option<identity::Sex>,
    converted_from_legacy: Option<bool>,
    check_digit_matches: Option<bool>,
    /// For a permanent-residence card: the card's edition, the holder's
    /// nationality (ISO 3166-1 alpha-3) and the accepting province.
    #[serde(skip_serializing_if = "Option::is_none")]
    permanent_residence: Option<serde_json::Value>,
    age: Option<i32>,
    minor: Option<bool>,
    /// Why a minor is one: "age", "student" or "presumed_student".
    youth: Option<policy::Youth>,
    /// Whether the desk would be asked if the person is enrolled.
    ask_student: bool,
    allowed: bool,
    reasons: Vec<&'static str>,
    until: Option<Timestamp>,
}

/// Everything a check needs, resolved once.
struct Checker {
    document_type: DocumentType,
    policy: Policy,
    zone: TimeZone,
    at: Timestamp,
    today: jiff::civil::Date,
    circumstances: Circumstances,
}

impl Checker {
    fn new(args: &Args) -> anyhow::Result<Checker> {
        let zone_name = args.tz.as_deref().unwrap_or(args.jurisdiction.default_zone());
        let zone = crate::config::time_zone(zone_name).map_err(|reason| anyhow!("--tz {reason}"))?;
        let at = match &args.at {
            Some(text) => text
                .parse::<Timestamp>()
                .map_err(|error| anyhow!("--at {text:?} is not an RFC 3339 instant (like 2026-11-22T20:00:00+08:00): {error}"))?,
            None => Timestamp::now(),
        };
        let policy = match &args.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy file {}", path.display()))?;
                Policy::from_toml(&text).with_context(|| format!("policy file {}", path.display()))?
            }
            None => Policy::preset(args.jurisdiction.preset())?,
        };
        Ok(Checker {
            document_type: args.jurisdiction.document_type(),
            policy,
            today: at.to_zoned(zone.clone()).date(),
            zone,
            at,
            circumstances: Circumstances { guardian: args.guardian, student: args.student },
        })
    }

    fn check(&self, input: &str, out: &mut impl Write) -> io::Result<()> {
        let kept = self.policy.registration;
        // What may be echoed: under a policy that keeps no numbers, no more
        // than a Korean number's first seven digits and its hyphen.
        let echoed = if kept.keep_number { input.to_owned() } else { identity::repeatable_part(input) };
        let line = match identity::validate(self.document_type, input, self.today) {
            Ok(document) => {
                let document = kept.kept(&document);
                let decision = policy::evaluate(&self.policy, document.birth_date, self.at, &self.zone, self.circumstances);
                let ask_student = policy::asks_student(
                    &self.policy,
                    document.birth_date,
                    self.at,
                    &self.zone,
                    Circumstances { student: None, ..self.circumstances },
                );
                return write_line(out, &valid_line(&echoed, &document, &decision, ask_student));
            }
            Err(error) => Line {
                input: &echoed,
                valid: false,
                error: Some(error.code()),
                detail: Some(error.to_string()),
                kind: None,
                number: None,
                birth_date: None,
                sex: None,
                converted_from_legacy: None,
                check_digit_matches: None,
                permanent_residence: None,
                age: None,
                minor: None,
                youth: None,
                ask_student: false,
                allowed: false,
                reasons: vec!["invalid_document"],
                until: None,
            },
        };
        write_line(out, &line)
    }
}

fn valid_line<'a>(input: &'a str, document: &'a Document, decision: &Decision, ask_student: bool) -> Line<'a> {
    Line {
        input,
        valid: true,
        error: None,
        detail: None,
        kind: Some(document.kind.as_str()),
        number: Some(&document.number),
        birth_date: Some(document.birth_date.to_string()),
        sex: Some(document.sex),
        converted_from_legacy: Some(document.converted_from_legacy),
        check_digit_matches: document.check_digit_matches,
        permanent_residence: document.permanent_residence.map(|card| {
            serde_json::json!({
                "edition": card.edition,
                "nationality": card.nationality.alpha3,
                "nationality_name": card.nationality.name,
                "province": card.province.code,
                "province_name": card.province.name_zh,
            })
        }),
        age: Some(decision.age),
        minor: Some(decision.minor),
        youth: decision.youth,
        ask_student,
        allowed: decision.allowed,
        reasons: decision.reasons.iter().map(|reason| reason.code()).collect(),
        until: decision.until,
    }
}

fn write_line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// Runs `check-id`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.explain {
        print!("{}", policy::rules(args.jurisdiction.preset()));
        return Ok(ExitCode::SUCCESS);
    }
    let checker = Checker::new(&args)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = check_all(&checker, &args.numbers, &mut out).and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader went away (`| head`): nothing left to say to anyone.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error).context("cannot write to standard output"),
    }
}

fn check_all(checker: &Checker, numbers: &[String], out: &mut impl Write) -> io::Result<()> {
    for number in numbers {
        if number == "-" {
            let stdin = io::stdin();
            let mut input = stdin.lock();
            let mut buffer = Vec::with_capacity(64);
            loop {
                buffer.clear();
                if input.read_until(b'\n', &mut buffer)? == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buffer);
                let text = text.trim();
                if !text.is_empty() {
                    checker.check(text, out)?;
                }
            }
        } else {
            checker.check(number, out)?;
        }
    }
    Ok(())
}
