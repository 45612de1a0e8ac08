//! A throwaway PostgreSQL cluster for tests.
//!
//! [`cluster()`] starts one cluster per test process, the first time a test asks for it,
//! and every test then takes a database of its own with [`Cluster::fresh_database`], so
//! tests run in parallel without seeing each other's rows:
//!
//! ```no_run
//! let url = testpg::cluster().fresh_database(); // postgres://postgres@127.0.0.1:PORT/test_…
//! ```
//!
//! The crate has no async code and no runtime of its own: the cluster is started with
//! `std::process` (initdb, then `pg_ctl start`), so it serves every `#[tokio::test]`
//! runtime alike, and a runtime that ends with its test takes nothing down with it.
//!
//! # Which PostgreSQL
//!
//! The server binaries (initdb, pg_ctl, postgres, psql) are looked for, in order, in
//! `$SHIPLOG_PG_BIN`, in `pg_config --bindir`, and in the highest
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout). When none has them, [`cluster()`]
//! panics and says how to install them: a missing PostgreSQL fails the tests that need it,
//! it never skips them.
//!
//! # The cluster
//!
//! initdb into a new directory under the system temporary directory (trust
//! authentication, UTF8, locale C; `--no-sync`, since a throwaway cluster's initial files
//! need not survive a crash of the machine). The server listens on 127.0.0.1 only, on a
//! port found free by binding `127.0.0.1:0` (a start that loses the port to another
//! process is retried on a new one), with its Unix socket inside that directory,
//! `fsync = on` and `synchronous_commit = on` (so commits are as durable as in
//! production, which tests of durability rely on) and `max_connections = 200` (many tests
//! with pools of their own at once).
//!
//! initdb and postgres refuse to run as root. When this process is root they are run as
//! the `postgres` system user (Debian's postgresql package creates it) through
//! `runuser -u postgres --`, with the directory handed to that user; where there is no
//! such user, a dedicated system user `shiplog-pg` is created once with `useradd --system`.
//!
//! # Stopping it: a watchdog on a pipe
//!
//! A static is never dropped, and neither an exit hook nor a `Drop` runs when a test
//! process is killed or aborts, so the test process itself cannot be trusted to stop the
//! cluster. Instead the cluster is started by a small watchdog shell process whose
//! standard input is a pipe held by the test process for its whole life. The watchdog
//! starts postgres, reports that it is ready, then reads that pipe until end of file. The
//! kernel closes the pipe when the test process ends, however it ends (a normal exit, a
//! panic, an abort, SIGKILL), and the watchdog then stops the cluster
//! (`pg_ctl stop -m immediate`: nothing in it is worth a clean shutdown) and removes the
//! directory. The watchdog runs in a process group of its own and ignores SIGINT, SIGHUP
//! and SIGPIPE, so a Ctrl-C that ends `cargo test` ends the test process (which closes the
//! pipe) without killing the watchdog before it has cleaned up; a SIGTERM sent to the
//! watchdog itself makes it clean up at once. Only a SIGKILL of the watchdog itself would
//! leave the cluster behind (in a directory named `testpg-*` under the temporary
//! directory).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The superuser that initdb creates (`-U`), and the user every URL names.
const SUPERUSER: &str = "postgres";
/// The system user created to run PostgreSQL as, when the process is root and there is no
/// `postgres` user.
const DEDICATED_USER: &str = "shiplog-pg";
/// How many ports to try before giving up, when another process takes the one chosen.
const PORT_ATTEMPTS: u32 = 8;
/// Seconds `pg_ctl start` waits for the server to accept connections.
const START_TIMEOUT_SECONDS: u32 = 120;

const HOW_TO_INSTALL: &str = "Install the PostgreSQL server: \
    `sudo apt-get install -y --no-install-recommends postgresql` on Debian or Ubuntu \
    (`.ci/run` and `scripts/pg-cluster.sh start` install it themselves), or set \
    SHIPLOG_PG_BIN to a directory holding initdb, pg_ctl, postgres and psql. \
    A missing PostgreSQL fails these tests; it never skips them.";

/// The watchdog (see the crate documentation). Arguments: bin dir, data dir, server log,
/// port, cluster dir, the user to run PostgreSQL as (empty: this user). It prints `ready`
/// once the server accepts connections, or `failed` and exits; after `ready` it writes
/// nothing more to its standard output.
const WATCHDOG: &str = r#"
bin=$1 data=$2 log=$3 port=$4 dir=$5 user=$6
as_pg() { if [ -n "$user" ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }
stop_and_clean() {
    as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 60 stop >>"$dir/pg_ctl.out" 2>&1
    rm -rf -- "$dir"
    exit 0
}
trap '' HUP INT PIPE
if as_pg "$bin/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t "$7" start >>"$dir/pg_ctl.out" 2>&1; then
    echo ready
else
    as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 60 stop >>"$dir/pg_ctl.out" 2>&1
    echo failed
    exit 1
fi
trap stop_and_clean TERM
# Until the test process's end of the pipe closes: when it exits, however it exits.
while read -r _ignored; do :; done
stop_and_clean
"#;

/// A running throwaway cluster. Get the process-wide one with [`cluster()`].
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    next_database: AtomicU64,
    /// Held, never written, until the process ends: its closing stops the cluster.
    _watchdog_stdin: ChildStdin,
    _watchdog: Child,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The process-wide cluster, started on first use (thread-safe: concurrent first callers
/// wait for the one start).
///
/// # Panics
///
/// When PostgreSQL is not installed, or the cluster cannot be started; the message says
/// why and, for a missing PostgreSQL, how to install it.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match Cluster::start() {
        Ok(cluster) => cluster,
        Err(why) => panic!("testpg: no PostgreSQL cluster for the tests: {why}"),
    })
}

impl Cluster {
    /// The URL of the cluster's `postgres` database, as the superuser.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The URL of database `name` on this cluster, as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database with a name no other call in this process returns,
    /// and gives its URL.
    ///
    /// # Panics
    ///
    /// When `CREATE DATABASE` fails (with psql's message).
    pub fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        if let Err(why) = self.psql("postgres", &format!("CREATE DATABASE {name}")) {
            panic!("testpg: cannot create database {name}: {why}");
        }
        self.url(&name)
    }

    /// Runs `sql` in `database` with the cluster's own psql (as the superuser, stopping at
    /// the first error) and returns what it printed: unaligned, tuples only, so a single
    /// value comes back as itself followed by a newline.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-c", sql])
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("psql").display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "psql {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's directory (data, socket, logs): removed when the cluster stops.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file (it goes when the cluster does).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn start() -> Result<Cluster, String> {
        let bin = find_bin_dir()?;
        let user = run_as_user()?;
        let dir = make_cluster_dir(user.as_ref())?;
        match start_in(&bin, &dir, user.as_ref()) {
            Ok((port, watchdog, stdin)) => Ok(Cluster {
                bin,
                dir,
                port,
                next_database: AtomicU64::new(0),
                _watchdog_stdin: stdin,
                _watchdog: watchdog,
            }),
            Err(why) => {
                // Nothing runs there any more (the watchdog stops what it started).
                let _ = fs::remove_dir_all(&dir);
                Err(why)
            }
        }
    }
}

/// A system user to run PostgreSQL as: its name, uid and gid.
struct PgUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// Where the PostgreSQL binaries are: `$SHIPLOG_PG_BIN`, else `pg_config --bindir`, else
/// the highest `/usr/lib/postgresql/*/bin` that has them.
pub fn find_bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SHIPLOG_PG_BIN") {
        let dir = PathBuf::from(dir);
        return match missing_binaries(&dir) {
            None => Ok(dir),
            Some(missing) => Err(format!(
                "SHIPLOG_PG_BIN={} has no {missing}. {HOW_TO_INSTALL}",
                dir.display()
            )),
        };
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if missing_binaries(&dir).is_none() {
                return Ok(dir);
            }
        }
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let version: Option<Vec<u32>> = entry
                .file_name()
                .to_str()
                .and_then(|name| name.split('.').map(|part| part.parse().ok()).collect());
            let dir = entry.path().join("bin");
            if let Some(version) = version {
                if missing_binaries(&dir).is_none()
                    && best.as_ref().is_none_or(|(v, _)| version > *v)
                {
                    best = Some((version, dir));
                }
            }
        }
    }
    best.map(|(_, dir)| dir).ok_or_else(|| {
        format!(
            "no PostgreSQL server binaries found (looked in $SHIPLOG_PG_BIN, `pg_config --bindir` \
             and /usr/lib/postgresql/*/bin). {HOW_TO_INSTALL}"
        )
    })
}

/// The first of the binaries this crate runs that `dir` lacks.
fn missing_binaries(dir: &Path) -> Option<&'static str> {
    ["initdb", "pg_ctl", "postgres", "psql"]
        .into_iter()
        .find(|name| !dir.join(name).is_file())
}

/// None when this process may run PostgreSQL itself; the user to run it as when root.
fn run_as_user() -> Result<Option<PgUser>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    if let Some(user) = lookup_user("postgres") {
        return Ok(Some(user));
    }
    if let Some(user) = lookup_user(DEDICATED_USER) {
        return Ok(Some(user));
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
        ])
        .args(["--shell", "/usr/sbin/nologin", DEDICATED_USER])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("running as root with no `postgres` user, and cannot run useradd: {e}")
        })?;
    // Another test process may have created it in the meantime: look again either way.
    lookup_user(DEDICATED_USER).map(Some).ok_or_else(|| {
        format!(
            "running as root with no `postgres` user, and `useradd --system {DEDICATED_USER}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn lookup_user(name: &str) -> Option<PgUser> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .arg(flag)
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some(PgUser {
        name: name.to_owned(),
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// A new directory `testpg-<pid>-<time>` under the temporary directory, with `sock/` in
/// it, both owned by the user PostgreSQL runs as, and initdb's `data/` created in it.
fn make_cluster_dir(user: Option<&PgUser>) -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut dir = std::env::temp_dir();
    dir.push(format!("testpg-{}-{nanos}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let made = (|| -> Result<(), String> {
        let sock = dir.join("sock");
        fs::create_dir(&sock).map_err(|e| format!("cannot create {}: {e}", sock.display()))?;
        for path in [&dir, &sock] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
            if let Some(user) = user {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .map_err(|e| format!("cannot hand {} to {}: {e}", path.display(), user.name))?;
            }
        }
        Ok(())
    })();
    if let Err(why) = made {
        let _ = fs::remove_dir_all(&dir);
        return Err(why);
    }
    Ok(dir)
}

/// A command run as `user` (through runuser) or as this process's user.
fn command_as(user: Option<&PgUser>, program: &Path) -> Command {
    let mut command = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", &user.name, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    command
        .current_dir("/")
        .stdin(Stdio::null())
        .env_remove("PGDATA")
        .env_remove("PGOPTIONS");
    command
}

fn failed(what: &str, output: &Output) -> String {
    format!(
        "{what} ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// initdb, the settings, then the watchdog, on a new port until one is not taken.
fn start_in(
    bin: &Path,
    dir: &Path,
    user: Option<&PgUser>,
) -> Result<(u16, Child, ChildStdin), String> {
    let data = dir.join("data");
    let output = command_as(user, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !output.status.success() {
        return Err(failed("initdb failed", &output));
    }
    let mut settings =
        String::from("\n# testpg: loopback only, durable commits, many connections\n");
    let _ = writeln!(settings, "listen_addresses = '127.0.0.1'");
    let _ = writeln!(
        settings,
        "unix_socket_directories = '{}'",
        dir.join("sock").display()
    );
    for line in [
        "max_connections = 200",
        "fsync = on",
        "synchronous_commit = on",
        "full_page_writes = on",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
    ] {
        let _ = writeln!(settings, "{line}");
    }
    append(&data.join("postgresql.conf"), &settings)?;
    fs::write(
        data.join("pg_hba.conf"),
        "# testpg: trust, from this machine only\nlocal all all trust\nhost all all 127.0.0.1/32 trust\n",
    )
    .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;

    let log = dir.join("postgres.log");
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let mut watchdog = Command::new("sh");
        watchdog
            .arg("-c")
            .arg(WATCHDOG)
            .arg("testpg-watchdog")
            .arg(bin)
            .arg(&data)
            .arg(&log)
            .arg(port.to_string())
            .arg(dir)
            .arg(user.map(|u| OsString::from(&u.name)).unwrap_or_default())
            .arg(START_TIMEOUT_SECONDS.to_string())
            .current_dir("/")
            .env_remove("PGDATA")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Out of the terminal's process group: a Ctrl-C reaches the tests, not it.
            .process_group(0);
        let mut child = watchdog
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the watchdog has no pipes".into());
        };
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() == "ready" {
            return Ok((port, child, stdin));
        }
        drop(stdin);
        let _ = child.wait();
        let server_log = read_lossy(&log);
        let pg_ctl = read_lossy(&dir.join("pg_ctl.out"));
        last = format!(
            "postgres did not start on port {port}:\n{}\n{}",
            tail(&pg_ctl),
            tail(&server_log)
        );
        let clash = [
            "Address already in use",
            "could not bind",
            "could not create any TCP/IP sockets",
        ]
        .iter()
        .any(|s| server_log.contains(s));
        if !clash {
            return Err(last);
        }
        // Start the next attempt's log afresh, so that only its own messages are read.
        let _ = fs::OpenOptions::new().write(true).truncate(true).open(&log);
    }
    Err(format!("{last}\n(gave up after {PORT_ATTEMPTS} ports)"))
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no local address: {e}"))
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last 20 lines.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
