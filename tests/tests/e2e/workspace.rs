//! Properties of the workspace itself.

use std::collections::{BTreeMap, BTreeSet};

/// Every package `root` depends on, directly or not, per Cargo.lock.
fn dependency_closure(root: &str) -> BTreeSet<String> {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let lock: toml::Table = std::fs::read_to_string(lock_path).expect("Cargo.lock is readable").parse().expect("Cargo.lock is TOML");
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in lock["package"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_owned();
        let dependencies = package.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default();
        // An entry is "name" or "name version" when several versions are locked.
        let dependencies = dependencies.iter().filter_map(|d| d.as_str()).map(|d| d.split(' ').next().unwrap_or(d).to_owned());
        graph.entry(name).or_default().extend(dependencies);
    }
    assert!(graph.contains_key(root), "{root} is not in Cargo.lock");
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(name) = todo.pop() {
        for dependency in graph.get(&name).into_iter().flatten() {
            if seen.insert(dependency.clone()) {
                todo.push(dependency.clone());
            }
        }
    }
    seen
}

#[test]
fn protocol_stays_pure() {
    let closure = dependency_closure("netbar-protocol");
    assert!(closure.contains("serde"), "the closure was computed: {closure:?}");
    for forbidden in ["tokio", "mio", "async-std", "smol", "rumqttc", "rusqlite"] {
        assert!(!closure.contains(forbidden), "netbar-protocol depends on {forbidden}: {closure:?}");
    }
}
