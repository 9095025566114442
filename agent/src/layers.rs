//! The agent's layers, kept by a test: which of its modules each module
//! may use (outside its tests), and which outside crates the pure ones may
//! not. The README's codemap states the same rules.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module and the modules of this crate it may use.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: used by many, using none.
    ("clock", &[]),
    ("config", &[]),
    ("journal", &[]),
    ("refusals", &[]),
    ("instance", &[]),
    // The venue's rules, pure: protocol and the log's entry types only.
    ("venue", &["journal"]),
    // The registration log, outbox and registry, and the thread owning them.
    ("store", &["journal"]),
    // What the API asks of the venue's owner.
    ("requests", &["journal", "venue"]),
    // The regulator feed: building messages, the send window, the sender.
    ("feed", &["clock", "config", "journal", "store"]),
    // The embedded bus.
    ("bus", &["config", "refusals"]),
    // The HTTP API: talks to the actor only through `requests`.
    ("http", &["bus", "clock", "feed", "journal", "refusals", "requests", "store", "venue"]),
    // The regulator's side: the feed from its broker into its database.
    ("ingest", &["config"]),
    // The daemon wires the parts; nothing but the command line uses it.
    ("daemon", &["bus", "clock", "config", "feed", "http", "instance", "journal", "refusals", "requests", "store", "venue"]),
    // The command line: the top.
    (
        "cli",
        &["bus", "clock", "config", "daemon", "feed", "http", "ingest", "instance", "journal", "refusals", "requests", "store", "venue"],
    ),
];

/// Outside crates the pure modules may not name: no I/O, no runtime.
const PURE: &[&str] = &["venue", "journal"];
const IMPURE_CRATES: &[&str] = &["tokio::", "rusqlite::", "axum::", "rumqttc::", "std::fs", "std::net", "std::process"];

/// The source of a file without its test module.
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |at| &text[..at])
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file under `src` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// The modules of this crate a text names as `crate::x`.
fn named(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| text[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect()
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(&src, file);
        if module == "main" || module == "layers" {
            continue;
        }
        let Some(allowed) = rules.get(module.as_str()) else {
            broken.push(format!("{}: module {module} has no layer in layers.rs", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let code = without_tests(&text);
        for used in named(code) {
            checked += 1;
            if used != module && !allowed.contains(&used.as_str()) {
                broken.push(format!("{}: {module} uses crate::{used}", file.display()));
            }
        }
        if PURE.contains(&module.as_str()) {
            for name in IMPURE_CRATES.iter().filter(|name| code.contains(*name)) {
                broken.push(format!("{}: {module} is pure but names {name}", file.display()));
            }
        }
    }
    assert!(checked > 100, "only {checked} uses found: is the scan looking at the sources?");
    assert!(broken.is_empty(), "layering rules broken:\n{}", broken.join("\n"));
}

#[test]
fn the_layers_have_no_cycle() {
    let rules: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    // Each module is listed after everything it may use: a cycle cannot be.
    for (position, (module, uses)) in LAYERS.iter().enumerate() {
        for used in *uses {
            let at = LAYERS.iter().position(|(name, _)| name == used);
            assert!(at.is_some_and(|at| at < position), "{module} may use {used}, which is not below it");
            assert!(rules.contains_key(used));
        }
    }
}

#[test]
fn the_scan_finds_a_reach_across_a_rule() {
    assert_eq!(named("use crate::store::Store;\nfoo(crate::venue::x); notcrate::y"), ["store", "venue"]);
    assert_eq!(without_tests("a\n#[cfg(test)]\nmod tests { crate::x }"), "a\n");
}
