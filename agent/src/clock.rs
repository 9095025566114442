//! The venue's clock: a part the daemon is given, not an environment read
//! deep inside it.

use anyhow::Context;
use jiff::Timestamp;

/// The venue's clock. Normally the system's; `NETBAR_AGENT_CLOCK` (an RFC
/// 3339 instant) starts it elsewhere, for demos and tests of time-bound
/// rules. Commands carry instants in the stations' (system) time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    offset: jiff::SignedDuration,
}

impl Clock {
    /// The system clock, or the one `NETBAR_AGENT_CLOCK` asks for.
    pub(crate) fn from_env() -> anyhow::Result<Clock> {
        match std::env::var("NETBAR_AGENT_CLOCK") {
            Err(_) => Ok(Clock::default()),
            Ok(text) => {
                let start: Timestamp = text.parse().with_context(|| format!("NETBAR_AGENT_CLOCK {text:?} is not an RFC 3339 instant"))?;
                tracing::warn!(%start, "the venue's clock is set by NETBAR_AGENT_CLOCK, not the system");
                Ok(Clock::starting_at(start))
            }
        }
    }

    /// A clock that reads `start` now, and runs on from there.
    pub(crate) fn starting_at(start: Timestamp) -> Clock {
        Clock { offset: start.duration_since(Timestamp::now()) }
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::now() + self.offset
    }

    /// An instant of the venue's clock in the system's time.
    pub(crate) fn to_system(self, at: Timestamp) -> Timestamp {
        at - self.offset
    }
}
