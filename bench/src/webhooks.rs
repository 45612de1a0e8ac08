//! W7: webhooks through the transactional outbox (issue 11).
//!
//! The harness runs `plan.w7_webhooks` receivers on 127.0.0.1:0 (a minimal HTTP/1.1
//! server each, answering 200 at once) and, against fresh servers started with
//! `SHIPLOG_WEBHOOK_ALLOW_PRIVATE=true`, alternates write phases with 0 and with
//! `plan.w7_webhooks` active webhooks (0, N, 0, N): the same createDeployment write from
//! the same number of clients as the other write workloads. After each phase with
//! webhooks it waits (bounded by `plan.w7_tail`) until every event reached every
//! receiver. Then, on the last server, creates at a fixed rate give the delivery latency
//! when the dispatcher is not behind. Latency is receive time minus the event's
//! `occurredAt` (`data.event.occurredAt` in the body), as W4 measures it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::load::{create_vars, post, Tally, CREATE};
use crate::server::Server;
use crate::{percentile, BenchError, Plan, Row};

/// A valid Standard Webhooks secret (`whsec_` + base64 of 24 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CREATE_WEBHOOK: &str =
    "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { id active } }";
/// The largest request head a receiver accepts.
const MAX_HEAD: usize = 16 * 1024;

/// What the receivers got since the last [`Inbox::take`].
#[derive(Default)]
struct Inbox {
    /// `webhook-id` of every delivery received (one per event and webhook).
    seen: HashSet<String>,
    /// Receive time minus the event's `occurredAt`, in milliseconds, one per delivery.
    latencies_ms: Vec<u64>,
    /// Deliveries received again (same `webhook-id`): allowed (at least once), counted.
    duplicates: u64,
    /// Requests the receiver could not read (no id, no `occurredAt`, bad HTTP).
    unreadable: u64,
}

type SharedInbox = Arc<Mutex<Inbox>>;

fn lock(inbox: &SharedInbox) -> std::sync::MutexGuard<'_, Inbox> {
    inbox
        .lock()
        .expect("the inbox lock is poisoned (a receiver panicked)")
}

/// Starts `n` receivers; returns their URLs, their shared inbox, and their tasks.
async fn start_receivers(
    n: usize,
) -> Result<(Vec<String>, SharedInbox, Vec<JoinHandle<()>>), BenchError> {
    let inbox = SharedInbox::default();
    let mut urls = Vec::new();
    let mut tasks = Vec::new();
    for k in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("http://{}/hook/{k}", listener.local_addr()?));
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    if let Err(err) = receive(stream, &inbox).await {
                        eprintln!("  receiver: {err}");
                        lock(&inbox).unreadable += 1;
                    }
                });
            }
        }));
    }
    Ok((urls, inbox, tasks))
}

/// Serves one keep-alive connection: reads each request (head and a `content-length`
/// body), answers 200 with no body, then records the delivery.
async fn receive(mut stream: TcpStream, inbox: &SharedInbox) -> Result<(), String> {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err("a request head over 16 KiB".to_owned());
            }
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                // The sender closed the connection between requests (or mid-head).
                return Ok(());
            }
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| e.to_string())?;
        let mut length = None;
        let mut id = None;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
            } else if name.eq_ignore_ascii_case("webhook-id") {
                id = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!("transfer-encoding {value} is not supported"));
            }
        }
        let length = length.ok_or("a request without content-length")?;
        // The body.
        while buf.len() < head_end + length {
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("the connection closed mid-body".to_owned());
            }
        }
        let received_ms = chrono::Utc::now().timestamp_millis();
        stream.write_all(OK).await.map_err(|e| e.to_string())?;
        let occurred = serde_json::from_slice::<Value>(&buf[head_end..head_end + length])
            .ok()
            .and_then(|body| {
                let at = body["data"]["event"]["occurredAt"].as_str()?.to_owned();
                chrono::DateTime::parse_from_rfc3339(&at).ok()
            });
        buf.drain(..head_end + length);
        let mut inbox = lock(inbox);
        match (id, occurred) {
            (Some(id), Some(at)) => {
                if inbox.seen.insert(id) {
                    let ms = (received_ms - at.timestamp_millis()).max(0) as u64;
                    inbox.latencies_ms.push(ms);
                } else {
                    inbox.duplicates += 1;
                }
            }
            _ => inbox.unreadable += 1,
        }
    }
}

/// Waits until the receivers hold `expected` distinct deliveries or `limit` passes;
/// returns how many they hold and how long it took.
async fn await_deliveries(
    inbox: &SharedInbox,
    expected: usize,
    limit: Duration,
) -> (usize, Duration) {
    let started = Instant::now();
    loop {
        let received = lock(inbox).seen.len();
        if received >= expected || started.elapsed() >= limit {
            return (received, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `clients` concurrent clients create deployments for `run`.
async fn write_phase(server: &Server, clients: usize, run: Duration) -> (Tally, Duration) {
    let client = reqwest::Client::new();
    let url = server.url("/graphql");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + run;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let result = post(&client, &url, CREATE, create_vars(i)).await;
                    tally.record(t, &result);
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::new();
    for task in tasks {
        match task.await {
            Ok(tally) => tallies.push(tally),
            Err(err) => {
                eprintln!("  a writer task failed: {err}");
                tallies.push(Tally {
                    failed: 1,
                    ..Tally::default()
                });
            }
        }
    }
    let elapsed = started.elapsed();
    (Tally::merge(tallies), elapsed)
}

/// One phase's outcome.
struct Phase {
    webhooks: usize,
    writes: Tally,
    elapsed: Duration,
    /// Distinct deliveries expected and received, and the wait after the writes ended.
    expected: usize,
    received: usize,
    drain: Duration,
    peak_rss_mb: Option<f64>,
}

impl Phase {
    fn throughput(&self) -> f64 {
        self.writes.ok as f64 / self.elapsed.as_secs_f64()
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// W7: write throughput with 0 and with N webhooks, delivery latency and completeness.
pub async fn w7_webhooks(plan: &Plan, binary: &Path, dir: &Path) -> Result<Vec<Row>, BenchError> {
    let n = plan.w7_webhooks;
    let (urls, inbox, receivers) = start_receivers(n).await?;
    let settings = [("SHIPLOG_WEBHOOK_ALLOW_PRIVATE", "true")];
    let client = reqwest::Client::new();
    let mut phases = Vec::new();
    let mut loaded_latencies: Vec<u64> = Vec::new();
    let (mut duplicates, mut unreadable) = (0u64, 0u64);
    let mut setup_failures = 0u64;
    let mut last = None;
    let order = [0, n, 0, n];
    for (p, &webhooks) in order.iter().enumerate() {
        let db = dir.join(format!("w7-{p}-{webhooks}.db"));
        let server = Server::start_with_env(binary, &db, &settings).await?;
        let url = server.url("/graphql");
        for hook in urls.iter().take(webhooks) {
            let created = post(
                &client,
                &url,
                CREATE_WEBHOOK,
                json!({ "input": { "url": hook, "secret": SECRET, "actor": "bench" } }),
            )
            .await;
            match created {
                Ok(data) if data["createWebhook"]["active"] == json!(true) => {}
                other => {
                    eprintln!("  createWebhook failed: {other:?}");
                    setup_failures += 1;
                }
            }
        }
        drop(std::mem::take(&mut *lock(&inbox)));
        let (writes, elapsed) = write_phase(&server, plan.clients, plan.w7_phase).await;
        let expected = writes.ok as usize * webhooks;
        let (received, drain) = await_deliveries(&inbox, expected, plan.w7_tail).await;
        let got = std::mem::take(&mut *lock(&inbox));
        loaded_latencies.extend(got.latencies_ms.iter().map(|ms| ms * 1000));
        duplicates += got.duplicates;
        unreadable += got.unreadable;
        eprintln!(
            "  W7 phase {}: {webhooks} webhooks, {:.0} creates/s, {received} of {expected} deliveries, {:.1} s after the writes",
            p + 1,
            writes.ok as f64 / elapsed.as_secs_f64(),
            drain.as_secs_f64()
        );
        phases.push(Phase {
            webhooks,
            writes,
            elapsed,
            expected,
            received,
            drain,
            peak_rss_mb: server.peak_rss_mb(),
        });
        if p + 1 == order.len() {
            last = Some(server);
        } else {
            server.stop().await?;
        }
    }
    let server = last.ok_or("W7 ran no phase")?;

    // Latency when the dispatcher is not behind: creates at a fixed rate, one at a time.
    let url = server.url("/graphql");
    let mut paced = Tally::default();
    let count = (plan.w7_phase.as_secs_f64() * f64::from(plan.w7_rate)) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(plan.w7_rate)));
    for i in 0..count {
        ticker.tick().await;
        let t = Instant::now();
        let result = post(&client, &url, CREATE, create_vars(1_000_000 + i)).await;
        paced.record(t, &result);
    }
    let paced_expected = paced.ok as usize * n;
    let (paced_received, _) = await_deliveries(&inbox, paced_expected, plan.w7_tail).await;
    let got = std::mem::take(&mut *lock(&inbox));
    duplicates += got.duplicates;
    unreadable += got.unreadable;
    let mut paced_latencies: Vec<u64> = got.latencies_ms.iter().map(|ms| ms * 1000).collect();
    paced_latencies.sort_unstable();
    let paced_peak = server.peak_rss_mb();
    server.stop().await?;
    for receiver in receivers {
        receiver.abort();
    }

    // Rows.
    let throughput_of = |webhooks: usize| -> Vec<f64> {
        phases
            .iter()
            .filter(|p| p.webhooks == webhooks)
            .map(Phase::throughput)
            .collect()
    };
    let (without, with) = (throughput_of(0), throughput_of(n));
    let ratio = match (mean(&with), mean(&without)) {
        (Some(w), Some(wo)) if wo > 0.0 => Some(w / wo),
        _ => None,
    };
    let write_row = |webhooks: usize, values: &[f64]| {
        let of: Vec<&Phase> = phases.iter().filter(|p| p.webhooks == webhooks).collect();
        let tally = Tally::merge(
            of.iter()
                .map(|p| Tally {
                    latencies_us: p.writes.latencies_us.clone(),
                    ok: p.writes.ok,
                    failed: p.writes.failed,
                })
                .collect(),
        );
        Row {
            workload: format!("W7 create, {webhooks} webhooks, {} clients", plan.clients),
            throughput: mean(values),
            unit: "mutations/s".to_owned(),
            p50_ms: percentile(&tally.latencies_us, 50.0),
            p99_ms: percentile(&tally.latencies_us, 99.0),
            peak_rss_mb: of.iter().filter_map(|p| p.peak_rss_mb).reduce(f64::max),
            failures: tally.failed,
            note: format!("mean of {} runs: {}", values.len(), list(values)),
        }
    };
    let mut with_row = write_row(n, &with);
    if let Some(ratio) = ratio {
        with_row.note = format!(
            "{} ; ratio {n}/0 webhooks = {ratio:.2} (goal >= 0.50: {})",
            with_row.note,
            if ratio >= 0.5 { "met" } else { "NOT met" }
        );
    }
    let loaded: Vec<&Phase> = phases.iter().filter(|p| p.webhooks == n).collect();
    let expected: usize = loaded.iter().map(|p| p.expected).sum();
    let received: usize = loaded.iter().map(|p| p.received.min(p.expected)).sum();
    let missing =
        (expected - received) as u64 + (paced_expected - paced_received.min(paced_expected)) as u64;
    let busy: f64 = loaded
        .iter()
        .map(|p| (p.elapsed + p.drain).as_secs_f64())
        .sum();
    let drains: Vec<String> = loaded
        .iter()
        .map(|p| format!("{:.1}", p.drain.as_secs_f64()))
        .collect();
    loaded_latencies.sort_unstable();
    let rows = vec![
        write_row(0, &without),
        with_row,
        Row {
            workload: format!("W7 delivery under write load, {n} webhooks"),
            throughput: (busy > 0.0).then(|| received as f64 / busy),
            unit: "deliveries/s".to_owned(),
            p50_ms: percentile(&loaded_latencies, 50.0),
            p99_ms: percentile(&loaded_latencies, 99.0),
            peak_rss_mb: loaded.iter().filter_map(|p| p.peak_rss_mb).reduce(f64::max),
            failures: (expected - received) as u64,
            note: format!(
                "commit-to-receive; {received} of {expected} received; last one {} s after the writes ended",
                drains.join(" s, ")
            ),
        },
        Row {
            workload: format!("W7 delivery, {n} webhooks, {}/s commits", plan.w7_rate),
            throughput: Some(paced_received as f64 / plan.w7_phase.as_secs_f64()),
            unit: "deliveries/s".to_owned(),
            p50_ms: percentile(&paced_latencies, 50.0),
            p99_ms: percentile(&paced_latencies, 99.0),
            peak_rss_mb: paced_peak,
            failures: paced.failed + (paced_expected - paced_received.min(paced_expected)) as u64 + setup_failures + unreadable,
            note: format!(
                "commit-to-receive; {paced_received} of {paced_expected} received; {missing} missing in W7; {duplicates} duplicates; {unreadable} unreadable"
            ),
        },
    ];
    Ok(rows)
}
