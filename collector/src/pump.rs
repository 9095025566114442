//! The spool pump: decides which spooled messages go out, and when.
//!
//! Spooled messages are published oldest first, with at most [`WINDOW`]
//! awaiting the agent's receipt. After a reconnect, or when no receipt has
//! come for [`RESEND_AFTER`], everything held goes again from the oldest: the
//! broker may have lost it, and the agent drops duplicates.
//!
//! The pump does no I/O and reads no clock: the station tells it what
//! happened and when, answers its questions about the spool through
//! [`Held`], and carries out the [`PumpAction`] it returns. So it can be
//! tested without a disk, a broker or waiting.

use std::time::Duration;

use tokio::time::Instant;

use crate::spool::Spool;

/// Most spooled messages published and awaiting the agent's receipt.
pub(crate) const WINDOW: usize = 64;
/// Without a receipt for this long, the window is sent again.
pub(crate) const RESEND_AFTER: Duration = Duration::from_secs(15);

/// What the pump needs to know of the spool.
pub(crate) trait Held {
    /// How many messages held have a sequence number up to `seq`.
    fn count_up_to(&self, seq: u64) -> usize;
    /// Whether no message is held.
    fn is_empty(&self) -> bool;
}

impl Held for Spool {
    fn count_up_to(&self, seq: u64) -> usize {
        Spool::count_up_to(self, seq)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What happened that concerns the pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpEvent {
    /// Connected (again) to the broker.
    Connected,
    /// The connection to the broker is lost.
    Disconnected,
    /// A message was spooled (or could not be, and went out without a copy).
    Spooled,
    /// The agent's delivery acknowledgement was handled; `acknowledged` when
    /// it took at least one message out of the spool.
    Receipt { acknowledged: bool },
    /// The clock ticked.
    Tick,
}

/// What the station is to do for the pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpAction {
    /// Publish the spooled messages after sequence number `after`, oldest
    /// first, at most `limit` of them, telling [`Pump::published`] of each
    /// one the client took, and stopping at the first it refused.
    Publish { after: u64, limit: usize },
    /// No receipt came for [`RESEND_AFTER`]: worth a line in the log, then
    /// publish as for [`PumpAction::Publish`] from the oldest.
    Resend { limit: usize },
}

/// The pump's state.
#[derive(Debug)]
pub(crate) struct Pump {
    connected: bool,
    /// Highest spooled sequence number published on this connection.
    sent_up_to: u64,
    /// When the last receipt came (or the window last went again).
    last_progress: Instant,
}

impl Pump {
    /// A pump not yet connected.
    pub(crate) fn new(now: Instant) -> Pump {
        Pump { connected: false, sent_up_to: 0, last_progress: now }
    }

    /// Whether the broker is connected.
    pub(crate) fn connected(&self) -> bool {
        self.connected
    }

    /// Takes in what happened at `now`; returns what to publish, if anything.
    pub(crate) fn handle(&mut self, event: PumpEvent, now: Instant, held: &impl Held) -> Option<PumpAction> {
        match event {
            PumpEvent::Connected => {
                self.connected = true;
                self.sent_up_to = 0;
                self.last_progress = now;
            }
            PumpEvent::Disconnected => {
                self.connected = false;
                return None;
            }
            PumpEvent::Spooled => {}
            PumpEvent::Receipt { acknowledged } => {
                if acknowledged {
                    self.last_progress = now;
                }
            }
            PumpEvent::Tick => {
                if !self.connected || held.is_empty() || now.saturating_duration_since(self.last_progress) <= RESEND_AFTER {
                    return None;
                }
                self.sent_up_to = 0;
                self.last_progress = now;
                return self.window(held).map(|limit| PumpAction::Resend { limit });
            }
        }
        self.window(held).map(|limit| PumpAction::Publish { after: self.sent_up_to, limit })
    }

    /// Records that the client took spooled message `seq` on this connection.
    pub(crate) fn published(&mut self, seq: u64) {
        self.sent_up_to = seq;
    }

    /// How many more may be published now, if any.
    fn window(&self, held: &impl Held) -> Option<usize> {
        if !self.connected {
            return None;
        }
        let outstanding = held.count_up_to(self.sent_up_to);
        (outstanding < WINDOW).then(|| WINDOW - outstanding)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The spool's sequence numbers, as numbered from the clock: far above 0.
    const FIRST: u64 = 1_700_000_000_000_000;

    /// A spool of sequence numbers only.
    #[derive(Debug, Default)]
    struct Fake(BTreeSet<u64>);

    impl Fake {
        fn holding(count: u64) -> Fake {
            Fake((FIRST..FIRST + count).collect())
        }
    }

    impl Held for Fake {
        fn count_up_to(&self, seq: u64) -> usize {
            self.0.range(..=seq).count()
        }

        fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// Carries out an action as the station does, with a client that takes
    /// `room` messages before its queue is full; returns what went out.
    fn carry_out(pump: &mut Pump, action: Option<PumpAction>, spool: &Fake, room: usize) -> Vec<u64> {
        let (after, limit) = match action {
            None => return Vec::new(),
            Some(PumpAction::Publish { after, limit }) => (after, limit),
            Some(PumpAction::Resend { limit }) => (0, limit),
        };
        let sent: Vec<u64> = spool.0.range(after + 1..).take(limit).take(room).copied().collect();
        for &seq in &sent {
            pump.published(seq);
        }
        sent
    }

    /// Feeds `event` at `now` and carries out what follows, with room in the client.
    fn feed(pump: &mut Pump, event: PumpEvent, now: Instant, spool: &Fake) -> Vec<u64> {
        let action = pump.handle(event, now, spool);
        carry_out(pump, action, spool, usize::MAX)
    }

    fn seqs(range: std::ops::Range<u64>) -> Vec<u64> {
        range.map(|n| FIRST + n).collect()
    }

    #[test]
    fn never_more_than_the_window_awaits_a_receipt() {
        let start = Instant::now();
        let mut spool = Fake::holding(200);
        let mut pump = Pump::new(start);
        assert_eq!(feed(&mut pump, PumpEvent::Connected, start, &spool), seqs(0..64));
        spool.0.insert(FIRST + 200);
        assert_eq!(pump.handle(PumpEvent::Spooled, start, &spool), None, "the window is full");
        for seq in seqs(0..10) {
            spool.0.remove(&seq);
        }
        let more = feed(&mut pump, PumpEvent::Receipt { acknowledged: true }, start, &spool);
        assert_eq!(more, seqs(64..74), "ten receipts make room for ten more");
        assert_eq!(spool.count_up_to(FIRST + 73), WINDOW);
        assert_eq!(pump.handle(PumpEvent::Spooled, start, &spool), None);
    }

    #[test]
    fn nothing_is_published_while_disconnected() {
        let start = Instant::now();
        let spool = Fake::holding(3);
        let mut pump = Pump::new(start);
        let later = start + RESEND_AFTER * 4;
        for event in [PumpEvent::Spooled, PumpEvent::Receipt { acknowledged: true }, PumpEvent::Tick] {
            assert_eq!(pump.handle(event, later, &spool), None, "{event:?} before any connection");
        }
        assert_eq!(feed(&mut pump, PumpEvent::Connected, start, &spool), seqs(0..3));
        assert_eq!(pump.handle(PumpEvent::Disconnected, start, &spool), None);
        assert!(!pump.connected());
        for event in [PumpEvent::Spooled, PumpEvent::Receipt { acknowledged: true }, PumpEvent::Tick] {
            assert_eq!(pump.handle(event, later, &spool), None, "{event:?} after the connection was lost");
        }
    }

    #[test]
    fn a_reconnect_sends_from_the_oldest_again() {
        let start = Instant::now();
        let mut spool = Fake::holding(5);
        let mut pump = Pump::new(start);
        assert_eq!(feed(&mut pump, PumpEvent::Connected, start, &spool), seqs(0..5));
        spool.0.remove(&FIRST);
        assert_eq!(feed(&mut pump, PumpEvent::Receipt { acknowledged: true }, start, &spool), Vec::<u64>::new());
        pump.handle(PumpEvent::Disconnected, start, &spool);
        let action = pump.handle(PumpEvent::Connected, start, &spool);
        assert_eq!(action, Some(PumpAction::Publish { after: 0, limit: WINDOW }));
        assert_eq!(carry_out(&mut pump, action, &spool, usize::MAX), seqs(1..5), "all not yet acknowledged, oldest first");
    }

    #[test]
    fn without_receipts_the_window_goes_again_once_per_resend_after() {
        let start = Instant::now();
        let spool = Fake::holding(70);
        let mut pump = Pump::new(start);
        assert_eq!(feed(&mut pump, PumpEvent::Connected, start, &spool), seqs(0..64));
        assert_eq!(pump.handle(PumpEvent::Tick, start + RESEND_AFTER, &spool), None, "not yet: only after RESEND_AFTER");
        let resent = start + RESEND_AFTER + Duration::from_millis(1);
        assert_eq!(pump.handle(PumpEvent::Tick, resent, &spool), Some(PumpAction::Resend { limit: WINDOW }));
        assert_eq!(carry_out(&mut pump, Some(PumpAction::Resend { limit: WINDOW }), &spool, usize::MAX), seqs(0..64));
        for wait in [1, 5, 15] {
            let now = resent + Duration::from_secs(wait);
            assert_eq!(pump.handle(PumpEvent::Tick, now, &spool), None, "{wait} s after the window went again");
        }
        let again = resent + RESEND_AFTER + Duration::from_millis(1);
        assert_eq!(pump.handle(PumpEvent::Tick, again, &spool), Some(PumpAction::Resend { limit: WINDOW }));
        // Nothing held, nothing to wait for.
        let mut idle = Pump::new(start);
        idle.handle(PumpEvent::Connected, start, &Fake::default());
        assert_eq!(idle.handle(PumpEvent::Tick, again, &Fake::default()), None);
    }

    #[test]
    fn a_receipt_is_progress_and_pumps_more() {
        let start = Instant::now();
        let mut spool = Fake::holding(100);
        let mut pump = Pump::new(start);
        feed(&mut pump, PumpEvent::Connected, start, &spool);
        let receipt = start + Duration::from_secs(10);
        spool.0.remove(&FIRST);
        assert_eq!(feed(&mut pump, PumpEvent::Receipt { acknowledged: true }, receipt, &spool), seqs(64..65));
        let tick = start + RESEND_AFTER + Duration::from_secs(1);
        assert_eq!(pump.handle(PumpEvent::Tick, tick, &spool), None, "the receipt 6 s ago was progress");
        // A receipt for nothing held is no progress.
        let stale = receipt + Duration::from_secs(10);
        assert_eq!(pump.handle(PumpEvent::Receipt { acknowledged: false }, stale, &spool), None);
        let tick = receipt + RESEND_AFTER + Duration::from_secs(1);
        assert_eq!(pump.handle(PumpEvent::Tick, tick, &spool), Some(PumpAction::Resend { limit: WINDOW }));
    }

    #[test]
    fn a_full_client_queue_stops_at_the_last_published_and_the_next_pump_goes_on_after_it() {
        let start = Instant::now();
        let spool = Fake::holding(10);
        let mut pump = Pump::new(start);
        let action = pump.handle(PumpEvent::Connected, start, &spool);
        assert_eq!(carry_out(&mut pump, action, &spool, 4), seqs(0..4));
        let next = pump.handle(PumpEvent::Spooled, start, &spool);
        assert_eq!(next, Some(PumpAction::Publish { after: FIRST + 3, limit: WINDOW - 4 }));
        assert_eq!(carry_out(&mut pump, next, &spool, usize::MAX), seqs(4..10));
    }
}
