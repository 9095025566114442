//! `netbar-agent regulator tail`: the regulator's side of the feed, with
//! nothing but this command.
//!
//! It subscribes to `{prefix}/{region}/+/+` on the regulator's broker and
//! prints summaries, incidents and records as lines a person reads; per
//! venue it follows the sequence numbers and reports every gap (a number
//! skipped), every duplicate (a number seen twice: receivers deduplicate by
//! message id, so this is harmless but shows resends) and every venue gone
//! quiet (nothing, not even a heartbeat, for `--quiet-after` seconds).
//!
//! It also follows each venue's registration log through the heads its
//! messages carry (summaries and heartbeats the log's head, records their
//! own entry and the one before): a head that goes backwards, or a position
//! that comes back with another hash, means the log at the venue was
//! truncated or re-chained. `--heads FILE` keeps every head received, one
//! JSON object a line, for `netbar-agent records verify --heads` at an
//! inspection.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use netbar_protocol::messages::{IncidentEvent, IncidentTransition, Person, RegistrationRecord, Summary};
use netbar_protocol::{Envelope, Message, Prefix, Topic};

/// `netbar-agent regulator ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Follow a district's feed: print it, report gaps, duplicates and
    /// venues gone quiet.
    Tail(TailArgs),
    /// Write a district's or a city's feed into PostgreSQL: every message
    /// once, gaps as rows, log heads, and views for a dashboard. A message
    /// is acknowledged to the broker only once its transaction committed.
    Ingest(IngestArgs),
    /// A city's venues in one process, each with the agent's real store
    /// and sender: the load for the regulator's side (benchmarks).
    #[command(hide = true)]
    City(super::city::CityArgs),
}

/// Where the feed is read: the broker, its TLS and login, and which part.
#[derive(Debug, clap::Args)]
pub(crate) struct FeedArgs {
    /// The regulator's broker: mqtts://host:port, or mqtt://host:port in clear.
    #[arg(long, value_name = "URL")]
    broker: String,
    /// The CA that signed the broker's certificate (required with mqtts://).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// A client certificate, when the broker asks for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// A user name at the broker; the password is read from
    /// $NETBAR_REGULATOR_PASSWORD.
    #[arg(long)]
    username: Option<String>,
    /// Only this district (default: every region under the prefix).
    #[arg(long, value_name = "CODE")]
    region: Option<netbar_protocol::RegionCode>,
    /// The feed's topic prefix.
    #[arg(long, default_value = "netbar/feed")]
    prefix: String,
}

impl FeedArgs {
    /// The broker as the subscriber needs it.
    fn resolve(&self) -> anyhow::Result<crate::ingest::Broker> {
        use anyhow::Context;
        let prefix = Prefix::new(&self.prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
        let (tls, host, port) = crate::config::broker_address(&self.broker).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
        let tls = match tls {
            true => {
                let ca = self.ca.clone().context("--ca is required with mqtts:// (the CA that signed the broker's certificate)")?;
                Some(crate::config::TlsFiles { ca_file: ca, client_cert: self.cert.clone(), client_key: self.key.clone() })
            }
            false => {
                eprintln!("warning: {} is not encrypted", self.broker);
                None
            }
        };
        let region = self.region.as_ref().map_or("+".to_owned(), ToString::to_string);
        Ok(crate::ingest::Broker {
            url: self.broker.clone(),
            host,
            port,
            tls,
            credentials: self.username.clone().map(|user| (user, std::env::var("NETBAR_REGULATOR_PASSWORD").unwrap_or_default())),
            filter: format!("{}/{region}/+/+", prefix.as_str()),
            prefix,
        })
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    feed: FeedArgs,
    /// Keep a session on the broker under this client id, so nothing
    /// published while the tail is away (a broker restart) is missed.
    #[arg(long, value_name = "NAME")]
    session: Option<String>,
    /// Seconds without any message from a venue before it is reported quiet.
    #[arg(long, default_value_t = 180)]
    quiet_after: u64,
    /// Print heartbeats too.
    #[arg(long)]
    heartbeats: bool,
    /// Append every log head received to this file (JSON lines: region,
    /// venue, index, hash), for `records verify --heads` at an inspection.
    #[arg(long, value_name = "FILE")]
    heads: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    feed: FeedArgs,
    /// The PostgreSQL database: "host=... port=... user=... dbname=..." or
    /// postgresql://user@host:port/dbname; the password may come from
    /// $PGPASSWORD. The schema `netbar` is created and migrated there.
    #[arg(long, value_name = "CONNECTION")]
    database: String,
    /// The persistent session's client id at the broker: what the broker
    /// keeps for the ingest while it is away.
    #[arg(long, value_name = "NAME", default_value = "netbar-ingest")]
    session: String,
    /// The MQTT version: 3.1.1 (every broker, NATS included) or 5.
    #[arg(long, value_name = "VERSION", default_value = "3.1.1", value_parser = ["3.1.1", "5"])]
    protocol: String,
}

/// What the sequence of one venue showed.
#[derive(Debug, PartialEq, Eq)]
enum Finding {
    /// Numbers skipped, inclusive.
    Gap(u64, u64),
    /// A number seen before.
    Duplicate(u64),
    /// A number inside an earlier gap arrived after all.
    Late(u64),
}

/// The sequence numbers of one venue: the next one expected and those
/// received beyond it.
#[derive(Debug, Default)]
struct Sequence {
    next: Option<u64>,
    ahead: BTreeSet<u64>,
}

impl Sequence {
    fn receive(&mut self, seq: u64) -> Option<Finding> {
        if seq == 0 {
            return None;
        }
        let Some(next) = self.next else {
            // The tail joins a feed under way: its first number is the start.
            self.next = Some(seq + 1);
            return None;
        };
        if seq < next || self.ahead.contains(&seq) {
            return Some(Finding::Duplicate(seq));
        }
        let highest = self.ahead.last().copied().unwrap_or(next - 1);
        if seq > highest {
            self.ahead.insert(seq);
            let from = highest + 1;
            return (from < seq).then_some(Finding::Gap(from, seq - 1)).or_else(|| self.advance(next));
        }
        // Inside a gap reported earlier.
        self.ahead.insert(seq);
        self.advance(next);
        Some(Finding::Late(seq))
    }

    /// Moves `next` over the numbers now contiguous.
    fn advance(&mut self, mut next: u64) -> Option<Finding> {
        while self.ahead.remove(&next) {
            next += 1;
        }
        self.next = Some(next);
        None
    }
}

/// Most positions of one venue's log remembered with their hash (the
/// latest): a district's tail holds hundreds of venues. A rewrite further
/// back is still a head going backwards, and `records verify --heads` with
/// the heads file checks every position ever received.
const HEADS_KEPT: usize = 1_000;

/// A venue's registration log as its messages show it.
#[derive(Debug, Default)]
struct Chain {
    /// Positions seen, with their hash.
    hashes: BTreeMap<u64, String>,
    /// The highest sequence number that carried a head, and the highest
    /// head carried up to it.
    last: Option<(u64, u64)>,
}

impl Chain {
    /// A head (position, hash) carried by the message numbered `seq` (0: a
    /// heartbeat, sent live); what it shows that is wrong.
    fn observe(&mut self, seq: u64, index: u64, hash: &str) -> Vec<String> {
        let mut findings = Vec::new();
        if index > 0 {
            match self.hashes.get(&index) {
                Some(known) if known != hash => {
                    findings.push(format!("REWRITTEN: log #{index} came back with hash {}, it had {}", short(hash), short(known)));
                }
                Some(_) => {}
                None => {
                    self.hashes.insert(index, hash.to_owned());
                    if self.hashes.len() > HEADS_KEPT {
                        self.hashes.pop_first();
                    }
                }
            }
        }
        // Heads grow with the feed's sequence: each message's head was taken
        // when it was queued, after the ones numbered before it, and a
        // heartbeat's is taken when it is sent, after everything received.
        let highest = self.last.map_or(0, |(_, head)| head);
        let in_order = seq == 0 || self.last.is_none_or(|(last, _)| seq >= last);
        if in_order && index < highest {
            findings.push(format!(
                "HEAD BACKWARDS: log head #{index} after #{highest}: entries the regulator saw are gone from the venue's log"
            ));
        }
        if seq > 0 && in_order {
            self.last = Some((seq, highest.max(index)));
        }
        findings
    }
}

/// Everything the tail knows of one venue.
#[derive(Debug)]
struct VenueFeed {
    sequence: Sequence,
    chain: Chain,
    heard: Instant,
    quiet: bool,
}

/// Per venue: sequences and silence.
#[derive(Debug, Default)]
struct Tracker {
    venues: BTreeMap<String, VenueFeed>,
}

impl Tracker {
    /// A message from `venue` (as `region/venue`); the lines to print about its sequence.
    fn receive(&mut self, venue: &str, seq: u64, now: Instant) -> Vec<String> {
        let feed = self.venue(venue, now);
        let mut lines = Vec::new();
        if feed.quiet {
            lines.push(format!("{venue} HEARD AGAIN after {} s", now.duration_since(feed.heard).as_secs()));
            feed.quiet = false;
        }
        feed.heard = now;
        match feed.sequence.receive(seq) {
            Some(Finding::Gap(from, to)) if from == to => lines.push(format!("{venue} GAP: #{from} missing")),
            Some(Finding::Gap(from, to)) => lines.push(format!("{venue} GAP: #{from}..#{to} missing ({} messages)", to - from + 1)),
            Some(Finding::Duplicate(seq)) => lines.push(format!("{venue} DUPLICATE: #{seq} received again")),
            Some(Finding::Late(seq)) => lines.push(format!("{venue} LATE: #{seq} arrived after a gap was reported")),
            None => {}
        }
        lines
    }

    fn venue(&mut self, venue: &str, now: Instant) -> &mut VenueFeed {
        self.venues.entry(venue.to_owned()).or_insert_with(|| VenueFeed {
            sequence: Sequence::default(),
            chain: Chain::default(),
            heard: now,
            quiet: false,
        })
    }

    /// The log heads a message of `venue` carries; the lines to print about them.
    fn heads(&mut self, venue: &str, seq: u64, heads: &[(u64, &str)], now: Instant) -> Vec<String> {
        let feed = self.venue(venue, now);
        heads.iter().flat_map(|(index, hash)| feed.chain.observe(seq, *index, hash)).map(|finding| format!("{venue} {finding}")).collect()
    }

    /// Venues silent for `limit` and not yet reported.
    fn quiet(&mut self, limit: Duration, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        for (venue, feed) in &mut self.venues {
            let silent = now.duration_since(feed.heard);
            if !feed.quiet && silent >= limit {
                feed.quiet = true;
                lines.push(format!("{venue} QUIET: nothing for {} s, not even a heartbeat", silent.as_secs()));
            }
        }
        lines
    }
}

fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn summary_line(s: &Summary) -> String {
    let refused: u32 = s.refusals.iter().map(|r| r.count).sum();
    let mut line = format!(
        "summary {}..{}: compliance {}; stations {}/{} online, {} in use; customers present {}; check-ins {} admitted, {refused} refused",
        s.from,
        s.to,
        name(&s.compliance).to_uppercase(),
        s.stations_online,
        s.stations_enrolled,
        s.sessions_open,
        s.customers_present,
        s.registrations,
    );
    if !s.refusals.is_empty() {
        let reasons: Vec<String> = s.refusals.iter().map(|r| format!("{} {}", r.reason, r.count)).collect();
        let _ = write!(line, " ({})", reasons.join(", "));
    }
    let open = &s.incidents_open_by_severity;
    let _ = write!(
        line,
        "; unregistered use {}; incidents opened {}, acknowledged {}, resolved {}, open {} (critical {}, warning {}, notice {}); sensors {}/{} online; log head #{} {}",
        s.unregistered_use,
        s.incidents_opened,
        s.incidents_acknowledged,
        s.incidents_resolved,
        s.incidents_open,
        open.critical,
        open.warning,
        open.notice,
        s.sensors_enrolled - s.sensors_silent.min(s.sensors_enrolled),
        s.sensors_enrolled,
        s.log_head.index,
        short(&s.log_head.hash),
    );
    line
}

fn incident_line(event: &IncidentEvent) -> String {
    let id = &event.incident_id;
    match &event.transition {
        IncidentTransition::Opened { incident_kind, severity, station, sensor, detail } => {
            let place = match (station, sensor) {
                (Some(station), _) => format!(" at {station}"),
                (None, Some(sensor)) => format!(" from {sensor}"),
                (None, None) => String::new(),
            };
            format!("incident {id} OPENED {}: {} {}{place}: {detail}", event.at, name(severity).to_uppercase(), name(incident_kind))
        }
        IncidentTransition::Acknowledged { by } => format!("incident {id} acknowledged {} by {by}", event.at),
        IncidentTransition::Resolved { by, note } => format!("incident {id} resolved {} by {by}: {note}", event.at),
    }
}

fn record_line(record: &RegistrationRecord) -> String {
    let outcome = if record.allowed { "admitted".to_owned() } else { format!("refused ({})", record.reasons.join(", ")) };
    let person = match &record.person {
        Person::None => "no personal data".to_owned(),
        Person::Pseudonymised { person_hash, birth_year } => format!("person {} born {birth_year}", short(person_hash)),
        Person::Full { document_kind, number, name, birth_date } => format!("{name}, {document_kind} {number}, born {birth_date}"),
    };
    format!("record log #{} {}: {outcome}, {person}", record.index, record.at)
}

/// The line for one message, or None for a heartbeat not asked for.
fn describe(envelope: &Envelope, heartbeats: bool) -> Option<String> {
    Some(match &envelope.message {
        Message::Summary(summary) => summary_line(summary),
        Message::Incident(event) => incident_line(event),
        Message::Record(record) => record_line(record),
        Message::Heartbeat(beat) if heartbeats => {
            let pending = beat.outbox_pending.map_or_else(|| "unknown".to_owned(), |pending| pending.to_string());
            let head = beat.log_head.as_ref().map_or_else(|| "unknown".to_owned(), |head| format!("#{} {}", head.index, short(&head.hash)));
            format!("heartbeat {}: outbox {pending} waiting, log head {head}", envelope.ts)
        }
        Message::Heartbeat(_) => return None,
        other => format!("unexpected {} on the feed", other.kind()),
    })
}

pub(crate) fn run(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Tail(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(tail(args))
        }
        Command::City(args) => super::city::run(args),
        Command::Ingest(args) => {
            let broker = args.feed.resolve()?;
            let protocol = if args.protocol == "5" { crate::config::MqttVersion::V5 } else { crate::config::MqttVersion::V311 };
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(crate::ingest::run(crate::ingest::Settings {
                broker,
                database: args.database,
                session: args.session,
                protocol,
            }))
        }
    }
}

async fn tail(args: TailArgs) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;

    use anyhow::Context;
    let broker = args.feed.resolve()?;
    let (prefix, filter) = (broker.prefix.clone(), broker.filter.clone());
    let client_id = args.session.clone().unwrap_or_else(|| format!("netbar-tail-{:08x}", rand::random::<u32>()));
    let options = broker.options(client_id, args.session.is_none())?;
    let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 16);
    let quiet_after = Duration::from_secs(args.quiet_after);
    let mut tracker = Tracker::default();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut connected_once = false;
    let mut heads = match &args.heads {
        None => None,
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the heads file {}", path.display()))?,
        ),
    };
    loop {
        tokio::select! {
            event = event_loop.poll() => match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                    eprintln!("connected to {}; following {filter}", broker.url);
                    if !connected_once || !ack.session_present {
                        client.subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce).await?;
                    }
                    connected_once = true;
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    let received = on_message(&prefix, &publish.topic, &publish.payload, &mut tracker, args.heartbeats);
                    for line in received.lines {
                        println!("{line}");
                    }
                    if let Some(file) = heads.as_mut() {
                        for head in received.heads {
                            writeln!(file, "{head}").and_then(|()| file.flush()).context("cannot write the heads file")?;
                        }
                    }
                }
                Ok(_) => {}
                Err(error) if !connected_once => {
                    eprintln!("error: cannot follow the feed at {}: {error}", broker.url);
                    return Ok(std::process::ExitCode::FAILURE);
                }
                Err(error) => {
                    eprintln!("warning: lost {}: {error}; reconnecting", broker.url);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = check.tick() => {
                for line in tracker.quiet(quiet_after, Instant::now()) {
                    println!("{line}");
                }
            }
        }
    }
}

/// The log heads (position, hash) a message carries.
fn heads_of(message: &Message) -> Vec<(u64, &str)> {
    match message {
        Message::Summary(summary) => vec![(summary.log_head.index, summary.log_head.hash.as_str())],
        Message::Heartbeat(beat) => beat.log_head.iter().map(|head| (head.index, head.hash.as_str())).collect(),
        Message::Record(record) => vec![(record.index.saturating_sub(1), record.prev_hash.as_str()), (record.index, record.hash.as_str())],
        _ => Vec::new(),
    }
}

/// What one message on the feed gives: the lines to print, and the heads
/// to keep (JSON lines for `records verify --heads`).
#[derive(Debug, Default)]
struct Received {
    lines: Vec<String>,
    heads: Vec<serde_json::Value>,
}

/// What one message on the feed prints and keeps.
fn on_message(prefix: &Prefix, topic: &str, payload: &[u8], tracker: &mut Tracker, heartbeats: bool) -> Received {
    let (region, venue) = match Topic::parse_regulator(prefix, topic) {
        Ok(Topic::Regulator { region, venue, .. }) => (region, venue),
        Ok(_) => return Received::default(),
        Err(error) => return Received { lines: vec![format!("{topic} UNREADABLE topic: {error}")], heads: Vec::new() },
    };
    let label = format!("{region}/{venue}");
    let envelope = match netbar_protocol::decode(payload) {
        Ok(envelope) => envelope,
        Err(error) => return Received { lines: vec![format!("{label} UNREADABLE message: {error}")], heads: Vec::new() },
    };
    if envelope.venue != venue {
        let line = format!("{label} MISMATCH: a message of venue {} on this venue's topic", envelope.venue);
        return Received { lines: vec![line], heads: Vec::new() };
    }
    let now = Instant::now();
    let mut lines = tracker.receive(&label, envelope.seq, now);
    let heads = heads_of(&envelope.message);
    lines.extend(tracker.heads(&label, envelope.seq, &heads, now));
    let store_error = match &envelope.message {
        Message::Summary(summary) => summary.store_error.as_deref(),
        Message::Heartbeat(beat) => beat.store_error.as_deref(),
        _ => None,
    };
    if let Some(error) = store_error {
        lines.push(format!("{label} STORE FAILING: {error}"));
    }
    if let Some(text) = describe(&envelope, heartbeats) {
        let seq = if envelope.seq > 0 { format!(" #{}", envelope.seq) } else { String::new() };
        lines.insert(0, format!("{label}{seq} {text}"));
    }
    let heads = heads
        .iter()
        .filter(|(index, _)| *index > 0)
        .map(|(index, hash)| serde_json::json!({ "region": region.as_str(), "venue": venue.as_str(), "index": index, "hash": hash }))
        .collect();
    Received { lines, heads }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_show_gaps_duplicates_and_late_arrivals() {
        let mut sequence = Sequence::default();
        assert_eq!(sequence.receive(7), None, "the first number seen is the start");
        assert_eq!(sequence.receive(8), None);
        assert_eq!(sequence.receive(0), None, "heartbeats are outside the sequence");
        assert_eq!(sequence.receive(8), Some(Finding::Duplicate(8)));
        assert_eq!(sequence.receive(11), Some(Finding::Gap(9, 10)));
        assert_eq!(sequence.receive(12), None);
        assert_eq!(sequence.receive(11), Some(Finding::Duplicate(11)));
        assert_eq!(sequence.receive(14), Some(Finding::Gap(13, 13)));
        assert_eq!(sequence.receive(10), Some(Finding::Late(10)));
        assert_eq!(sequence.next, Some(9));
        assert_eq!(sequence.receive(9), Some(Finding::Late(9)));
        assert_eq!(sequence.next, Some(13), "9..12 now contiguous");
        assert_eq!(sequence.receive(13), Some(Finding::Late(13)));
        assert_eq!(sequence.next, Some(15));
        assert!(sequence.ahead.is_empty());
        assert_eq!(sequence.receive(15), None);
    }

    #[test]
    fn a_quiet_venue_is_reported_once_and_again_when_heard() {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        assert!(tracker.receive("310104/venue-1", 1, start).is_empty());
        assert!(tracker.quiet(Duration::from_secs(60), start + Duration::from_secs(59)).is_empty());
        let quiet = tracker.quiet(Duration::from_secs(60), start + Duration::from_secs(61));
        assert_eq!(quiet, ["310104/venue-1 QUIET: nothing for 61 s, not even a heartbeat"]);
        assert!(tracker.quiet(Duration::from_secs(60), start + Duration::from_secs(90)).is_empty(), "reported once");
        let back = tracker.receive("310104/venue-1", 3, start + Duration::from_secs(100));
        assert_eq!(back, ["310104/venue-1 HEARD AGAIN after 100 s", "310104/venue-1 GAP: #2 missing"]);
    }

    #[test]
    fn messages_print_readably_and_bad_ones_are_named() {
        let prefix = Prefix::new("netbar/feed").unwrap();
        let mut tracker = Tracker::default();
        let example = netbar_protocol::examples::envelope;
        let mut summary = example(netbar_protocol::Kind::Summary);
        summary.seq = 5;
        let topic = format!("netbar/feed/310104/{}/summary", summary.venue);
        let lines = on_message(&prefix, &topic, netbar_protocol::encode(&summary).as_bytes(), &mut tracker, false).lines;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(&format!("310104/{} #5 summary ", summary.venue)), "{}", lines[0]);
        assert!(lines[0].contains("compliance "), "{}", lines[0]);
        let incident = example(netbar_protocol::Kind::Incident);
        let text =
            on_message(&prefix, &topic.replace("summary", "incident"), netbar_protocol::encode(&incident).as_bytes(), &mut tracker, false)
                .lines;
        assert!(text.iter().any(|line| line.contains("incident ")), "{text:?}");
        let garbage = on_message(&prefix, &topic, b"{not json", &mut tracker, false).lines;
        assert!(garbage[0].contains("UNREADABLE message"), "{garbage:?}");
        let stranger = on_message(
            &prefix,
            "netbar/feed/310104/other-venue/summary",
            netbar_protocol::encode(&summary).as_bytes(),
            &mut tracker,
            false,
        )
        .lines;
        assert!(stranger[0].contains("MISMATCH"), "{stranger:?}");
    }

    #[test]
    fn a_log_truncated_or_rechained_at_the_venue_shows_in_its_heads() {
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let mut chain = Chain::default();
        assert!(chain.observe(1, 10, &a).is_empty());
        assert!(chain.observe(2, 12, &b).is_empty());
        // A heartbeat sent before queued messages drained carries a later head: fine.
        assert!(chain.observe(0, 20, &c).is_empty());
        assert!(chain.observe(3, 15, &c).is_empty(), "queued after #2, before the heartbeat: its head is between");
        // A resent duplicate with an old head is not news.
        assert!(chain.observe(2, 12, &b).is_empty());
        // The same position with another hash: rewritten.
        let rewritten = chain.observe(4, 12, &c);
        assert_eq!(rewritten.len(), 2, "{rewritten:?}");
        assert!(
            rewritten[0].starts_with("REWRITTEN: log #12 came back with hash cccccccccccccccc, it had bbbbbbbbbbbbbbbb"),
            "{rewritten:?}"
        );
        assert!(rewritten[1].starts_with("HEAD BACKWARDS: log head #12 after #15"), "{rewritten:?}");
        // A heartbeat behind what the feed already showed.
        let behind = chain.observe(0, 11, &a);
        assert!(behind.iter().any(|line| line.starts_with("HEAD BACKWARDS: log head #11 after #15")), "{behind:?}");
    }

    #[test]
    fn heads_are_kept_for_an_inspection_and_a_failing_store_is_named() {
        let prefix = Prefix::new("netbar/feed").unwrap();
        let mut tracker = Tracker::default();
        let mut record = netbar_protocol::examples::envelope(netbar_protocol::Kind::Record);
        record.seq = 3;
        let topic = format!("netbar/feed/310104/{}/record", record.venue);
        let received = on_message(&prefix, &topic, netbar_protocol::encode(&record).as_bytes(), &mut tracker, false);
        let Message::Record(body) = &record.message else { unreachable!() };
        assert_eq!(received.heads.len(), 2, "the entry and the one before it");
        assert_eq!(received.heads[1]["index"], body.index);
        assert_eq!(received.heads[1]["hash"], body.hash.as_str());
        assert_eq!(received.heads[0]["hash"], body.prev_hash.as_str());
        assert_eq!(received.heads[0]["venue"], record.venue.as_str());
        let mut beat = netbar_protocol::examples::envelope(netbar_protocol::Kind::Heartbeat);
        beat.message = netbar_protocol::messages::Heartbeat {
            outbox_pending: None,
            log_head: None,
            store_error: Some("the disk holding the registration log is full".into()),
            ga_code: None,
        }
        .into();
        let received =
            on_message(&prefix, &topic.replace("record", "heartbeat"), netbar_protocol::encode(&beat).as_bytes(), &mut tracker, true);
        assert!(
            received.lines.iter().any(|line| line.ends_with("STORE FAILING: the disk holding the registration log is full")),
            "{:?}",
            received.lines
        );
        assert!(received.lines[0].contains("outbox unknown waiting, log head unknown"), "{:?}", received.lines);
        assert!(received.heads.is_empty());
    }
}
