//! The node tooling in `tests/interop/node` (`oidc-provider`, `dpop`, `oauth4webapi`): where
//! it is, and whether it is installed. Without it a test says why and is skipped, except in
//! CI (`CI=true`), where that is a failure.

use std::{path::PathBuf, process::Command};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node")
}

/// Whether `node` and the npm `packages` are here; in CI their absence fails `test`.
pub fn ready(test: &str, packages: &[&str]) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = packages
        .iter()
        .all(|p| dir().join("node_modules").join(p).is_dir());
    if node && installed {
        return true;
    }
    let reason = if node {
        "run `npm ci` in tests/interop/node"
    } else {
        "no `node` on PATH"
    };
    assert!(
        std::env::var("CI").map_or(true, |ci| ci != "true"),
        "{test}: CI=true but {reason}"
    );
    eprintln!("{test}: SKIPPED: {reason}");
    false
}
