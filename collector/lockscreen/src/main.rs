//! `netbar-lockscreen`: the customer's lock screen of a netbar station.
//!
//! It covers every monitor until a ticket is typed, shows the session's
//! time left in a strip while the customer plays, the warning before the
//! session ends, staff messages, and the evacuation notice above everything
//! until the incident is resolved. It attaches to the station's collector
//! over the local interface (`--connect`); the collector watches it and
//! locks the station with the operating system's lock if it is killed or
//! hangs. See `netbar_protocol::local` for what they say.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use netbar_protocol::local::Language;

mod app;
mod desktop;
mod link;
mod words;

/// The customer's lock screen of a netbar station.
#[derive(Debug, Parser)]
#[command(name = "netbar-lockscreen", version, about)]
struct Cli {
    /// The collector's local interface ([local] listen of its configuration).
    #[arg(long, default_value = "127.0.0.1:47017", value_name = "ADDRESS")]
    connect: SocketAddr,
    /// Start in this language (zh, en, ko) instead of the venue's first.
    #[arg(long, value_parser = language)]
    language: Option<Language>,
    /// Write this program's manual page into DIR and exit (what the
    /// collector's package installs).
    #[arg(long, value_name = "DIR", hide = true)]
    write_manual: Option<std::path::PathBuf>,
}

fn language(text: &str) -> Result<Language, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| format!("{text}: one of zh, en, ko"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.write_manual {
        return match netbar_manual::write_manuals(Cli::command(), dir) {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("netbar-lockscreen: {error}");
                ExitCode::from(1)
            }
        };
    }
    // One connection to the display server, for the window's extent and
    // for raising it later.
    let desktop = desktop::Desktop::open();
    let cover = desktop.cover();
    let result = iced::application("netbar", app::App::update, app::App::view)
        .subscription(app::App::subscription)
        .theme(app::App::theme)
        // Built in (the fira-sans feature): Latin text shows even where the
        // system has no fonts (wine); CJK falls back to the system's fonts
        // and `lock_screen.fonts`.
        .default_font(iced::Font::with_name("Fira Sans"))
        .window(app::App::window_settings(cover))
        .run_with(move || app::App::new(desktop, cli.connect, cli.language));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netbar-lockscreen: {error}");
            ExitCode::from(1)
        }
    }
}
