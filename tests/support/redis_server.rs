//! A real `redis-server`, started by a test on a free loopback port and stopped with it.
//!
//! Without a `redis-server` on the machine, [`RedisServer::start`] prints why and returns
//! `None`, and the test returns early: `cargo test` passes on a fresh machine. `.ci/run`
//! installs Redis and sets `TOWER_JWT_AUTH_REQUIRE_REDIS=1`, which turns that skip into a
//! failure.

// Each test binary that includes this uses some of it.
#![allow(dead_code)]

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// `appendfsync always`; off for [`start_in_memory`](Self::start_in_memory).
    persist: bool,
}

impl RedisServer {
    /// Starts a server with an append-only file (`appendfsync always`), as a production Redis
    /// keeps its data: a [`restart`](Self::restart) after a [`kill`](Self::kill) keeps it.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, true)
    }

    /// Starts a server that keeps its data in memory only, as a cache (the DPoP replay
    /// store in the stack benchmark) is usually run: no write waits for a disk.
    pub fn start_in_memory(test: &str) -> Option<Self> {
        Self::start_with(test, false)
    }

    fn start_with(test: &str, persist: bool) -> Option<Self> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            let required = std::env::var_os("TOWER_JWT_AUTH_REQUIRE_REDIS").is_some()
                || std::env::var("CI").is_ok_and(|ci| ci == "true");
            assert!(
                !required,
                "{test}: CI or TOWER_JWT_AUTH_REQUIRE_REDIS is set but there is no redis-server on PATH"
            );
            eprintln!(
                "{test}: SKIPPED: no redis-server on PATH (apt-get install redis-server; \
                 set TOWER_JWT_AUTH_REQUIRE_REDIS=1 to make this a failure)"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "tower-jwt-auth-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut server = Self {
            child: None,
            port,
            dir,
            persist,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server at once (SIGKILL): clients see their connections drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Deletes the data files (of a killed server): it restarts empty.
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "kill the server first");
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("a temporary directory");
    }

    /// Starts the server (again) on the same port and data directory, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .args(["--save", ""])
            .args(match self.persist {
                true => ["--appendonly", "yes", "--appendfsync", "always"],
                false => ["--appendonly", "no", "--appendfsync", "no"],
            })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
