//! Helpers for the end-to-end tests, which drive the real binaries from
//! outside.

use std::path::PathBuf;

/// The path of a workspace binary built by the same `cargo test` run.
///
/// `cargo test --workspace` builds every binary of the workspace into the
/// target directory's profile folder, next to the `deps/` folder that holds
/// the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).map(PathBuf::from).unwrap_or_default();
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing: run the tests with `cargo test --workspace` so that cargo builds it", path.display());
    path
}
