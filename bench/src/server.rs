//! A shiplog server as a child process: built with cargo, started on port 0 over a given
//! database file, measured through /proc, stopped with SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;

/// Builds the server binary with the same profile as this harness and returns its path;
/// or, with `SHIPLOG_BENCH_SERVER` set, that binary as it is (to compare two builds).
pub async fn build() -> Result<PathBuf, BenchError> {
    if let Some(given) = std::env::var_os("SHIPLOG_BENCH_SERVER") {
        let binary = PathBuf::from(given);
        if !binary.is_file() {
            return Err(format!("SHIPLOG_BENCH_SERVER: no file at {}", binary.display()).into());
        }
        return Ok(binary);
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("the harness has no directory")?
        .to_path_buf();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "-p", "shiplog", "--bin", "shiplog"]);
    if release {
        command.arg("--release");
    }
    let status = command.status().await?;
    if !status.success() {
        return Err("building the shiplog server failed".into());
    }
    let binary = dir.join("shiplog");
    if !binary.exists() {
        return Err(format!("no server binary at {}", binary.display()).into());
    }
    Ok(binary)
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(binary: &Path, db: &Path) -> Result<Server, BenchError> {
        Self::start_with_env(binary, db, &[]).await
    }

    /// As [`Server::start`], with extra environment variables (settings) for the server.
    pub async fn start_with_env(
        binary: &Path,
        db: &Path,
        env: &[(&str, &str)],
    ) -> Result<Server, BenchError> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--database-url"])
            .arg(db)
            .env("RUST_LOG", "shiplog=info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: SocketAddr = rest.trim().parse()?;
                    return Ok::<_, BenchError>(addr);
                }
            }
            Err("the server exited before listening".into())
        })
        .await
        .map_err(|_| "the server did not start in time")??;
        // Keep reading so a full pipe never blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn status_kb(&self, key: &str) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Peak resident memory of the server so far, in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        self.status_kb("VmHWM:").map(|kb| kb as f64 / 1024.0)
    }

    /// Resident memory of the server now, in KB.
    pub fn rss_kb(&self) -> Option<u64> {
        self.status_kb("VmRSS:")
    }

    pub async fn stop(mut self) -> Result<(), BenchError> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    return Err(format!("the server exited with {status}").into());
                }
            }
            Err(_) => {
                self.child.kill().await?;
                return Err("the server did not stop within 15 s".into());
            }
        }
        Ok(())
    }
}
