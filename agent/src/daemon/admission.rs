//! What a message from the bus must pass before the venue sees it: its
//! topic, the enrollment of its sender, its MAC, its venue and kind, and
//! its place in the sender's sequence. Pure: no I/O, no clock.

use std::collections::HashMap;
use std::time::Duration;

use netbar_protocol::{Envelope, Message, SenderRole, StationId, Topic, decode};

use crate::store::SEQUENCES_KEPT;
use crate::store::thread::{Enrolled, Reply};

/// A message that passed every check.
pub(super) struct Accepted {
    pub(super) station: StationId,
    pub(super) envelope: Envelope,
}

/// Checks a message from the bus; the reason code when refused.
pub(super) fn check(
    enrolled: &Enrolled,
    venue: &netbar_protocol::VenueId,
    topic: &str,
    payload: &[u8],
) -> Result<Accepted, (&'static str, String)> {
    let parsed = Topic::parse(topic).map_err(|e| ("topic", e.to_string()))?;
    if parsed.venue() != venue {
        return Err(("venue", format!("topic of venue {}", parsed.venue())));
    }
    let envelope = decode(payload).map_err(|e| ("decode", e.to_string()))?;
    let station: StationId = match &parsed {
        Topic::Station { station, .. } => station.clone(),
        Topic::Sensor { sensor, .. } => {
            let bridge = enrolled.sensors.get(sensor.as_str()).ok_or(("unenrolled_sensor", format!("sensor {sensor} is not enrolled")))?;
            bridge.parse().map_err(|_| ("unenrolled_sensor", format!("sensor {sensor} has a bad station")))?
        }
        Topic::Agent { .. } | Topic::Regulator { .. } => return Err(("topic", "not a station's topic".into())),
    };
    let key = enrolled.stations.get(station.as_str()).ok_or(("unenrolled_station", format!("station {station} is not enrolled")))?;
    key.verify(topic, payload).map_err(|e| ("forged", e.to_string()))?;
    if envelope.sender.role != SenderRole::Station || envelope.sender.id != station.as_str() {
        return Err(("forged", format!("sender {:?} {} is not station {station}", envelope.sender.role, envelope.sender.id)));
    }
    if &envelope.venue != venue {
        return Err(("venue", format!("envelope of venue {}", envelope.venue)));
    }
    if !parsed.carries().contains(&envelope.kind()) {
        return Err(("kind", format!("a {} message does not belong on {topic}", envelope.kind())));
    }
    if i64::try_from(envelope.seq).is_err() {
        return Err(("sequence", format!("sequence number {} is beyond 2^63", envelope.seq)));
    }
    Ok(Accepted { station, envelope })
}

/// The sequence numbers accepted from each station: the newest
/// [`SEQUENCES_KEPT`] of each, kept in the database with the entries they
/// caused, so a message captured once is refused after any restart.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    accepted: HashMap<String, std::collections::BTreeSet<u64>>,
}

/// Seconds a station's clock may be off before its tile says so.
const CLOCK_OFF_AFTER: i64 = 30;

/// What the agent keeps of the messages it admitted: the sequence numbers
/// accepted (and those not yet sent to the store), and the stations whose
/// clocks are off.
#[derive(Debug, Default)]
pub(super) struct Admission {
    pub(super) sequences: Sequences,
    /// Sequence numbers accepted since they were last sent to the store.
    pub(super) accepted: Vec<((String, u64), Reply<()>)>,
    /// Stations whose clocks are off: seconds ahead (negative: behind).
    pub(super) skews: HashMap<String, i64>,
}

impl Admission {
    /// Keeps how far off a station's clock is, for its tile; logged when it
    /// goes off and when it is right again.
    pub(super) fn note_clock(&mut self, station: &StationId, skew: i64, window: Duration) {
        if skew.abs() > CLOCK_OFF_AFTER {
            if self.skews.insert(station.to_string(), skew).is_none() {
                let window = window.as_secs();
                tracing::warn!(%station, skew_seconds = skew, window, "the station's clock is off from this one: its telemetry and status are refused once further off than the window");
            }
        } else if self.skews.remove(station.as_str()).is_some() {
            tracing::info!(%station, "the station's clock is right again");
        }
    }
}

/// What a sequenced message is to the station's sequence.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sequenced {
    New,
    /// Accepted already: a resend whose receipt was lost, or a replay.
    Again,
    /// Older than every number kept: a replay, or a station whose spool
    /// was reset and counts from a number it already used.
    Stale {
        newest: u64,
    },
}

impl Sequences {
    pub(super) fn restore(accepted: HashMap<String, Vec<u64>>) -> Sequences {
        Sequences { accepted: accepted.into_iter().map(|(station, seqs)| (station, seqs.into_iter().collect())).collect() }
    }

    pub(super) fn judge(&self, station: &str, seq: u64) -> Sequenced {
        let Some(kept) = self.accepted.get(station) else { return Sequenced::New };
        if kept.contains(&seq) {
            return Sequenced::Again;
        }
        match kept.first() {
            Some(&oldest_kept) if kept.len() >= SEQUENCES_KEPT && seq < oldest_kept => {
                Sequenced::Stale { newest: kept.last().copied().unwrap_or(oldest_kept) }
            }
            _ => Sequenced::New,
        }
    }

    pub(super) fn accept(&mut self, station: &str, seq: u64) {
        let kept = self.accepted.entry(station.to_owned()).or_default();
        kept.insert(seq);
        if kept.len() > SEQUENCES_KEPT {
            kept.pop_first();
        }
    }

    /// Takes back a number whose commit failed (the station sends it again).
    pub(super) fn forget(&mut self, station: &str, seq: u64) {
        if let Some(kept) = self.accepted.get_mut(station) {
            kept.remove(&seq);
        }
    }
}

/// A station's status saying it is offline: its last will, published by the
/// broker when the connection dies, so as old as the connection.
pub(super) fn is_last_will(message: &Message) -> bool {
    matches!(message, Message::StationStatus(status) if !status.online)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_number_is_accepted_once_and_one_older_than_all_kept_is_stale() {
        let mut sequences = Sequences::restore(HashMap::from([("st-1".to_owned(), vec![5, 6])]));
        assert_eq!(sequences.judge("st-1", 6), Sequenced::Again, "restored from the database");
        assert_eq!(sequences.judge("st-1", 4), Sequenced::New, "out of order, within what is kept");
        assert_eq!(sequences.judge("st-2", 1), Sequenced::New);
        for seq in 100..100 + SEQUENCES_KEPT as u64 {
            sequences.accept("st-1", seq);
        }
        assert_eq!(sequences.judge("st-1", 99), Sequenced::Stale { newest: 99 + SEQUENCES_KEPT as u64 });
        assert_eq!(sequences.judge("st-1", 100), Sequenced::Again);
        sequences.forget("st-1", 100);
        assert_eq!(sequences.judge("st-1", 100), Sequenced::New, "a number whose commit failed comes again");
    }
}
