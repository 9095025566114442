//! One realistic example of every message kind.
//!
//! They are the golden files in `protocol/golden/` (a test fails when the
//! encoding of an example drifts from its file), the seeds of the fuzz
//! target, and ready-made messages for other crates' tests.

use jiff::Timestamp;
use jiff::civil::date;

use crate::envelope::{Envelope, Kind, Message, MessageId, Sender};
use crate::ids::{StationId, VenueId};
use crate::messages::*;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn name<K: crate::ids::IdKind>(text: &str) -> crate::ids::Id<K> {
    #[allow(clippy::expect_used)]
    crate::ids::Id::new(text).expect("example names are valid")
}

const HASH_A: &str = "9f2c1e0b7a4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a9f8e7d6c5b4a3";
const HASH_B: &str = "0d1c2b3a49586776a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2";

/// The body of the example of `kind`.
pub fn body(kind: Kind) -> Message {
    let station: StationId = name("st-017");
    match kind {
        Kind::StationStatus => StationStatus {
            online: true,
            version: "0.1.0".into(),
            capabilities: vec!["lock".into(), "notify".into(), "sensor_bridge".into()],
            lock_state: LockState::Unlocked,
            session: Some("s-20261122-0042".into()),
        }
        .into(),
        Kind::Telemetry => Telemetry {
            cpu_percent: 37.5,
            memory_used_bytes: 6_442_450_944,
            memory_total_bytes: 17_179_869_184,
            uptime_secs: 13_320,
            temperatures: vec![Temperature { label: "CPU".into(), celsius: 61.0 }, Temperature { label: "GPU".into(), celsius: 55.5 }],
            disks: vec![Disk { mount: "C:\\".into(), free_bytes: 120_000_000_000, total_bytes: 512_000_000_000 }],
            interactive_users: 1,
            input_idle_ms: Some(1200),
            apps_running: 4,
            lock_state: LockState::Unlocked,
            session: Some("s-20261122-0042".into()),
        }
        .into(),
        Kind::LoginRequest => LoginRequest { request_id: "r-8841".into(), ticket: "K7Q-2M9".into() }.into(),
        Kind::SessionEvent => SessionEvent::Ended { session_id: "s-20261122-0042".into(), reason: EndReason::Policy }.into(),
        Kind::Activity => Activity { evidence: vec![Evidence::Input, Evidence::Applications], since: ts("2026-11-22T12:03:11Z") }.into(),
        Kind::Tamper => Tamper {
            what: TamperKind::LockScreenStopped,
            session: Some("s-20261122-0042".into()),
            detail: "the lock screen (pid 4312) ended with exit code 1".into(),
        }
        .into(),
        Kind::SensorReading => SensorReading {
            sensor: name::<crate::ids::SensorKind>("smoke-hall-2"),
            sensor_kind: SensorKind::Smoke,
            reading: Reading::Alarm { active: false },
            battery_percent: Some(87),
            tamper: false,
        }
        .into(),
        Kind::Command => Command {
            command_id: "c-1001".into(),
            action: Action::Unlock {
                session_id: "s-20261122-0042".into(),
                request_id: Some("r-8841".into()),
                until: Some(ts("2026-11-22T14:00:00Z")),
            },
        }
        .into(),
        Kind::CommandAck => CommandAck { command_id: "c-1001".into(), result: Outcome::Done, lock_state: LockState::Unlocked }.into(),
        Kind::DeliveryAck => DeliveryAck {
            entries: vec![
                DeliveryEntry { id: example_id(2), seq: 41, delivery: Delivery::Stored },
                DeliveryEntry { id: example_id(3), seq: 42, delivery: Delivery::Duplicate },
            ],
        }
        .into(),
        Kind::AgentStatus => {
            AgentStatus { online: true, version: "0.1.0".into(), policy: "cn".into(), started: ts("2026-11-22T00:00:05Z") }.into()
        }
        Kind::Summary => Summary {
            from: ts("2026-11-22T11:00:00Z"),
            to: ts("2026-11-22T12:00:00Z"),
            stations_enrolled: 120,
            stations_online: 117,
            sessions_open: 64,
            customers_present: 66,
            registrations: 23,
            refusals: vec![ReasonCount { reason: "under_age".into(), count: 2 }],
            unregistered_use: 0,
            incidents_opened: 2,
            incidents_acknowledged: 2,
            incidents_resolved: 1,
            incidents_open: 1,
            incidents_open_by_severity: SeverityCounts { critical: 0, warning: 1, notice: 0 },
            sensors_enrolled: 14,
            sensors_silent: 0,
            compliance: Compliance::Yellow,
            log_head: LogHead { index: 5821, hash: HASH_A.into() },
            store_error: None,
            ga_code: Some("31010410000042".parse().expect("a GA code")),
        }
        .into(),
        Kind::Incident => IncidentEvent {
            incident_id: "i-0192".into(),
            at: ts("2026-11-22T12:05:00Z"),
            transition: IncidentTransition::Opened {
                incident_kind: IncidentKind::ExitBlocked,
                severity: Severity::Critical,
                station: None,
                sensor: Some(name("door-exit-1")),
                detail: "emergency exit 1 reported locked while the venue is open".into(),
            },
        }
        .into(),
        Kind::Record => RegistrationRecord {
            index: 5821,
            prev_hash: HASH_B.into(),
            hash: HASH_A.into(),
            at: ts("2026-11-22T11:58:40Z"),
            station: Some(station),
            allowed: true,
            reasons: vec![],
            person: Person::Full {
                document_kind: "cn_resident_id".into(),
                number: "11010519491231002X".into(),
                name: "张三".into(),
                birth_date: date(1949, 12, 31),
            },
        }
        .into(),
        Kind::Heartbeat => Heartbeat {
            outbox_pending: Some(0),
            log_head: Some(LogHead { index: 5821, hash: HASH_A.into() }),
            store_error: None,
            ga_code: Some("31010410000042".parse().expect("a GA code")),
        }
        .into(),
    }
}

/// The topic the signed command example is published on.
pub const COMMAND_TOPIC: &str = "netbar/v1/sh-0042/station/st-017/command";

/// The station key the command example is signed with: 32 bytes of 0x11.
pub fn example_key() -> crate::auth::StationKey {
    crate::auth::StationKey::from_bytes([0x11; 32])
}

fn example_id(n: u8) -> MessageId {
    MessageId::from_parts(ts("2026-11-22T12:00:00Z"), [n, 0x5e, 0x11, 0x0c, 0x9a, 0x27, 0x44, 0x81, 0x3b, 0x6d])
}

/// The full example message of `kind`, with its envelope.
pub fn envelope(kind: Kind) -> Envelope {
    let sender = match kind {
        Kind::Command | Kind::DeliveryAck | Kind::AgentStatus | Kind::Summary | Kind::Incident | Kind::Record | Kind::Heartbeat => {
            Sender::agent("agent")
        }
        _ => Sender::station(&name::<crate::ids::StationKind>("st-017")),
    };
    let venue: VenueId = name("sh-0042");
    let mut envelope = Envelope::new(example_id(1), ts("2026-11-22T12:00:00.250Z"), venue, sender, 42, body(kind));
    if kind == Kind::Command {
        // One golden example is signed, to show implementers in other
        // languages the exact MAC input (see `crate::auth`).
        example_key().sign(COMMAND_TOPIC, &mut envelope);
    }
    envelope
}

/// Every example, in the order of [`Kind::ALL`].
pub fn all() -> Vec<Envelope> {
    Kind::ALL.iter().map(|&kind| envelope(kind)).collect()
}
