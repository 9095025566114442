//! The manual pages and shell completions of netbar's programs, made from
//! each program's own clap definitions so that they cannot drift from what
//! the program accepts.
//!
//! Each program offers them as subcommands (`completions SHELL`, `manuals
//! DIR`, through [`Generate`]); the lock screen, which has no subcommands,
//! through a hidden option calling [`write_manuals`]. The packages are made
//! from the binaries just built: `deploy/debian/package` installs the pages
//! and the bash, zsh and fish completions, `deploy/windows/package` puts the
//! PowerShell completions into the zip.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// The subcommands a program flattens into its own (`#[command(flatten)]`).
#[derive(Debug, clap::Subcommand)]
pub enum Generate {
    /// Print the completion script for a shell to standard output (bash,
    /// zsh, fish, powershell, elvish); the packages install it.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the manual pages into DIR: one for the program and one for
    /// each subcommand (`man netbar-agent-check-id`); the packages install them.
    Manuals {
        /// Where to write them (made if missing); each page is NAME.1.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

impl Generate {
    /// Carries out the subcommand for `command`, the program's whole
    /// command line (`Cli::command()`).
    pub fn run(&self, command: clap::Command) -> io::Result<()> {
        match self {
            Generate::Completions { shell } => {
                let mut out = io::stdout().lock();
                completions(*shell, command, &mut out)?;
                out.flush()
            }
            Generate::Manuals { dir } => {
                for page in write_manuals(command, dir)? {
                    println!("{}", page.display());
                }
                Ok(())
            }
        }
    }
}

/// Writes the completion script of `command` for `shell` to `out`.
pub fn completions(shell: Shell, mut command: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let name = command.get_name().to_owned();
    // clap_complete writes without reporting errors; a buffer lets a
    // closed pipe or a full disk surface here.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)
}

/// Writes a manual page for `command` and each of its visible subcommands,
/// at every depth, into `dir`, named as `man` looks them up
/// (`netbar-agent-regulator-ingest.1`); the pages written, in that order.
pub fn write_manuals(command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| io::Error::new(e.kind(), format!("cannot make {}: {e}", dir.display())))?;
    // Built once, as clap_mangen does, so that every subcommand knows its
    // display name (`netbar-agent-check-id`) and no `help` subcommand is made.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    // Every page names the program's version, subcommands' pages too.
    let source = format!("{} {}", command.get_name(), command.get_version().unwrap_or_default());
    let mut written = Vec::new();
    write_pages(command, &source, dir, &mut written)?;
    Ok(written)
}

/// Writes the page of `command`, then those of its visible subcommands.
fn write_pages(command: clap::Command, source: &str, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let subcommands: Vec<clap::Command> = command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned().collect();
    let page = clap_mangen::Man::new(command).source(source).manual("netbar");
    let path = dir.join(page.get_filename());
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    std::fs::write(&path, roff).map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    written.push(path);
    subcommands.into_iter().try_for_each(|sub| write_pages(sub, source, dir, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program shaped like netbar's: subcommands two deep, one hidden.
    fn program() -> clap::Command {
        clap::Command::new("netbar-example")
            .version("9.8.7")
            .about("An example program.")
            .subcommand(clap::Command::new("check-id").about("Check identity numbers.").arg(clap::arg!(--at <TIME> "The moment")))
            .subcommand(
                clap::Command::new("regulator")
                    .about("The regulator's side.")
                    .subcommand(clap::Command::new("ingest").about("Write the feed into PostgreSQL.")),
            )
            .subcommand(clap::Command::new("service").about("Windows' entry point.").hide(true))
    }

    #[test]
    fn a_page_for_the_program_and_each_visible_subcommand_at_every_depth() {
        let dir = std::env::temp_dir().join(format!("netbar-manual-test-{}", std::process::id()));
        let written = write_manuals(program(), &dir).expect("the pages are written");
        let names: Vec<String> = written.iter().map(|path| path.file_name().expect("a file name").to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            ["netbar-example.1", "netbar-example-check-id.1", "netbar-example-regulator.1", "netbar-example-regulator-ingest.1"]
        );
        let ingest = std::fs::read_to_string(dir.join("netbar-example-regulator-ingest.1")).expect("the page reads");
        assert!(ingest.contains("\n.TH netbar-example-regulator-ingest 1  \"netbar-example 9.8.7\" netbar\n"), "{ingest}");
        // The whatis line `man -k` and lintian read: the page's name, then its synopsis.
        assert!(ingest.contains("netbar\\-example\\-regulator\\-ingest \\- Write the feed into PostgreSQL."), "{ingest}");
        let check_id = std::fs::read_to_string(dir.join("netbar-example-check-id.1")).expect("the page reads");
        assert!(check_id.contains("\\-\\-at"), "{check_id}");
        std::fs::remove_dir_all(&dir).expect("the folder is removed");
    }

    #[test]
    fn completions_offer_the_subcommands_in_every_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let mut script = Vec::new();
            completions(shell, program(), &mut script).expect("the script is written");
            let script = String::from_utf8(script).expect("UTF-8");
            assert!(script.contains("netbar-example"), "{shell}: {script}");
            assert!(script.contains("check-id") && script.contains("ingest"), "{shell}: {script}");
        }
    }
}
