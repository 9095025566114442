//! The uplink's send window, as a state machine: what the sender does next
//! follows from what happened on the wire and in the outbox, with no I/O
//! here. The sender ([`super::sender`]) carries the actions out and reports
//! back.
//!
//! Messages go out in the outbox's order, at most [`WINDOW`] unacknowledged.
//! A message leaves the outbox only when the broker acknowledged the very
//! packet it went out in; removals go to the store one at a time. A window
//! lives for one connection: the next one starts again from the oldest
//! message in the outbox.

use std::collections::{HashMap, VecDeque};

/// Most messages sent and not yet acknowledged.
pub(crate) const WINDOW: usize = 100;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The outbox was read as [`Action::Read`] asked: these messages (by
    /// sequence number, in order) were handed to the client.
    Published { seqs: Vec<u64>, asked: usize },
    /// A heartbeat (outside the sequence) was handed to the client.
    Heartbeat,
    /// The client sent the oldest publish handed to it, as this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The broker answered this packet id with a failure.
    Refused(u16, String),
    /// The removal asked for last is done.
    Removed,
    /// Something new was queued in the outbox.
    Queued,
}

/// What the sender does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read at most `limit` messages queued after sequence number `after`,
    /// hand them to the client in order, and report [`Event::Published`].
    Read { after: u64, limit: usize },
    /// Remove these acknowledged messages from the outbox; report
    /// [`Event::Removed`] when done.
    Remove(Vec<u64>),
    /// End the connection: the outbox keeps everything unacknowledged.
    Fail(String),
}

/// One connection's window.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Handed to the client and waiting for their packet ids, in order; 0
    /// is a heartbeat.
    handed: VecDeque<u64>,
    /// Sent, by packet id, waiting for the broker's acknowledgement.
    in_flight: HashMap<u16, u64>,
    /// Acknowledged, waiting for their removal.
    acked: Vec<u64>,
    removing: bool,
    /// The last sequence number read from the outbox.
    cursor: u64,
    /// The last read found everything there was.
    drained: bool,
}

impl Window {
    /// The actions a fresh connection starts with.
    pub(crate) fn start(&mut self) -> Vec<Action> {
        self.next()
    }

    /// Takes in what happened; what to do now.
    pub(crate) fn handle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Published { seqs, asked } => {
                self.drained = seqs.len() < asked;
                if let Some(&last) = seqs.last() {
                    self.cursor = last;
                }
                self.handed.extend(seqs);
            }
            Event::Heartbeat => self.handed.push_back(0),
            Event::Sent(pkid) => {
                if let Some(seq) = self.handed.pop_front()
                    && seq > 0
                {
                    self.in_flight.insert(pkid, seq);
                }
            }
            Event::Acked(pkid) => self.acked.extend(self.in_flight.remove(&pkid)),
            Event::Refused(pkid, reason) => {
                let seq = self.in_flight.get(&pkid).copied().unwrap_or(0);
                return vec![Action::Fail(format!("the broker refused message {seq} ({reason}); it stays in the outbox"))];
            }
            Event::Removed => self.removing = false,
            Event::Queued => self.drained = false,
        }
        self.next()
    }

    /// Whether the last read found the outbox empty (nothing to read until
    /// something is queued).
    pub(crate) fn drained(&self) -> bool {
        self.drained
    }

    /// Reads while a quarter of the window is free, and removes what was
    /// acknowledged when no removal is under way.
    fn next(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let free = WINDOW.saturating_sub(self.handed.len() + self.in_flight.len());
        if !self.drained && free >= WINDOW / 4 {
            actions.push(Action::Read { after: self.cursor, limit: free });
        }
        if !self.acked.is_empty() && !self.removing {
            self.removing = true;
            actions.push(Action::Remove(std::mem::take(&mut self.acked)));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands `seqs` to the client and sends them as packet ids 1, 2, ….
    fn publish(window: &mut Window, seqs: std::ops::RangeInclusive<u64>, asked: usize) -> Vec<Action> {
        let seqs: Vec<u64> = seqs.collect();
        let count = seqs.len();
        let mut actions = window.handle(Event::Published { seqs, asked });
        for pkid in 1..=count {
            actions.extend(window.handle(Event::Sent(pkid as u16)));
        }
        actions
    }

    #[test]
    fn a_connection_reads_from_the_oldest_and_never_has_more_than_the_window_out() {
        let mut window = Window::default();
        assert_eq!(window.start(), vec![Action::Read { after: 0, limit: WINDOW }]);
        let actions = publish(&mut window, 1..=WINDOW as u64, WINDOW);
        assert!(actions.is_empty(), "a full window reads no more: {actions:?}");
        // One acknowledged: a removal, but no read until a quarter is free.
        assert_eq!(window.handle(Event::Acked(1)), vec![Action::Remove(vec![1])]);
        assert!(window.handle(Event::Removed).is_empty());
        for pkid in 2..(WINDOW / 4) as u16 {
            window.handle(Event::Acked(pkid));
            window.handle(Event::Removed);
        }
        let actions = window.handle(Event::Acked((WINDOW / 4) as u16));
        assert!(actions.contains(&Action::Read { after: WINDOW as u64, limit: WINDOW / 4 }), "{actions:?}");
    }

    #[test]
    fn acknowledgements_out_of_order_are_removed_one_removal_at_a_time() {
        let mut window = Window::default();
        window.start();
        publish(&mut window, 1..=3, WINDOW);
        assert_eq!(window.handle(Event::Acked(3)), vec![Action::Remove(vec![3])]);
        assert!(window.handle(Event::Acked(1)).is_empty(), "waits for the removal under way");
        assert!(window.handle(Event::Acked(2)).is_empty());
        assert_eq!(window.handle(Event::Removed), vec![Action::Remove(vec![1, 2])]);
        assert!(window.handle(Event::Acked(2)).is_empty(), "a packet id acknowledged twice removes nothing more");
    }

    #[test]
    fn a_heartbeat_takes_a_packet_id_but_is_never_removed() {
        let mut window = Window::default();
        window.start();
        window.handle(Event::Published { seqs: vec![7], asked: WINDOW });
        window.handle(Event::Heartbeat);
        window.handle(Event::Sent(10));
        window.handle(Event::Sent(11));
        assert!(window.handle(Event::Acked(11)).is_empty(), "the heartbeat's acknowledgement removes nothing");
        assert_eq!(window.handle(Event::Acked(10)), vec![Action::Remove(vec![7])]);
    }

    #[test]
    fn a_drained_outbox_is_read_again_only_once_something_is_queued() {
        let mut window = Window::default();
        window.start();
        assert!(window.handle(Event::Published { seqs: vec![1, 2], asked: WINDOW }).is_empty());
        assert!(window.drained());
        assert_eq!(window.handle(Event::Queued), vec![Action::Read { after: 2, limit: WINDOW - 2 }]);
    }

    #[test]
    fn a_refusal_ends_the_connection_naming_the_message() {
        let mut window = Window::default();
        window.start();
        publish(&mut window, 41..=42, WINDOW);
        let actions = window.handle(Event::Refused(2, "QuotaExceeded".into()));
        assert_eq!(actions, vec![Action::Fail("the broker refused message 42 (QuotaExceeded); it stays in the outbox".into())]);
    }

    #[test]
    fn a_new_connection_starts_again_from_the_oldest() {
        let mut window = Window::default();
        window.start();
        publish(&mut window, 1..=5, WINDOW);
        window.handle(Event::Acked(1));
        // The connection drops: its window goes with it, the outbox keeps 2..=5.
        assert_eq!(Window::default().start(), vec![Action::Read { after: 0, limit: WINDOW }]);
    }
}
