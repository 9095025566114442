//! Messages refused from the bus: counted for /metrics, and logged so that
//! nobody can fill the disk by sending junk.
//!
//! The first refusal of a sender for a reason is logged at once, with what
//! was wrong; the others within [`QUIET_FOR`] are only counted, and one line
//! says how many when the interval ends. The senders remembered are
//! bounded: beyond [`SENDERS_KEPT`] (a flood under ever new names) they are
//! logged together as "others".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after a logged refusal the same sender's refusals for the same
/// reason are only counted.
pub(crate) const QUIET_FOR: Duration = Duration::from_secs(60);
/// Most (sender, reason) pairs followed at once.
const SENDERS_KEPT: usize = 1024;

/// Why messages (and connections to the embedded bus) were refused,
/// counted for /metrics and logged sparingly. Shared by the bus and the
/// agent's message checks.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    counts: Mutex<HashMap<&'static str, u64>>,
    log: Mutex<RefusalLog>,
}

impl Refusals {
    pub(crate) fn count(&self, reason: &'static str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(reason).or_default() += 1;
        }
    }

    /// Counts a refusal and logs it if it is the first of `sender` for
    /// `reason` in the interval; `what` says what was refused.
    pub(crate) fn refuse(&self, sender: &str, reason: &'static str, what: &str, detail: &dyn std::fmt::Display) {
        self.count(reason);
        let news = self.log.lock().is_ok_and(|mut log| log.refused(sender, reason, Instant::now()));
        if news {
            tracing::warn!(%sender, reason, %detail, "{what} refused (more like it are counted, not logged, for a minute)");
        }
    }

    /// Logs how many refusals each sender had beyond the one logged, for
    /// the intervals that are over.
    pub(crate) fn log_counts(&self) {
        let over = self.log.lock().map(|mut log| log.over(Instant::now())).unwrap_or_default();
        for (sender, reason, count) in over {
            tracing::warn!(%sender, reason, count, "refused in the last minute, beyond the one logged");
        }
    }

    /// The counts by reason.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<_> = self.counts.lock().map(|c| c.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default();
        counts.sort();
        counts
    }
}

/// The refusals of one sender for one reason since it was last logged.
#[derive(Debug)]
struct Quiet {
    since: Instant,
    more: u64,
}

/// What the log is told of refusals.
#[derive(Debug, Default)]
struct RefusalLog {
    quiet: HashMap<(String, &'static str), Quiet>,
}

/// One line for the log about suppressed refusals: sender, reason, how many.
type Suppressed = (String, &'static str, u64);

impl RefusalLog {
    /// A refusal of `sender`'s message for `reason` at `now`: whether to log
    /// it now (else it is counted for the interval's line).
    fn refused(&mut self, sender: &str, reason: &'static str, now: Instant) -> bool {
        let known = self.quiet.contains_key(&(sender.to_owned(), reason));
        let sender = if known || self.quiet.len() < SENDERS_KEPT { sender } else { "others" };
        match self.quiet.get_mut(&(sender.to_owned(), reason)) {
            Some(quiet) => {
                quiet.more += 1;
                false
            }
            None => {
                self.quiet.insert((sender.to_owned(), reason), Quiet { since: now, more: 0 });
                true
            }
        }
    }

    /// The intervals over at `now`: the counts to log, and those senders
    /// logged at once again next time.
    fn over(&mut self, now: Instant) -> Vec<Suppressed> {
        let mut lines = Vec::new();
        self.quiet.retain(|(sender, reason), quiet| {
            if now.duration_since(quiet.since) < QUIET_FOR {
                return true;
            }
            if quiet.more > 0 {
                lines.push((sender.clone(), *reason, quiet.more));
            }
            false
        });
        lines.sort();
        lines
    }
}

/// Who sent a refused message, as far as its topic says: a station or
/// sensor id, or that the topic itself is not ours (its first characters).
pub(crate) fn sender_of(topic: &str) -> String {
    match netbar_protocol::Topic::parse(topic) {
        Ok(netbar_protocol::Topic::Station { station, .. }) => format!("station {station}"),
        Ok(netbar_protocol::Topic::Sensor { sensor, .. }) => format!("sensor {sensor}"),
        _ => "a topic not of this venue's stations".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: every refused message wrote a log line; 200,000 junk
    /// messages in 10 s wrote 66 MB.
    #[test]
    fn a_flood_of_refusals_writes_a_line_per_sender_and_reason_per_interval() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        let mut logged = 0;
        for n in 0..200_000u32 {
            let now = start + Duration::from_micros(u64::from(n) * 50);
            logged += usize::from(log.refused("station st-2", "forged", now));
        }
        assert!(log.refused("station st-2", "decode", start), "another reason is news");
        assert!(log.refused("station st-3", "forged", start), "another sender too");
        assert_eq!(logged, 1);
        assert!(log.over(start + Duration::from_secs(59)).is_empty(), "the interval is not over");
        let over = log.over(start + QUIET_FOR);
        assert_eq!(over, [("station st-2".to_owned(), "forged", 199_999)]);
        assert!(log.refused("station st-2", "forged", start + QUIET_FOR), "logged at once again after the interval");
    }

    #[test]
    fn ever_new_senders_are_logged_together_beyond_a_bound() {
        let mut log = RefusalLog::default();
        let now = Instant::now();
        let logged = (0..5_000).filter(|n| log.refused(&format!("station st-{n}"), "unenrolled_station", now)).count();
        assert_eq!(logged, SENDERS_KEPT + 1, "each of the first, then one line for all the others");
        assert_eq!(log.quiet.len(), SENDERS_KEPT + 1);
        let over = log.over(now + QUIET_FOR);
        assert_eq!(over, [("others".to_owned(), "unenrolled_station", 5_000 - SENDERS_KEPT as u64 - 1)]);
        assert_eq!(sender_of("netbar/v1/venue-1/station/st-7/event"), "station st-7");
        assert_eq!(sender_of("anything/else"), "a topic not of this venue's stations");
    }
}
