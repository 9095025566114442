//! Benchmark: 100,000 identity numbers through `netbar-agent check-id -`, the
//! real binary, reading standard input and writing JSON lines.
//!
//! Target (issue 2): under one second on one core. The child is pinned to one
//! CPU with `taskset` when it is available. The figures are printed, never
//! asserted: machines here are shared and noisy.
//!
//! Run with `cargo bench -p netbar-agent --bench check_id`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::civil::date;
use netbar_protocol::identity::{DocumentType, validate};

const NUMBERS: usize = 100_000;
const RUNS: usize = 5;

/// A small deterministic generator, so every run checks the same numbers.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 90% valid 18-character numbers spread over provinces and birth years
/// 1950–2015 (so adults and minors), 10% broken in various ways.
fn numbers() -> String {
    let provinces = [11, 31, 44, 51, 65, 81];
    let today = date(2026, 11, 22);
    let mut rng = Lcg(0x6e65_7462_6172);
    let mut out = String::with_capacity(NUMBERS * 20);
    for i in 0..NUMBERS {
        let body = format!(
            "{:02}{:04}{}{:02}{:02}{:03}",
            provinces[rng.below(provinces.len() as u64) as usize],
            rng.below(10_000),
            1950 + rng.below(66),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(1000)
        );
        let number = "0123456789X"
            .chars()
            .map(|check| format!("{body}{check}"))
            .find(|candidate| validate(DocumentType::CnId, candidate, today).is_ok())
            .unwrap_or(body.clone());
        let line = match i % 10 {
            9 => match rng.below(4) {
                0 => number[..15].to_owned() + "9",
                1 => number.replace('1', "l"),
                2 => format!("{}0", &number[..17]),
                _ => "99".to_owned() + &number[2..],
            },
            _ => number,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn run_once(binary: &str, input: &[u8], pin: bool) -> (Duration, usize, usize) {
    let mut command = if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", binary]);
        command
    } else {
        Command::new(binary)
    };
    command.args(["check-id", "--at", "2026-11-22T20:00:00+08:00", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("netbar-agent starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let (mut lines, mut allowed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let line = line.expect("output is UTF-8");
        lines += 1;
        allowed += usize::from(line.contains("\"allowed\":true"));
    }
    writer.join().expect("writer thread").expect("input written");
    let status = child.wait().expect("netbar-agent exits");
    let elapsed = started.elapsed();
    assert!(status.success(), "netbar-agent failed: {status}");
    (elapsed, lines, allowed)
}

fn main() {
    let binary = env!("CARGO_BIN_EXE_netbar-agent");
    let input = numbers();
    let pin = Command::new("taskset").args(["-c", "0", "true"]).status().is_ok_and(|s| s.success());
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let (elapsed, lines, allowed) = run_once(binary, input.as_bytes(), pin);
        assert_eq!(lines, NUMBERS, "one output line per number");
        assert!(allowed > 0 && allowed < NUMBERS, "a mix of adults and minors");
        times.push(elapsed);
    }
    times.sort();
    let median = times[RUNS / 2];
    let best = times[0];
    let rate = |d: Duration| NUMBERS as f64 / d.as_secs_f64();
    println!("check_id: {NUMBERS} numbers via stdin, {RUNS} runs, pinned to one core: {pin}");
    println!(
        "  median {:.3} s ({:.0} numbers/s), best {:.3} s ({:.0} numbers/s)",
        median.as_secs_f64(),
        rate(median),
        best.as_secs_f64(),
        rate(best)
    );
    println!("  target: under 1 s; median is {:.2}x the target", median.as_secs_f64());
}
