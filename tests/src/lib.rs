//! Helpers for the end-to-end tests, which drive the real binaries from
//! outside.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of a workspace binary, freshly built.
///
/// `cargo test` builds the binaries of a package only for that package's
/// own tests, so the first call builds every binary of the workspace with
/// the same cargo and profile as the tests (a no-op when they are up to
/// date) and the tests never run a stale one.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let profile_dir = BUILT.get_or_init(build_binaries).as_ref().unwrap_or_else(|error| panic!("{error}"));
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is not a binary of the workspace", path.display());
    path
}

fn build_binaries() -> Result<PathBuf, String> {
    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().map_err(|error| format!("cannot locate the test executable: {error}"))?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or("the test executable is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().ok_or("the test executable is not in <target>/<profile>/deps")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(&workspace).args(["build", "--quiet", "--workspace", "--bins", "--target-dir"]).arg(target_dir);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().map_err(|error| format!("cannot run cargo to build the binaries: {error}"))?;
    if !status.success() {
        return Err(format!("building the workspace binaries failed: {status}"));
    }
    Ok(profile_dir.to_path_buf())
}
