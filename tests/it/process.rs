//! The real `shiplog` binary as a child process, for tests that need a process of its
//! own: to kill it, restart it, or read its memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the binary may take to say where it listens, and to stop on SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `shiplog` binary serving on a free port of 127.0.0.1. Dropping it kills it, so a
/// failing test leaves no process behind.
pub struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    pub fn start(database: &Path) -> Self {
        Self::start_with(database, &[])
    }

    /// Starts the binary with extra command-line arguments.
    pub fn start_with(database: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shiplog"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(database)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("SHIPLOG_LISTEN")
            .env_remove("DATABASE_URL")
            .env_remove("SHIPLOG_PRODUCTION_ENVIRONMENTS")
            .env_remove("SHIPLOG_MAX_BATCH")
            .env_remove("SHIPLOG_WS_INIT_TIMEOUT_SECONDS")
            .env_remove("SHIPLOG_WS_MAX_CONNECTIONS")
            .env_remove("SHIPLOG_WS_MAX_SUBSCRIPTIONS")
            .env_remove("SHIPLOG_LLM_URL")
            .env_remove("SHIPLOG_LLM_API_KEY")
            .env_remove("SHIPLOG_LLM_MODEL")
            .env_remove("SHIPLOG_WEBHOOK_BACKOFF_MS")
            .env_remove("SHIPLOG_WEBHOOK_MAX_ATTEMPTS")
            .env_remove("SHIPLOG_WEBHOOK_ALLOW_PRIVATE")
            .env_remove("SHIPLOG_GITHUB_API_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the shiplog binary");
        let stdout = child.stdout.take().expect("piped stdout");
        // The guard exists before anything can fail, so the child is killed on a panic.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };

        // Reads every line until the child's stdout closes: a full pipe would block the
        // server's logging, and with it the server.
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(sender) = tx.as_ref() {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let parsed = addr
                            .parse::<SocketAddr>()
                            .map_err(|err| format!("bad address in {line:?}: {err}"));
                        let _ = sender.send(parsed);
                        tx = None;
                    } else if seen.len() < 50 {
                        seen.push(line);
                    }
                }
            }
            if let Some(sender) = tx {
                let _ = sender.send(Err(format!(
                    "stdout closed before the listening line; it said: {seen:#?}"
                )));
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => server.addr = addr,
            Ok(Err(message)) => panic!("the server did not start: {message}"),
            Err(err) => panic!("no `listening on` line within {START_TIMEOUT:?}: {err}"),
        }
        assert!(server.addr.ip().is_loopback(), "listens on 127.0.0.1");
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process's resident memory and its peak so far, in KiB (VmRSS and VmHWM of
    /// /proc/PID/status).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/PID/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the killed server");
    }

    /// SIGTERM, then waits for the exit (killing it after STOP_TIMEOUT).
    pub fn terminate(mut self) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM succeeded");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
