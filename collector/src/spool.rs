//! The on-disk spool: messages waiting for the agent's receipt.
//!
//! One file per message, named by its sequence number and class, written to
//! a temporary name, synced and renamed, so a crash leaves either the whole
//! message or none of it. A message leaves the spool only when the agent's
//! delivery acknowledgement names its id and sequence number; a broker's
//! PUBACK is not enough.
//!
//! The spool is bounded by a number of messages. When it is full, the oldest
//! telemetry is dropped to make room; events and alarms are never dropped, so
//! the bound can be exceeded by them (and a warning says so).
//!
//! The sender's sequence counter lives next to the messages, so numbers keep
//! growing across restarts and the agent sees no false duplicates.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use netbar_protocol::MessageId;

/// How precious a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    /// Telemetry recorded while the agent was away: may be dropped.
    Telemetry,
    /// Session events, login requests, command acknowledgements.
    Event,
    /// Sensor alarms and faults.
    Alarm,
}

impl Class {
    fn letter(self) -> char {
        match self {
            Class::Telemetry => 't',
            Class::Event => 'e',
            Class::Alarm => 'a',
        }
    }

    fn from_letter(letter: &str) -> Option<Class> {
        match letter {
            "t" => Some(Class::Telemetry),
            "e" => Some(Class::Event),
            "a" => Some(Class::Alarm),
            _ => None,
        }
    }
}

/// A spooled message as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spooled {
    pub(crate) seq: u64,
    pub(crate) topic: String,
    pub(crate) payload: String,
}

#[derive(Debug)]
struct Entry {
    class: Class,
    id: MessageId,
}

/// The spool.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_messages: usize,
    entries: BTreeMap<u64, Entry>,
    last_seq: u64,
    /// The number of the last command from the agent this station accepted.
    last_command: u64,
}

const SEQ_FILE: &str = "last-seq";
const COMMAND_FILE: &str = "last-command";

/// Where a station without a record of its numbers counts on from.
fn clock_micros() -> u64 {
    netbar_protocol::sequence_from_clock(jiff::Timestamp::now())
}

impl Spool {
    /// Opens (creating) the spool in `dir`, reading what a previous run left.
    /// Files that cannot be read are moved aside to `dir/damaged/` with a
    /// warning, never silently deleted.
    pub(crate) fn open(dir: &Path, max_messages: usize) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut spool = Spool { dir: dir.to_owned(), max_messages, entries: BTreeMap::new(), last_seq: 0, last_command: 0 };
        // A spool without its record (a new or wiped disk) counts on from
        // the clock: the agent refuses numbers it accepted before.
        spool.last_seq = match fs::read_to_string(dir.join(SEQ_FILE)) {
            Ok(text) => text.trim().parse().unwrap_or_else(|_| clock_micros()),
            Err(_) => clock_micros(),
        };
        if let Ok(text) = fs::read_to_string(dir.join(COMMAND_FILE)) {
            spool.last_command = text.trim().parse().unwrap_or(0);
        }
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name == SEQ_FILE || name == COMMAND_FILE || item.file_type()?.is_dir() {
                continue;
            }
            if name.ends_with(".tmp") {
                // A write that never completed: the message was never acknowledged to anyone.
                fs::remove_file(item.path())?;
                continue;
            }
            if !name.ends_with(".msg") {
                // Not a message: the station's other state kept beside the
                // spool (its session), not the spool's to judge.
                continue;
            }
            match spool.read_entry(&name) {
                Some((seq, entry)) => {
                    spool.last_seq = spool.last_seq.max(seq);
                    spool.entries.insert(seq, entry);
                }
                None => {
                    let damaged = dir.join("damaged");
                    fs::create_dir_all(&damaged)?;
                    tracing::warn!(file = %item.path().display(), "spool file unreadable; moved to {}", damaged.display());
                    fs::rename(item.path(), damaged.join(&name))?;
                }
            }
        }
        Ok(spool)
    }

    fn read_entry(&self, name: &str) -> Option<(u64, Entry)> {
        let stem = name.strip_suffix(".msg")?;
        let (seq, class) = stem.split_once('-')?;
        let seq: u64 = seq.parse().ok()?;
        let class = Class::from_letter(class)?;
        let spooled = self.read(seq, class).ok()?;
        let envelope = netbar_protocol::decode(spooled.payload.as_bytes()).ok()?;
        (envelope.seq == seq).then_some((seq, Entry { class, id: envelope.id }))
    }

    fn path(&self, seq: u64, class: Class) -> PathBuf {
        self.dir.join(format!("{seq:020}-{}.msg", class.letter()))
    }

    fn read(&self, seq: u64, class: Class) -> io::Result<Spooled> {
        let text = fs::read_to_string(self.path(seq, class))?;
        let (topic, payload) =
            text.split_once('\n').ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "spool file has no topic line"))?;
        Ok(Spooled { seq, topic: topic.to_owned(), payload: payload.to_owned() })
    }

    /// Allocates the next sequence number and makes it durable, so it is
    /// never handed out twice, even across a crash.
    pub(crate) fn next_seq(&mut self) -> io::Result<u64> {
        let seq = self.last_seq + 1;
        write_durably(&self.dir.join(SEQ_FILE), seq.to_string().as_bytes())?;
        self.last_seq = seq;
        Ok(seq)
    }

    /// Stores a message; returns the sequence numbers of telemetry dropped to
    /// make room.
    pub(crate) fn push(&mut self, seq: u64, id: MessageId, class: Class, topic: &str, payload: &str) -> io::Result<Vec<u64>> {
        let mut dropped = Vec::new();
        while self.entries.len() >= self.max_messages {
            let Some(oldest) = self.entries.iter().find(|(_, entry)| entry.class == Class::Telemetry).map(|(&seq, _)| seq) else {
                if class == Class::Telemetry {
                    // Full of events and alarms: this telemetry is the one to go.
                    dropped.push(seq);
                    return Ok(dropped);
                }
                tracing::warn!(
                    held = self.entries.len(),
                    max = self.max_messages,
                    "spool over its bound with events and alarms only; keeping them all"
                );
                break;
            };
            self.remove_entry(oldest)?;
            dropped.push(oldest);
        }
        write_durably(&self.path(seq, class), format!("{topic}\n{payload}").as_bytes())?;
        self.entries.insert(seq, Entry { class, id });
        Ok(dropped)
    }

    fn remove_entry(&mut self, seq: u64) -> io::Result<()> {
        if let Some(entry) = self.entries.remove(&seq) {
            match fs::remove_file(self.path(seq, entry.class)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// Forgets a message the agent acknowledged. Returns false when no such
    /// message is held (already acknowledged, or the id does not match).
    pub(crate) fn acknowledge(&mut self, seq: u64, id: MessageId) -> io::Result<bool> {
        match self.entries.get(&seq) {
            Some(entry) if entry.id == id => {
                self.remove_entry(seq)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The messages held, oldest first, from sequence number `from` on, at
    /// most `limit` of them.
    pub(crate) fn pending(&self, from: u64, limit: usize) -> Vec<Spooled> {
        self.entries
            .range(from..)
            .take(limit)
            .filter_map(|(&seq, entry)| match self.read(seq, entry.class) {
                Ok(spooled) => Some(spooled),
                Err(error) => {
                    tracing::error!(seq, %error, "cannot read spooled message");
                    None
                }
            })
            .collect()
    }

    /// Takes a held message out to be sent again under a new number (the
    /// agent had already accepted its number: this spool was reset).
    pub(crate) fn take(&mut self, seq: u64) -> io::Result<Option<(Class, Spooled)>> {
        let Some(class) = self.entries.get(&seq).map(|entry| entry.class) else { return Ok(None) };
        let spooled = self.read(seq, class)?;
        self.remove_entry(seq)?;
        Ok(Some((class, spooled)))
    }

    /// Numbers the next messages after `seq`.
    pub(crate) fn count_on_after(&mut self, seq: u64) -> io::Result<()> {
        if seq > self.last_seq {
            write_durably(&self.dir.join(SEQ_FILE), seq.to_string().as_bytes())?;
            self.last_seq = seq;
        }
        Ok(())
    }

    /// The number of the last command accepted from the agent.
    pub(crate) fn last_command(&self) -> u64 {
        self.last_command
    }

    /// Keeps, durably, that the agent's command `seq` was accepted.
    pub(crate) fn accept_command(&mut self, seq: u64) -> io::Result<()> {
        write_durably(&self.dir.join(COMMAND_FILE), seq.to_string().as_bytes())?;
        self.last_command = seq;
        Ok(())
    }

    /// How many messages are held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many messages held have a sequence number up to `seq`.
    pub(crate) fn count_up_to(&self, seq: u64) -> usize {
        self.entries.range(..=seq).count()
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    // The rename itself is durable once the directory is synced (not
    // possible, nor needed, on Windows).
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use netbar_protocol::messages::{LoginRequest, Telemetry};
    use netbar_protocol::{Envelope, Kind, Message, Sender, encode, examples};

    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!("netbar-spool-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn message(spool: &mut Spool, kind: Kind) -> (u64, MessageId, String) {
        let seq = spool.next_seq().unwrap();
        let id = MessageId::from_parts(Timestamp::UNIX_EPOCH, (seq as u32).to_le_bytes().repeat(3)[..10].try_into().unwrap());
        let body: Message = match kind {
            Kind::Telemetry => match examples::body(Kind::Telemetry) {
                Message::Telemetry(telemetry) => Telemetry { uptime_secs: seq, ..telemetry }.into(),
                other => other,
            },
            _ => LoginRequest { request_id: format!("r-{seq}"), ticket: "T".into() }.into(),
        };
        let envelope = Envelope::new(id, Timestamp::UNIX_EPOCH, "v1".parse().unwrap(), Sender::agent("st-1"), seq, body);
        (seq, id, encode(&envelope))
    }

    #[test]
    fn survives_reopen_in_order_and_forgets_acknowledged() {
        let dir = TempDir::new("reopen");
        let mut spool = Spool::open(&dir.0, 100).unwrap();
        let mut ids = Vec::new();
        for kind in [Kind::LoginRequest, Kind::Telemetry, Kind::LoginRequest] {
            let (seq, id, payload) = message(&mut spool, kind);
            let class = if kind == Kind::Telemetry { Class::Telemetry } else { Class::Event };
            assert!(spool.push(seq, id, class, "t/opic", &payload).unwrap().is_empty());
            ids.push((seq, id));
        }
        drop(spool);
        fs::write(dir.0.join("00000000000000000009-e.tmp"), "half a message").unwrap();
        fs::write(dir.0.join("00000000000000000010-e.msg"), "t/opic\nnot json").unwrap();
        // Regression: the station's session file beside the spool was taken
        // for a damaged message and moved aside, so a restarted collector
        // forgot its session.
        fs::write(dir.0.join("session.json"), "{}").unwrap();

        let mut spool = Spool::open(&dir.0, 100).unwrap();
        assert_eq!(spool.len(), 3);
        assert!(dir.0.join("damaged/00000000000000000010-e.msg").exists());
        assert!(dir.0.join("session.json").exists(), "not the spool's to move");
        assert!(!dir.0.join("00000000000000000009-e.tmp").exists());
        let first = ids[0].0;
        let pending = spool.pending(0, 10);
        assert_eq!(pending.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![first, first + 1, first + 2]);
        assert_eq!(pending[0].topic, "t/opic");
        assert_eq!(spool.next_seq().unwrap(), first + 3, "sequence numbers continue after a restart");

        assert!(!spool.acknowledge(ids[0].0, ids[1].1).unwrap(), "an id that does not match the seq is refused");
        assert!(spool.acknowledge(ids[0].0, ids[0].1).unwrap());
        assert!(!spool.acknowledge(ids[0].0, ids[0].1).unwrap());
        assert_eq!(spool.pending(0, 1)[0].seq, first + 1);
        drop(spool);
        let spool = Spool::open(&dir.0, 100).unwrap();
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.pending(first + 2, 10).len(), 1);
    }

    /// Regression: the agent's set of seen ids lived in memory, and a wiped
    /// spool counted from 1 again; numbers now only go up, and the last
    /// command carried out is kept on disk.
    #[test]
    fn numbers_go_on_from_the_clock_without_a_record_and_the_last_command_is_kept() {
        let dir = TempDir::new("numbers");
        let before = clock_micros();
        let mut spool = Spool::open(&dir.0, 10).unwrap();
        let first = spool.next_seq().unwrap();
        assert!(first > before, "a new spool counts from the clock: {first} after {before}");
        assert_eq!(spool.last_command(), 0);
        spool.accept_command(1_700_000_000_000_123).unwrap();
        spool.count_on_after(first + 10).unwrap();
        drop(spool);
        let mut spool = Spool::open(&dir.0, 10).unwrap();
        assert_eq!(spool.last_command(), 1_700_000_000_000_123, "kept across a restart");
        assert_eq!(spool.next_seq().unwrap(), first + 11, "numbered after what the agent said it had");
        // The disk wiped: numbers start again from the clock, above the old ones.
        drop(spool);
        fs::remove_dir_all(&dir.0).unwrap();
        let mut spool = Spool::open(&dir.0, 10).unwrap();
        assert!(spool.next_seq().unwrap() > first + 11, "the clock moved on by more than ten microseconds meanwhile");
        assert_eq!(spool.last_command(), 0);
    }

    #[test]
    fn full_spool_drops_oldest_telemetry_never_events() {
        let dir = TempDir::new("full");
        let mut spool = Spool::open(&dir.0, 16).unwrap();
        let push = |spool: &mut Spool, kind: Kind| {
            let (seq, id, payload) = message(spool, kind);
            let class = if kind == Kind::Telemetry { Class::Telemetry } else { Class::Alarm };
            spool.push(seq, id, class, "t", &payload).unwrap()
        };
        for _ in 0..8 {
            assert!(push(&mut spool, Kind::Telemetry).is_empty());
            assert!(push(&mut spool, Kind::LoginRequest).is_empty());
        }
        let first = spool.pending(0, 1)[0].seq;
        assert_eq!(push(&mut spool, Kind::LoginRequest), vec![first], "the oldest telemetry goes");
        assert_eq!(push(&mut spool, Kind::Telemetry), vec![first + 2]);
        for _ in 0..20 {
            push(&mut spool, Kind::LoginRequest);
        }
        // Every alarm is still there, beyond the bound; no telemetry is left.
        let pending = spool.pending(0, 1000);
        assert_eq!(pending.len(), 9 + 20);
        assert!(pending.iter().all(|s| !s.payload.contains("\"kind\":\"telemetry\"")));
        assert_eq!(push(&mut spool, Kind::Telemetry).len(), 1, "telemetry is refused when only alarms are left");
    }
}
