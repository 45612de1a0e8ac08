//! The cluster itself: it starts, hands out separate databases, has the settings the
//! crate promises, and goes away with the process that started it, however it ends.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn fresh_databases_are_separate_and_empty() {
    let cluster = testpg::cluster();
    let a = cluster.fresh_database();
    let b = cluster.fresh_database();
    assert_ne!(a, b);
    let name = |url: &str| url.rsplit('/').next().expect("a database name").to_owned();
    let (a, b) = (name(&a), name(&b));
    cluster
        .psql(&a, "CREATE TABLE t (x BIGINT)")
        .expect("a table in a");
    let tables = cluster
        .psql(
            &b,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        )
        .expect("query b");
    assert_eq!(tables.trim(), "0", "b sees nothing of a");
}

#[test]
fn the_cluster_has_the_promised_settings() {
    let cluster = testpg::cluster();
    let show = |setting: &str| {
        cluster
            .psql("postgres", &format!("SHOW {setting}"))
            .unwrap_or_else(|e| panic!("SHOW {setting}: {e}"))
            .trim()
            .to_owned()
    };
    assert_eq!(show("fsync"), "on");
    assert_eq!(show("synchronous_commit"), "on");
    assert_eq!(show("max_connections"), "200");
    assert_eq!(show("listen_addresses"), "127.0.0.1");
    assert_eq!(show("server_encoding"), "UTF8");
    assert_eq!(show("lc_collate"), "C");
    assert_eq!(show("port"), cluster.port().to_string());
    assert!(cluster
        .admin_url()
        .starts_with("postgres://postgres@127.0.0.1:"));
}

/// Run by `a_killed_test_process_leaves_no_cluster_behind` in a child process: starts a
/// cluster, says where, and is killed (SIGKILL: no exit hook, no unwinding, no core dump).
#[test]
fn child_that_aborts() {
    if std::env::var_os("TESTPG_CHILD_THAT_ABORTS").is_none() {
        return;
    }
    let cluster = testpg::cluster();
    println!("CLUSTER {} {}", cluster.port(), cluster.dir().display());
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    // SAFETY: kill has no memory-safety preconditions; this process ends here.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL");
}

#[test]
fn a_killed_test_process_leaves_no_cluster_behind() {
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_that_aborts",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TESTPG_CHILD_THAT_ABORTS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child test process");
    let stdout = child.stdout.take().expect("its stdout");
    let mut found = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        // libtest prints the test's name on the same line first.
        if let Some(at) = line.find("CLUSTER ") {
            let rest = &line[at + "CLUSTER ".len()..];
            let (port, dir) = rest.split_once(' ').expect("port and dir");
            found = Some((port.parse::<u16>().expect("a port"), PathBuf::from(dir)));
        }
    }
    let status = child.wait().expect("the child ends");
    assert!(!status.success(), "the child is killed");
    let (port, dir) = found.expect("the child started a cluster");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listening = TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !listening && !dir.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the child died: listening {listening}, {} exists {}",
            dir.display(),
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
