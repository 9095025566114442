//! `netbar-agent uplink status`: the regulator feed as the database records
//! it, read without a running agent.

use jiff::Timestamp;

/// `netbar-agent uplink ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Connected or not, the backlog, the oldest unsent message and the
    /// last sequence number the regulator's broker acknowledged.
    Status,
}

pub(crate) fn run(loaded: &crate::config::Loaded, command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Status => {
            let Some(settings) = &loaded.uplink else {
                println!("no regulator feed: the configuration has no [uplink] section");
                return Ok(std::process::ExitCode::SUCCESS);
            };
            let store = crate::store::Store::inspect(&loaded.database())?;
            let status = store.outbox_status()?;
            let now = Timestamp::now();
            let ago = |at: Timestamp| {
                let seconds = now.duration_since(at).as_secs().max(0);
                format!("{at} ({}h {:02}m {:02}s ago)", seconds / 3600, seconds / 60 % 60, seconds % 60)
            };
            let since = status.since.map(ago).unwrap_or_else(|| "never".into());
            println!("broker: {}", settings.url);
            // The stored flag is an agent's word; without a running agent
            // (one that crashed, say) nobody is connected.
            if crate::instance::running(&loaded.config.data.dir) {
                println!("connected: {} (since {since})", if status.connected { "yes" } else { "no" });
            } else {
                println!("connected: no (the agent is not running)");
            }
            println!("backlog: {} message(s)", status.pending);
            println!("oldest unsent: {}", status.oldest.map(ago).unwrap_or_else(|| "none".into()));
            println!("last sequence: {}, last acknowledged: {}", status.last_seq, status.last_acked);
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
