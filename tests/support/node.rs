//! The node tooling in `tests/interop/node` (`oidc-provider`, `dpop`, `oauth4webapi`): where
//! it is, and whether it is installed. Without it a test says why and is skipped, except in
//! CI (`CI=true`), where that is a failure.

#![allow(dead_code)] // each test uses part of it

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use serde_json::Value;

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

/// `oidc-provider` (`provider.mjs`), started on an ephemeral loopback port with `env` and
/// killed when dropped.
pub struct Provider {
    child: Child,
    pub issuer: String,
}

impl Provider {
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("provider said {line:?}"));
        Self {
            child,
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
        }
    }

    /// A token (and for `alg` other than `none`, two DPoP proofs for `method url`), from
    /// `client.mjs`.
    pub fn client(&self, url: &str, method: &str, alg: &str, env: &[(&str, &str)]) -> Value {
        let out = Command::new("node")
            .args(["client.mjs", &self.issuer, url, method, alg])
            .current_dir(dir())
            .envs(env.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "client.mjs {alg} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Revokes `token` at the provider (RFC 7009).
    pub fn revoke(&self, token: &str) {
        let status = Command::new("node")
            .args(["revoke.mjs", &self.issuer, token])
            .current_dir(dir())
            .status()
            .unwrap();
        assert!(status.success(), "revoke.mjs failed");
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
