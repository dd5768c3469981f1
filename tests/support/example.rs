//! Runs an example as a user does: the built program, as a child process with its settings in
//! the environment, on an ephemeral loopback port that it reports in its `listening on` line.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

/// The example's executable, built (once per test binary) exactly as the README runs it.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    // target/debug/deps/<test> -> target/debug/examples/<name>
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    if !built.iter().any(|b| b == name) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name]);
        if path.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --example {name} failed");
        built.push(name.to_owned());
    }
    path.join("examples").join(name)
}

/// A running example; killed when dropped.
pub struct Example {
    pub addr: SocketAddr,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Example {
    /// Starts `name` with `env` (plus `RUST_LOG` if not given) and waits for its
    /// `listening on` line.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        Self::try_start(name, env).unwrap_or_else(|(status, output)| {
            panic!("{name} exited ({status:?}) before listening:\n{output}")
        })
    }

    /// Like [`start`](Self::start), or the exit status and output of a program that stopped
    /// before listening.
    pub fn try_start(
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, (Option<ExitStatus>, String)> {
        let mut cmd = Command::new(binary(name));
        cmd.env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the example starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (found, listening) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (output, found) = (output.clone(), found.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addr(&line) {
                        let _ = found.send(addr);
                    }
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        drop(found);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match listening.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => {
                    return Ok(Self {
                        addr,
                        child,
                        output,
                    });
                }
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    return Err((None, output.lock().unwrap().clone()));
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Let the readers take the last lines.
                        std::thread::sleep(Duration::from_millis(100));
                        return Err((Some(status), output.lock().unwrap().clone()));
                    }
                }
            }
        }
    }

    /// The process id, for reading `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the program printed so far (its log).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits up to `within` for the program to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the program at once, as a crash or `kill -9` would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in a line like `... listening on http://127.0.0.1:41675` (or `listening on
/// 127.0.0.1:41675`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let rest = rest.split_once("://").map_or(rest, |(_, rest)| rest);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What `name` prints and its exit status when run with `args` and `env` to completion (for
/// `--help` and refusals to start).
pub fn run(name: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (ExitStatus, String) {
    let out = Command::new(binary(name))
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("the example runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status, text)
}
