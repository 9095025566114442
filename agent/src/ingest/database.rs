//! The regulator's PostgreSQL: its schema, migrated by the ingest itself,
//! and the batches of the feed written into it.
//!
//! The feed's rules live in the database (`netbar.receive` in
//! sql/1-feed.sql): deduplication by venue and sequence number, gaps as
//! rows, incidents folded from their transitions, log heads, the grading
//! views. The ingest only checks each message (a valid envelope on its own
//! venue's topic) and hands it over, one batch a transaction.

use std::str::FromStr;

use anyhow::Context;
use netbar_protocol::{Prefix, Topic};
use tokio_postgres::{Client, NoTls, Statement};

/// The migrations, in order; `netbar.migrations` says how many ran.
const MIGRATIONS: &[&str] = &[include_str!("sql/1-feed.sql")];

/// Serialises migrations between ingests starting together.
const MIGRATION_LOCK: i64 = 0x6e65_7462_6172;

/// What a message of a batch turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Verdict {
    New,
    Gap,
    Late,
    Duplicate,
    Live,
    Rejected,
}

impl Verdict {
    fn from_database(answer: &str) -> Verdict {
        match answer {
            "new" => Verdict::New,
            "gap" => Verdict::Gap,
            "late" => Verdict::Late,
            "duplicate" => Verdict::Duplicate,
            "live" => Verdict::Live,
            _ => Verdict::Rejected,
        }
    }
}

/// A message as checked before it goes to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// A valid envelope on its own venue's topic: the region, and the
    /// envelope's JSON text.
    Feed { region: String, envelope: String },
    /// Anything else: why.
    Rejected(String),
}

/// Checks one message as it came off the broker.
pub(crate) fn check(prefix: &Prefix, topic: &str, payload: &[u8]) -> Checked {
    let (region, venue) = match Topic::parse_regulator(prefix, topic) {
        Ok(Topic::Regulator { region, venue, .. }) => (region, venue),
        Ok(_) => return Checked::Rejected("not a topic of the feed".to_owned()),
        Err(error) => return Checked::Rejected(format!("unreadable topic: {error}")),
    };
    let envelope = match netbar_protocol::decode(payload) {
        Ok(envelope) => envelope,
        Err(error) => return Checked::Rejected(format!("unreadable message: {error}")),
    };
    if envelope.venue != venue {
        return Checked::Rejected(format!("a message of venue {} on venue {venue}'s topic", envelope.venue));
    }
    match std::str::from_utf8(payload) {
        Ok(text) => Checked::Feed { region: region.to_string(), envelope: text.to_owned() },
        Err(error) => Checked::Rejected(format!("unreadable message: {error}")),
    }
}

/// Whether a failed write may succeed if tried again as it is (the
/// connection, the server, a lock, a schema someone broke: the messages
/// wait, unacknowledged), rather than failing on what it wrote (a data
/// exception, an integrity violation, PL/pgSQL's own raise: that message
/// alone goes to `rejected`).
pub(crate) fn transient(error: &tokio_postgres::Error) -> bool {
    error.code().is_none_or(|code| !matches!(&code.code()[..2], "22" | "23" | "P0"))
}

/// A connection to the regulator's database, migrated, with the feed's
/// statements prepared.
pub(crate) struct Database {
    client: Client,
    receive: Statement,
    reject: Statement,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Connects, migrates the schema and prepares the statements.
    pub(crate) async fn open(connection: &str) -> anyhow::Result<Database> {
        let mut config = tokio_postgres::Config::from_str(connection)
            .with_context(|| format!("--database {connection:?} is not a connection string"))?;
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        let (mut client, driver) = config.connect(NoTls).await.with_context(|| "cannot connect to the database")?;
        tokio::spawn(async move {
            if let Err(error) = driver.await {
                tracing::warn!(%error, "the database connection ended");
            }
        });
        migrate(&mut client).await?;
        let receive = client.prepare("SELECT netbar.receive($1::text, $2::text::jsonb)").await?;
        let reject = client
            .prepare("INSERT INTO netbar.rejected (received_at, topic, error, payload) VALUES (now(), $1, $2, $3) RETURNING 'rejected'")
            .await?;
        Ok(Database { client, receive, reject })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes a batch in one transaction, the statements pipelined; what
    /// each message was, in order.
    pub(crate) async fn write(&mut self, batch: &[(String, bytes::Bytes, Checked)]) -> Result<Vec<Verdict>, tokio_postgres::Error> {
        let transaction = self.client.transaction().await?;
        let rows = futures_util::future::try_join_all(batch.iter().map(|(topic, payload, checked)| {
            let (receive, reject) = (&self.receive, &self.reject);
            let transaction = &transaction;
            async move {
                match checked {
                    Checked::Feed { region, envelope } => transaction.query_one(receive, &[region, envelope]).await,
                    Checked::Rejected(why) => transaction.query_one(reject, &[topic, why, &payload.as_ref()]).await,
                }
            }
        }))
        .await?;
        transaction.commit().await?;
        Ok(rows.iter().map(|row| Verdict::from_database(row.get(0))).collect())
    }
}

/// Brings the schema to this build's version, under a lock so that ingests
/// starting together migrate once.
async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    let transaction = client.transaction().await?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.context("cannot lock the schema")?;
    transaction
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS netbar;
             CREATE TABLE IF NOT EXISTS netbar.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .context("cannot create the schema netbar")?;
    let done: i32 = transaction.query_one("SELECT coalesce(max(version), 0) FROM netbar.migrations", &[]).await?.get(0);
    let known = MIGRATIONS.len();
    anyhow::ensure!(
        done as usize <= known,
        "the database's schema netbar is at version {done}, written by a newer netbar; this ingest knows versions up to {known}"
    );
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let version = index as i32 + 1;
        transaction.batch_execute(migration).await.with_context(|| format!("migration {version} of the schema netbar failed"))?;
        transaction.execute("INSERT INTO netbar.migrations (version) VALUES ($1)", &[&version]).await?;
        tracing::info!(version, "the schema netbar migrated");
    }
    transaction.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_before_the_database_sees_them() {
        let prefix = Prefix::new("netbar/feed").unwrap();
        let summary = netbar_protocol::examples::envelope(netbar_protocol::Kind::Summary);
        let text = netbar_protocol::encode(&summary);
        let topic = format!("netbar/feed/310104/{}/summary", summary.venue);
        assert_eq!(check(&prefix, &topic, text.as_bytes()), Checked::Feed { region: "310104".into(), envelope: text.clone() });
        let rejected = |topic: &str, payload: &[u8]| match check(&prefix, topic, payload) {
            Checked::Rejected(why) => why,
            Checked::Feed { .. } => panic!("{topic} accepted"),
        };
        assert!(
            rejected("netbar/feed/310104/sh-0099/summary", text.as_bytes()).contains("a message of venue sh-0042 on venue sh-0099's topic")
        );
        assert!(rejected(&topic, b"{\"not\": \"an envelope\"}").starts_with("unreadable message: "));
        assert!(rejected("netbar/feed/310104/sh-0042", text.as_bytes()).starts_with("unreadable topic: "));
        assert!(rejected(&topic, &[0xff, 0xfe]).starts_with("unreadable message: "));
    }
}
