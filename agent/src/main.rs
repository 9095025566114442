//! `netbar-agent`: the venue agent on the cashier PC.
//!
//! `run` is the daemon (bus, venue rules, registration log, API, regulator
//! feed); the other subcommands are tools around it: `check-id`, `records`,
//! `enroll`, `pki`, `user`, `uplink`, `regulator tail` and `regulator ingest` (the
//! regulator's side of the feed), service installation and configuration. The README's codemap
//! says which module is which, and `layers` keeps them in their layers.

mod bus;
mod cli;
mod clock;
mod config;
mod daemon;
mod feed;
mod http;
mod ingest;
mod instance;
mod journal;
// The layers are checked once, on the build machine's own sources.
#[cfg(all(test, not(windows)))]
mod layers;
mod refusals;
mod requests;
mod store;
mod venue;

fn main() -> std::process::ExitCode {
    cli::main()
}
