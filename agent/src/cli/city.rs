//! `netbar-agent regulator city` (hidden): a city's venues in one process,
//! each running the agent's real regulator feed — its own store (SQLite
//! database, outbox, sequence), the real message builders and the real
//! sender (TLS, QoS 1, removal on PUBACK, heartbeats) — at a compressed
//! time scale: check-ins at `--pace` a minute, summaries every
//! `--summary-period` seconds. The load the regulator's broker and ingest
//! are benchmarked against.
//!
//! Venue `n` is `v{n:05}` with the GA 557-2005 code `{region}10{n:06}`.
//! Every fourth check-in is a refused child. It prints every second how
//! many venues are connected, and what their outboxes hold (counted every
//! five seconds).

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
    /// The regulator's broker: mqtts://host:port.
    #[arg(long, value_name = "URL")]
    broker: String,
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
    /// Stop the check-ins after this many each (the senders go on until
    /// the process is stopped).
    #[arg(long)]
    check_ins: Option<u64>,
}

pub(crate) fn run(args: CityArgs) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(city(args))
}

async fn city(args: CityArgs) -> anyhow::Result<std::process::ExitCode> {
    let (_, host, port) = crate::config::broker_address(&args.broker).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
    std::fs::create_dir_all(&args.dir)?;
    let clock = Clock::default();
    let mut links = Vec::new();
    let mut stores = Vec::new();
    for n in 0..args.venues {
        let venue: netbar_protocol::VenueId = format!("v{n:05}").parse()?;
        let ga_code: netbar_protocol::GaCode = format!("{}10{n:06}", args.region).parse()?;
        let store = StoreHandle::start(Store::open(&args.dir.join(format!("{venue}.sqlite")), 180)?, 100_000)?;
        let settings = UplinkSettings {
            url: args.broker.clone(),
            host: host.clone(),
            port,
            tls: Some(TlsFiles { ca_file: args.ca.clone(), client_cert: None, client_key: None }),
            protocol: MqttVersion::V311,
            username: None,
            password: None,
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
        tokio::spawn(Uplink { settings, store: store.clone(), view, clock }.run());
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
    loop {
        tokio::select! {
            _ = desk.tick(), if limit.is_none_or(|limit| count < limit) => {
                let now = feed.clock.now();
                let entry = check_in(n, count);
                period.tally.observe(&entry);
                let outbound = feed.outbound(&entry, now);
                if let Err(error) = store.queue(now, entry, outbound).await.committed().await {
                    eprintln!("venue {}: a check-in was not recorded: {error}", feed.venue);
                }
                count += 1;
            }
            _ = summaries.tick() => {
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
            }
        }
    }
}

/// The `count`th check-in of venue `n`; every fourth a refused child.
fn check_in(n: u32, count: u64) -> LogEntry {
    let ticket = (count % 4 != 3).then(|| format!("T{n:05}{count:07}"));
    super::synthetic::check_in(format!("C{n:05}{count:07}"), ticket)
}
