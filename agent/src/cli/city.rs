//! `netbar-agent regulator city` (hidden): a city's venues in one process,
//! each running the agent's real regulator feed — its own store (SQLite
//! database, outbox, sequence), the real message builders and the real
//! sender (TLS, QoS 1, removal on PUBACK, heartbeats) — at a compressed
//! time scale: check-ins at `--pace` a minute, summaries every
//! `--summary-period` seconds. The load the regulator's broker and ingest
//! are benchmarked against.
//!
//! Venue `n` (from `--first`) is `v{n:05}` with the GA 557-2005 code
//! `{region}10{n:06}`, and uses the `n`th of the `--broker`s given, round
//! the list: a cluster's nodes, or one broker's several listening
//! addresses (one machine has about 28,000 ephemeral ports per destination
//! address). Every fourth check-in is a refused child. It prints every
//! second how many venues are connected, and what their outboxes hold
//! (counted every five seconds). `--hold-until` keeps every uplink down
//! until a file exists: the venues queue their feed as in an outage, then
//! all come back at once.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Disclosure, MqttVersion, TlsFiles, UplinkSettings};
use crate::feed::sender::{LinkView, Uplink};
use crate::feed::{Feed, Period, Standing, Tally};
use crate::journal::LogEntry;
use crate::store::Store;
use crate::store::thread::StoreHandle;

#[derive(Debug, clap::Args)]
pub(crate) struct CityArgs {
    /// How many venues.
    #[arg(long)]
    venues: u32,
    /// The number of the first venue (several generators side by side).
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// The regulator's broker: mqtts://host:port; given again, the venues
    /// are spread over them.
    #[arg(long, value_name = "URL", required = true)]
    broker: Vec<String>,
    /// Every venue's broker login (password from NETBAR_VENUE_PASSWORD).
    #[arg(long)]
    username: Option<String>,
    /// The venues' uplinks start only once this file exists.
    #[arg(long, value_name = "FILE")]
    hold_until: Option<PathBuf>,
    /// The CA that signed the broker's certificate.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// The district all venues publish under (a GB/T 2260 code).
    #[arg(long, default_value = "310104")]
    region: netbar_protocol::RegionCode,
    /// Where the venues' databases go (one SQLite file each).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Check-ins a minute at each venue.
    #[arg(long, default_value_t = 6.0)]
    pace: f64,
    /// Seconds between a venue's summaries.
    #[arg(long, default_value_t = 60)]
    summary_period: u64,
    /// Seconds between a venue's heartbeats.
    #[arg(long, default_value_t = 30)]
    heartbeat_period: u64,
    /// Stop the check-ins after this many each, and the summaries after
    /// the one that closes their period (the senders and their heartbeats
    /// go on until the process is stopped).
    #[arg(long)]
    check_ins: Option<u64>,
}

pub(crate) fn run(args: CityArgs) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(city(args))
}

async fn city(args: CityArgs) -> anyhow::Result<std::process::ExitCode> {
    let brokers = args
        .broker
        .iter()
        .map(|url| crate::config::broker_address(url).map(|(_, host, port)| (url, host, port)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
    let password = std::env::var("NETBAR_VENUE_PASSWORD").ok();
    std::fs::create_dir_all(&args.dir)?;
    let (release, held) = watch::channel(args.hold_until.is_none());
    let clock = Clock::default();
    let mut links = Vec::new();
    let mut stores = Vec::new();
    for n in args.first..args.first + args.venues {
        let (url, host, port) = &brokers[n as usize % brokers.len()];
        let venue: netbar_protocol::VenueId = format!("v{n:05}").parse()?;
        let ga_code: netbar_protocol::GaCode = format!("{}10{n:06}", args.region).parse()?;
        let store = StoreHandle::start(Store::open(&args.dir.join(format!("{venue}.sqlite")), 180)?, 100_000)?;
        let settings = UplinkSettings {
            url: (*url).clone(),
            host: host.clone(),
            port: *port,
            tls: Some(TlsFiles { ca_file: args.ca.clone(), client_cert: None, client_key: None }),
            protocol: MqttVersion::V311,
            username: args.username.clone(),
            password: password.clone(),
            client_id: format!("netbar-{venue}"),
            prefix: netbar_protocol::Prefix::new("netbar/feed").map_err(|e| anyhow::anyhow!("{e}"))?,
            region: args.region.clone(),
            venue: venue.clone(),
            summary_period: Duration::from_secs(args.summary_period),
            heartbeat_period: Duration::from_secs(args.heartbeat_period),
            records: Disclosure::Pseudonymised,
            outbox_max: 100_000,
            max_backoff: Duration::from_secs(10),
            ga_code: Some(ga_code.clone()),
        };
        let (view, link) = watch::channel(LinkView::default());
        let uplink = Uplink { settings, store: store.clone(), view, clock };
        let mut held = held.clone();
        tokio::spawn(async move {
            if held.wait_for(|released| *released).await.is_ok() {
                uplink.run().await;
            }
        });
        let feed = Feed {
            venue,
            clock,
            disclosure: Disclosure::Pseudonymised,
            pseudonym_key: rand::random(),
            outbox_max: 100_000,
            ga_code: Some(ga_code),
        };
        tokio::spawn(venue_life(feed, store.clone(), n, args.pace, Duration::from_secs(args.summary_period), args.check_ins));
        links.push(link);
        stores.push(store);
    }
    eprintln!("{} venues running", args.venues);
    if let Some(file) = &args.hold_until {
        tokio::spawn(hold(file.clone(), release));
    }
    // Connections every second, the outboxes (a question to each store)
    // every fifth.
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let (mut ticks, mut pending) = (0_u64, 0);
    loop {
        tokio::select! {
            _ = report.tick() => {
                let connected = links.iter().filter(|link| link.borrow().connected).count();
                if ticks % 5 == 0 {
                    pending = 0;
                    for store in stores.iter() {
                        pending += store.facts().await.map(|facts| facts.pending).unwrap_or(0);
                    }
                }
                ticks += 1;
                eprintln!("connected {connected}/{}; waiting in the outboxes: {pending}", args.venues);
            }
            () = netbar_host::shutdown() => return Ok(std::process::ExitCode::SUCCESS),
        }
    }
}

/// Lets the uplinks go once `file` exists.
async fn hold(file: PathBuf, release: watch::Sender<bool>) {
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    while !file.exists() {
        poll.tick().await;
    }
    eprintln!("the uplinks start");
    release.send_replace(true);
    // The venues' copies of the receiver outlive this task.
    release.closed().await;
}

/// One venue's desk and summaries: check-ins at `pace` a minute (started
/// at a random point of the first interval, so venues do not move in step)
/// and a summary every `summary_period`.
async fn venue_life(feed: Feed, store: StoreHandle, n: u32, pace: f64, summary_period: Duration, limit: Option<u64>) {
    let every = Duration::from_secs_f64(60.0 / pace.max(0.001));
    let start = tokio::time::Instant::now() + every.mul_f64(rand::random::<f64>());
    let mut desk = tokio::time::interval_at(start, every);
    let mut summaries = tokio::time::interval_at(tokio::time::Instant::now() + summary_period, summary_period);
    let mut period = Period { start: feed.clock.now(), tally: Tally::default() };
    let mut count = 0_u64;
    let desk_open = |count: u64| limit.is_none_or(|limit| count < limit);
    let mut summarising = true;
    loop {
        tokio::select! {
            _ = desk.tick(), if desk_open(count) => {
                let now = feed.clock.now();
                let entry = check_in(n, count);
                period.tally.observe(&entry);
                let outbound = feed.outbound(&entry, now);
                if let Err(error) = store.queue(now, entry, outbound).await.committed().await {
                    eprintln!("venue {}: a check-in was not recorded: {error}", feed.venue);
                }
                count += 1;
            }
            _ = summaries.tick(), if summarising => {
                let now = feed.clock.now();
                let pending = store.facts().await.ok().map(|facts| facts.pending);
                let standing = Standing {
                    stations_enrolled: 0,
                    sensors_enrolled: 0,
                    stations_online: 0,
                    sessions_open: 0,
                    customers_present: 0,
                    open: Vec::new(),
                    silent: 0,
                    pending,
                    store_error: None,
                };
                let summary = feed.summarise(&period, standing, now);
                if let Ok(Some(_)) = store.enqueue(now, feed.summary(summary), Some(now)).await {
                    period = Period { start: now, tally: Tally::default() };
                }
                summarising = desk_open(count);
            }
            else => return,
        }
    }
}

/// The `count`th check-in of venue `n`; every fourth a refused child.
fn check_in(n: u32, count: u64) -> LogEntry {
    let ticket = (count % 4 != 3).then(|| format!("T{n:05}{count:07}"));
    super::synthetic::check_in(format!("C{n:05}{count:07}"), ticket)
}
