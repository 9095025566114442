//! `netbar-collector`: the station side of netbar. For now it only knows its
//! version; it learns to report in issue 3.

use clap::Parser;

/// Reports a station's sessions, hardware and bridged sensors to the venue agent.
#[derive(Debug, Parser)]
#[command(name = "netbar-collector", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("netbar-collector {}: nothing to run yet; see `--help`", env!("CARGO_PKG_VERSION"));
}
