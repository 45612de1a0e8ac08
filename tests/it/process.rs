//! The real `shiplog` binary as a child process, for tests that need a process of its
//! own: to kill it, restart it, or read its memory.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the binary may take to say where it listens, and to stop on SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `shiplog` binary serving on a free port of 127.0.0.1. Dropping it kills it, so a
/// failing test leaves no process behind. Everything it prints is kept (`output`).
pub struct Server {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(database: impl AsRef<std::ffi::OsStr>) -> Self {
        Self::start_with(database, &[])
    }

    /// Starts the binary with extra command-line arguments.
    pub fn start_with(database: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Self {
        Self::start_env(database, args, &[])
    }

    /// Starts the binary with extra arguments and environment variables, and waits until
    /// it listens.
    pub fn start_env(
        database: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let mut server = Self::spawn(database, args, vars);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let output = server.output();
            if let Some(rest) = output.split("listening on http://").nth(1) {
                // Text logs end the address with a space, JSON logs with a quote.
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                server.addr = addr
                    .parse()
                    .unwrap_or_else(|err| panic!("bad address {addr:?}: {err}"));
                break;
            }
            if let Some(status) = server.child.try_wait().expect("poll the server") {
                panic!("the server exited ({status}) before listening; it said:\n{output}");
            }
            assert!(
                Instant::now() < deadline,
                "no `listening on` line within {START_TIMEOUT:?}; it said:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(server.addr.ip().is_loopback(), "listens on 127.0.0.1");
        server
    }

    /// Spawns the binary and returns at once, listening or not (see `exit`). Variables
    /// that would change its behaviour are cleared unless given in `vars`.
    pub fn spawn(
        database: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shiplog"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(database)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in [
            "SHIPLOG_LISTEN",
            "DATABASE_URL",
            "SHIPLOG_PRODUCTION_ENVIRONMENTS",
            "SHIPLOG_MAX_BATCH",
            "SHIPLOG_WS_INIT_TIMEOUT_SECONDS",
            "SHIPLOG_WS_MAX_CONNECTIONS",
            "SHIPLOG_WS_MAX_SUBSCRIPTIONS",
            "SHIPLOG_LOG_FORMAT",
            "SHIPLOG_LLM_URL",
            "SHIPLOG_LLM_API_KEY",
            "SHIPLOG_LLM_MODEL",
            "SHIPLOG_WEBHOOK_BACKOFF_MS",
            "SHIPLOG_WEBHOOK_MAX_ATTEMPTS",
            "SHIPLOG_WEBHOOK_ALLOW_PRIVATE",
            "SHIPLOG_GITHUB_API_URL",
        ] {
            command.env_remove(name);
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn the shiplog binary");
        let output = Arc::new(Mutex::new(String::new()));
        // Reads every line until the stream closes: a full pipe would block the server's
        // logging, and with it the server.
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for stream in streams {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut output) = output.lock() {
                        output.push_str(&line);
                        output.push('\n');
                    }
                }
            });
        }
        Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
        }
    }

    /// Everything the process printed so far (stdout and stderr, by lines).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits (20 s at most) for a process that should stop by itself; its status.
    pub fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Resets the server's peak RSS (VmHWM) to its RSS now (Linux's
    /// `/proc/PID/clear_refs`), so that the next peak read covers only what follows, not
    /// start-up or an earlier test step.
    pub fn reset_peak_memory(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("write /proc/PID/clear_refs");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
