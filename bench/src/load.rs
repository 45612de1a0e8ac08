//! The workloads. Each starts its own server over its own database, so that each peak
//! RSS figure belongs to one workload.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::seed::{seed, service};
use crate::server::Server;
use crate::{path_str, percentile, BenchError, Plan, Row};

pub(crate) const CREATE: &str = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { deployment { id status } event { cursor } } }";

pub(crate) fn create_vars(i: usize) -> Value {
    json!({ "input": {
        "service": service(i), "environment": "staging", "version": format!("v2.{i}"),
        "requester": "alice", "workRefs": ["JIRA-7"], "risk": "low",
        "rollbackPlan": "redeploy the previous version" } })
}

/// W1's creation: every lifecycle has a service of its own, since starting a deployment
/// while another of its (service, environment) is STARTED, or after a newer one
/// succeeded, is refused (ENVIRONMENT_BUSY, OUTDATED) and the clients run in parallel.
fn lifecycle_vars(i: usize) -> Value {
    let mut vars = create_vars(i);
    vars["input"]["service"] = json!(format!("w1-{i:07}"));
    vars
}

fn act(mutation: &str, input_type: &str) -> String {
    format!("mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ deployment {{ id status }} event {{ cursor }} }} }}")
}

const EVENT_FIELDS: &str = "id cursor deploymentId kind actor note fromStatus toStatus occurredAt";
const DEPLOYMENT_FIELDS: &str = "id service environment version requester workRefs risk rollbackPlan status reviewedBy reviewedAt createdAt updatedAt";

/// W2's document: a page with every field and nested events.
pub fn dashboard(total_count: bool, filter: bool) -> String {
    format!(
        "query($first: Int{}) {{ deployments(first: $first{}) {{ {} \
         pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} \
         edges {{ cursor node {{ {DEPLOYMENT_FIELDS} events {{ {EVENT_FIELDS} }} }} }} }} }}",
        if filter { ", $service: String" } else { "" },
        if filter {
            ", filter: { service: $service }"
        } else {
            ""
        },
        if total_count { "totalCount" } else { "" },
    )
}

/// Posts a document; `Err` for a transport failure, a status other than 200, or a
/// response with errors.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
) -> Result<Value, String> {
    let response = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if let Some(errors) = body.get("errors") {
        return Err(errors.to_string());
    }
    Ok(body["data"].clone())
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
}

impl Tally {
    pub(crate) fn merge(tallies: Vec<Tally>) -> Tally {
        let mut all = Tally::default();
        for t in tallies {
            all.latencies_us.extend(t.latencies_us);
            all.ok += t.ok;
            all.failed += t.failed;
        }
        all.latencies_us.sort_unstable();
        all
    }

    pub(crate) fn record(&mut self, started: Instant, result: &Result<Value, String>) {
        self.latencies_us.push(started.elapsed().as_micros() as u64);
        match result {
            Ok(_) => self.ok += 1,
            Err(err) => {
                if self.failed < 3 {
                    eprintln!("  failed: {err}");
                }
                self.failed += 1;
            }
        }
    }
}

fn row(workload: &str, unit: &str, tally: &Tally, elapsed: Duration, server: &Server) -> Row {
    Row {
        workload: workload.to_owned(),
        throughput: Some(tally.ok as f64 / elapsed.as_secs_f64()),
        unit: unit.to_owned(),
        p50_ms: percentile(&tally.latencies_us, 50.0),
        p99_ms: percentile(&tally.latencies_us, 99.0),
        peak_rss_mb: server.peak_rss_mb(),
        failures: tally.failed,
        note: String::new(),
    }
}

/// W1: create, approve, start, succeed, by `clients` concurrent clients.
/// W1: `plan.clients` clients each walking deployments through their lifecycle; also
/// the mean size of the server's write groups.
pub async fn w1_write(
    plan: &Plan,
    binary: &Path,
    db: &Path,
) -> Result<(Row, Option<WriterStats>), BenchError> {
    let server = Server::start(binary, db).await?;
    let client = reqwest::Client::new();
    let url = server.url("/graphql");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + plan.run;
    let tasks: Vec<_> = (0..plan.clients)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let steps = [
                    (act("approveDeployment", "ApproveDeploymentInput"), "bob"),
                    (act("startDeployment", "StartDeploymentInput"), "deploybot"),
                    (
                        act("succeedDeployment", "SucceedDeploymentInput"),
                        "deploybot",
                    ),
                ];
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let created = post(&client, &url, CREATE, lifecycle_vars(i)).await;
                    tally.record(t, &created);
                    let Ok(created) = created else { continue };
                    let id = created["createDeployment"]["deployment"]["id"].clone();
                    for (doc, actor) in &steps {
                        let t = Instant::now();
                        let result = post(
                            &client,
                            &url,
                            doc,
                            json!({ "input": { "id": id, "actor": actor } }),
                        )
                        .await;
                        tally.record(t, &result);
                    }
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await?);
    }
    let elapsed = started.elapsed();
    let tally = Tally::merge(tallies);
    let row = row(
        &format!("W1 write lifecycle, {} clients", plan.clients),
        "mutations/s",
        &tally,
        elapsed,
        &server,
    );
    let groups = writer_stats(&client, &server.url("/metrics")).await;
    server.stop().await?;
    Ok((row, groups))
}

/// What the server's writer did with W1's writes, from its metrics.
#[derive(Debug, Clone, Copy)]
pub struct WriterStats {
    /// Writes per group, on average.
    pub mean_group: f64,
    /// Mean seconds per group in its statements, and in its COMMIT.
    pub execute: f64,
    pub commit: f64,
}

impl WriterStats {
    pub fn describe(&self) -> String {
        format!(
            "mean write group {:.1}, {}",
            self.mean_group,
            phases(self.execute, self.commit)
        )
    }
}

/// A group's mean time in its statements and in its COMMIT.
fn phases(execute: f64, commit: f64) -> String {
    format!(
        "{:.0} µs statements + {:.0} µs COMMIT per group",
        execute * 1e6,
        commit * 1e6
    )
}

async fn writer_stats(client: &reqwest::Client, url: &str) -> Option<WriterStats> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
    };
    let (sum, count) = (
        value("shiplog_write_group_size_sum")?,
        value("shiplog_write_group_size_count")?,
    );
    if count <= 0.0 {
        return None;
    }
    let phase = |phase: &str| -> Option<f64> {
        let sum = value(&format!(
            "shiplog_write_group_duration_seconds_sum{{phase=\"{phase}\"}}"
        ))?;
        Some(sum / count)
    };
    Some(WriterStats {
        mean_group: sum / count,
        execute: phase("execute")?,
        commit: phase("commit")?,
    })
}

/// W2: a page of 50 with every field and events over the seeded database.
pub async fn w2_dashboard(plan: &Plan, binary: &Path, db: &Path) -> Result<Row, BenchError> {
    let server = Server::start(binary, db).await?;
    let client = reqwest::Client::new();
    let url = server.url("/graphql");
    let started = Instant::now();
    let readers = dashboard_readers(plan.clients, &client, &url, started + plan.run);
    let mut tallies = Vec::new();
    for t in readers {
        tallies.push(t.await?);
    }
    let elapsed = started.elapsed();
    let tally = Tally::merge(tallies);
    let mut row = row(
        &format!("W2 dashboard page of 50, {} clients", plan.clients),
        "requests/s",
        &tally,
        elapsed,
        &server,
    );
    row.note = format!(
        "{} deployments x 4 events, with totalCount",
        plan.w2_deployments
    );
    server.stop().await?;
    Ok(row)
}

/// `n` clients loading W2's page (with `totalCount`) over and over until `deadline`.
fn dashboard_readers(
    n: usize,
    client: &reqwest::Client,
    url: &str,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    let doc = Arc::new(dashboard(true, false));
    (0..n)
        .map(|_| {
            let (client, url, doc) = (client.clone(), url.to_owned(), doc.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let result = dashboard_page(&client, &url, &doc).await;
                    tally.record(t, &result);
                }
                tally
            })
        })
        .collect()
}

/// One W2 page of 50: an error unless it has its 50 edges.
async fn dashboard_page(client: &reqwest::Client, url: &str, doc: &str) -> Result<Value, String> {
    let data = post(client, url, doc, json!({ "first": 50 })).await?;
    match data["deployments"]["edges"].as_array().map(Vec::len) {
        Some(50) => Ok(data),
        other => Err(format!("expected 50 edges, got {other:?}")),
    }
}

/// W8: reads and writes at once on one server over W2's seeded database: `w8_readers`
/// clients load W2's dashboard page while `w8_writers` clients create deployments (W1's
/// create document), for `w8_run`. One row for each side.
pub async fn w8_mixed(plan: &Plan, binary: &Path, db: &Path) -> Result<Vec<Row>, BenchError> {
    let server = Server::start(binary, db).await?;
    let client = reqwest::Client::new();
    let url = server.url("/graphql");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + plan.w8_run;
    let readers = dashboard_readers(plan.w8_readers, &client, &url, deadline);
    let writers: Vec<_> = (0..plan.w8_writers)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    // Numbered past the seeded versions; the services are the seed's, so
                    // the pages the readers load fill with the new deployments.
                    let i = 1_000_000 + next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let result = post(&client, &url, CREATE, create_vars(i)).await;
                    tally.record(t, &result);
                }
                tally
            })
        })
        .collect();
    let mut read_tallies = Vec::new();
    for t in readers {
        read_tallies.push(t.await?);
    }
    let mut write_tallies = Vec::new();
    for t in writers {
        write_tallies.push(t.await?);
    }
    let elapsed = started.elapsed();
    let (reads, writes) = (Tally::merge(read_tallies), Tally::merge(write_tallies));
    let (r, w) = (plan.w8_readers, plan.w8_writers);
    let mut read_row = row(
        &format!("W8 mixed: reads, {r} readers + {w} writers"),
        "requests/s",
        &reads,
        elapsed,
        &server,
    );
    read_row.note = format!(
        "W2 page of 50 with totalCount, {} deployments seeded",
        plan.w2_deployments
    );
    let mut write_row = row(
        &format!("W8 mixed: creates, {w} writers + {r} readers"),
        "creates/s",
        &writes,
        elapsed,
        &server,
    );
    write_row.note = "W1's create document, while the readers run".to_owned();
    server.stop().await?;
    Ok(vec![read_row, write_row])
}

/// The SQL statements one W2 page costs, for several page sizes (in process).
pub async fn statements_per_page(db: &Path) -> Result<Row, BenchError> {
    let store =
        shiplog::store::Store::open(&shiplog::store::StoreConfig::new(path_str(db))).await?;
    let schema = shiplog::graphql::schema(store.clone(), Default::default());
    let doc = dashboard(true, false);
    let mut counts = Vec::new();
    let mut failures = 0;
    for first in [1, 10, 50, 100] {
        let before = store.read_statements();
        let response = schema
            .execute(async_graphql::Request::new(&doc).variables(
                async_graphql::Variables::from_json(json!({ "first": first })),
            ))
            .await;
        if !response.errors.is_empty() {
            failures += 1;
        }
        counts.push(format!(
            "first={first}: {}",
            store.read_statements() - before
        ));
    }
    store.close().await?;
    Ok(Row {
        workload: "SQL statements per W2 page".to_owned(),
        failures,
        note: counts.join(", "),
        ..Row::default()
    })
}

/// W3: single-client latency of a filtered page at two database sizes.
pub async fn w3_scale(plan: &Plan, binary: &Path, dir: &Path) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    for size in [plan.w3_small, plan.w3_large] {
        let db = dir.join(format!("w3-{size}.db"));
        seed(binary, &db, size, false).await?;
        let server = Server::start(binary, &db).await?;
        let client = reqwest::Client::new();
        let url = server.url("/graphql");
        let doc = dashboard(false, true);
        let mut tally = Tally::default();
        let started = Instant::now();
        for i in 0..plan.w3_requests {
            let t = Instant::now();
            let result = post(
                &client,
                &url,
                &doc,
                json!({ "first": 50, "service": service(i) }),
            )
            .await;
            tally.record(t, &result);
        }
        let elapsed = started.elapsed();
        tally.latencies_us.sort_unstable();
        let mut row = row(
            &format!("W3 filtered page, {size} deployments"),
            "requests/s",
            &tally,
            elapsed,
            &server,
        );
        row.note = "1 client, filter service, no totalCount".to_owned();
        server.stop().await?;
        rows.push(row);
    }
    if let (Some(small), Some(large)) = (rows[0].p50_ms, rows[1].p50_ms) {
        rows[1].note = format!(
            "{} ; p50 ratio large/small = {:.2}x",
            rows[1].note,
            large / small
        );
    }
    Ok(rows)
}

/// Read buffer of each W4 subscriber: an event message is well under 1 KiB.
const W4_READ_BUFFER: usize = 4096;

/// W4: `subscribers` WebSocket subscribers while events commit at a fixed rate, then a burst.
pub async fn w4_fanout(
    plan: &Plan,
    binary: &Path,
    db: &Path,
    subscribers: usize,
) -> Result<Vec<Row>, BenchError> {
    let server = Server::start(binary, db).await?;
    let rss_before = server.rss_kb().unwrap_or(0);
    let target = Arc::new(AtomicUsize::new(usize::MAX));
    let ready = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(tokio::sync::Semaphore::new(64));
    let give_up = Instant::now() + plan.run * 4 + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let (addr, target, ready, connecting) = (
            server.addr,
            target.clone(),
            ready.clone(),
            connecting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = connecting
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            let mut request = format!("ws://{addr}/graphql/ws")
                .into_client_request()
                .map_err(|e| e.to_string())?;
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("graphql-transport-ws"),
            );
            // A small read buffer: tungstenite zeroes its whole read buffer (128 KiB by
            // default) for every read, which cost this client more than the server
            // spent delivering (a perf profile of W4 at 5,000 subscribers).
            let config = WebSocketConfig::default().read_buffer_size(W4_READ_BUFFER);
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                    .await
                    .map_err(|e| e.to_string())?;
            ws.send(Message::text(
                json!({ "type": "connection_init" }).to_string(),
            ))
            .await
            .map_err(|e| e.to_string())?;
            ws.send(Message::text(
                json!({ "id": "1", "type": "subscribe",
                "payload": { "query": "subscription { deploymentEvents { id occurredAt } }" } })
                .to_string(),
            ))
            .await
            .map_err(|e| e.to_string())?;
            drop(permit);
            let mut latencies_ms = Vec::new();
            let mut acked = false;
            loop {
                if latencies_ms.len() >= target.load(Ordering::Relaxed) || Instant::now() > give_up
                {
                    return Ok::<_, String>(latencies_ms);
                }
                let Ok(msg) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await
                else {
                    continue;
                };
                let Some(Ok(Message::Text(text))) = msg else {
                    if matches!(msg, None | Some(Err(_))) {
                        return Ok(latencies_ms);
                    }
                    continue;
                };
                let now_ms = chrono::Utc::now().timestamp_millis();
                let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                match value["type"].as_str() {
                    Some("connection_ack") if !acked => {
                        acked = true;
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("next") => {
                        let at = value["payload"]["data"]["deploymentEvents"]["occurredAt"]
                            .as_str()
                            .unwrap_or("");
                        let at =
                            chrono::DateTime::parse_from_rfc3339(at).map_err(|e| e.to_string())?;
                        latencies_ms.push((now_ms - at.timestamp_millis()).max(0) as u64);
                    }
                    Some("ping") => {
                        let _ = ws
                            .send(Message::text(json!({ "type": "pong" }).to_string()))
                            .await;
                    }
                    _ => {}
                }
            }
        }));
    }
    while ready.load(Ordering::Relaxed) < subscribers {
        if Instant::now() > give_up {
            return Err("subscribers did not connect in time".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the server register every subscription before the first commit.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_subscribed = server.rss_kb().unwrap_or(0);

    // Phase A: a fixed commit rate.
    let client = reqwest::Client::new();
    let url = server.url("/graphql");
    let mut writes = Tally::default();
    let interval = Duration::from_secs_f64(1.0 / f64::from(plan.w4_rate));
    let phase_a = (plan.run.as_secs_f64() * f64::from(plan.w4_rate)) as usize;
    let mut ticker = tokio::time::interval(interval);
    for i in 0..phase_a {
        ticker.tick().await;
        let t = Instant::now();
        let result = post(&client, &url, CREATE, create_vars(i)).await;
        writes.record(t, &result);
    }
    // Phase B: a burst as fast as 16 writers go, to find deliveries/s at saturation.
    let burst_started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let burst: Vec<_> = (0..16)
        .map(|w| {
            let (client, url, done) = (client.clone(), url.clone(), done.clone());
            let n = plan.w4_burst / 16 + usize::from(w < plan.w4_burst % 16);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for i in 0..n {
                    let t = Instant::now();
                    let result =
                        post(&client, &url, CREATE, create_vars(100_000 + w * 1000 + i)).await;
                    tally.record(t, &result);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            })
        })
        .collect();
    let mut burst_tallies = Vec::new();
    for b in burst {
        burst_tallies.push(b.await?);
    }
    let burst_tally = Tally::merge(burst_tallies);
    let expected = phase_a + plan.w4_burst;
    target.store(
        writes.ok as usize + burst_tally.ok as usize,
        Ordering::Relaxed,
    );

    let mut missing = 0u64;
    let mut latencies: Vec<u64> = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(received) => {
                missing += (expected - received.len().min(expected)) as u64;
                latencies.extend(received.iter().take(phase_a).map(|ms| ms * 1000));
            }
            Err(err) => {
                eprintln!("  subscriber failed: {err}");
                missing += expected as u64;
            }
        }
    }
    let burst_elapsed = burst_started.elapsed();
    latencies.sort_unstable();
    let per_subscriber_kb = rss_subscribed.saturating_sub(rss_before) as f64 / subscribers as f64;
    let peak = server.peak_rss_mb();
    server.stop().await?;
    Ok(vec![
        Row {
            workload: format!("W4 fan-out {subscribers} subs, {}/s commits", plan.w4_rate),
            throughput: Some((subscribers * phase_a) as f64 / plan.run.as_secs_f64()),
            unit: "deliveries/s".to_owned(),
            p50_ms: percentile(&latencies, 50.0),
            p99_ms: percentile(&latencies, 99.0),
            peak_rss_mb: peak,
            failures: writes.failed + burst_tally.failed + missing,
            note: format!(
                "commit-to-delivery; {missing} deliveries missing of {}; {per_subscriber_kb:.1} KB/subscriber",
                subscribers * expected
            ),
        },
        Row {
            workload: format!("W4 fan-out {subscribers} subs, burst of {}", plan.w4_burst),
            throughput: Some((subscribers * plan.w4_burst) as f64 / burst_elapsed.as_secs_f64()),
            unit: "deliveries/s".to_owned(),
            peak_rss_mb: peak,
            note: "until every subscriber had every event".to_owned(),
            ..Row::default()
        },
    ])
}

/// W5: the real limit under W1's writes. W1's lifecycle (create, approve, start,
/// succeed), each write with the statements the server's writer runs for it, in the
/// server's words, straight on SQLite in process with nothing of the server around
/// them: one connection with the writer's settings (WAL, synchronous=FULL, foreign keys,
/// temp_store=MEMORY, stable query plans, busy timeout, prepared statements cached), in groups of
/// `plan.clients` writes (W1's concurrency: each of its clients has one write waiting
/// at a time, so a group holds the next step of each of `plan.clients` lifecycles),
/// each group `BEGIN IMMEDIATE`, per write `SAVEPOINT write` ... `RELEASE write`, then
/// `COMMIT`: one fsync per group.
pub async fn w5_raw_sqlite(plan: &Plan, db: &Path, size: usize) -> Result<Row, BenchError> {
    crate::seed::migrated(db).await?;
    let (path, run, size) = (db.to_path_buf(), plan.run, size.max(1));
    let mut groups = tokio::task::spawn_blocking(move || w5_groups(&path, run, size)).await??;
    groups.latencies_us.sort_unstable();
    let count = groups.latencies_us.len().max(1) as f64;
    Ok(Row {
        workload: format!("W5 raw SQLite W1 writes, groups of {size}"),
        throughput: Some(groups.writes as f64 / groups.elapsed.as_secs_f64()),
        unit: "mutations/s".to_owned(),
        p50_ms: percentile(&groups.latencies_us, 50.0),
        p99_ms: percentile(&groups.latencies_us, 99.0),
        failures: groups.failed,
        note: format!(
            "W1's mix; latency per group; WAL, synchronous=FULL, in process; {}{}",
            phases(
                groups.execute.as_secs_f64() / count,
                groups.commit.as_secs_f64() / count
            ),
            if size == plan.clients {
                "; G = W1's clients"
            } else {
                "; G = W1's mean group"
            }
        ),
        ..Row::default()
    })
}

/// What W5's groups did.
struct Groups {
    /// Each committed group, from BEGIN IMMEDIATE to COMMIT.
    latencies_us: Vec<u64>,
    writes: u64,
    /// Groups that failed (none should).
    failed: u64,
    elapsed: Duration,
    /// Time in the committed groups' statements, and in their COMMITs.
    execute: Duration,
    commit: Duration,
}

// The writer's statements for W1's writes: the very texts it runs.
use shiplog::store::statements as writer_sql;

/// One of W1's lifecycles, as far as it got.
struct Lifecycle {
    id: String,
    service: String,
    created_at: i64,
    /// Writes done: 0 before the create, 4 after the succeed.
    step: usize,
}

/// Runs W5's groups for `run`, on this thread.
fn w5_groups(db: &Path, run: Duration, size: usize) -> Result<Groups, BenchError> {
    use rusqlite::params;
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // The writer's connection settings (src/store/direct.rs), its 1 GiB mmap included.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;",
    )?;
    // And its stable plans: a `LIMIT ?` does not make a cached statement prepare again.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    // The server registers staging with W1's first create; here it is there beforehand.
    let now = chrono::Utc::now();
    let staging = shiplog::domain::Environment::register(
        "staging",
        &shiplog::domain::ProductionEnvironments::default(),
        uuid::Uuid::now_v7(),
        now,
    );
    conn.execute(
        "INSERT INTO environments (name, id, position, tier, required_approvals, \
         start_timeout_seconds, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
        params![
            staging.name,
            staging.id.to_string(),
            staging.position,
            staging.tier.as_str(),
            i64::from(staging.required_approvals),
            now.timestamp_millis(),
        ],
    )?;

    let event = |l: &Lifecycle, kind: &str, actor: &str, from: Option<&str>, to: &str, at: i64| {
        // The event's seq comes back, as the server reads it for the event it publishes.
        conn.prepare_cached(writer_sql::INSERT_EVENT.sqlite())?
            .query_row(
                params![
                    uuid::Uuid::now_v7().to_string(),
                    l.id,
                    l.service,
                    "staging",
                    kind,
                    actor,
                    None::<String>,
                    from,
                    to,
                    at,
                    "[]",
                ],
                |r| r.get::<_, i64>(0),
            )
            .map_err(BenchError::from)
    };
    // The writer reads the row whole before it decides.
    let read = |l: &Lifecycle| -> Result<String, BenchError> {
        let status = conn
            .prepare_cached(writer_sql::DEPLOYMENT.sqlite())?
            .query_row(params![l.id], |r| {
                for column in 0..19 {
                    let _: rusqlite::types::Value = r.get(column)?;
                }
                r.get::<_, String>(8)
            })?;
        Ok(status)
    };
    let transition = |l: &Lifecycle,
                      from: &str,
                      to: &str,
                      kind: &str,
                      actor: &str,
                      reviewed: bool,
                      started: bool|
     -> Result<(), BenchError> {
        let at = chrono::Utc::now().timestamp_millis();
        let changed = conn
            .prepare_cached(writer_sql::UPDATE_STATUS.sqlite())?
            .execute(params![
                to,
                reviewed.then_some("bob"),
                reviewed.then_some(at),
                at,
                started.then_some(at),
                None::<i64>,
                l.id,
                from,
            ])?;
        if changed != 1 {
            return Err(format!("{kind}: the compare-and-set changed {changed} rows").into());
        }
        event(l, kind, actor, Some(from), to, at)?;
        Ok(())
    };
    // The next write of lifecycle `l`, inside the group's transaction.
    let step = |l: &mut Lifecycle, i: usize| -> Result<(), BenchError> {
        conn.prepare_cached("SAVEPOINT write")?.execute([])?;
        match l.step {
            0 => {
                let required_approvals = conn
                    .prepare_cached(writer_sql::ENVIRONMENT.sqlite())?
                    .query_row(params!["staging"], |r| r.get::<_, i64>(4))?;
                // W1's create: a service of its own per lifecycle, as `lifecycle_vars`.
                l.service = format!("w1-{i:07}");
                l.id = uuid::Uuid::now_v7().to_string();
                let at = chrono::Utc::now().timestamp_millis();
                l.created_at = at;
                conn.prepare_cached(writer_sql::INSERT_DEPLOYMENT.sqlite())?
                    .execute(params![
                        l.id,
                        l.service,
                        "staging",
                        format!("v2.{i}"),
                        "alice",
                        "[\"JIRA-7\"]",
                        "low",
                        "redeploy the previous version",
                        "PENDING_APPROVAL",
                        None::<String>,
                        None::<i64>,
                        at,
                        at,
                        None::<String>,
                        required_approvals,
                        None::<String>,
                        None::<String>,
                        None::<i64>,
                        None::<i64>,
                    ])?;
                event(l, "CREATED", "alice", None, "PENDING_APPROVAL", at)?;
            }
            1 => {
                read(l)?;
                transition(
                    l,
                    "PENDING_APPROVAL",
                    "APPROVED",
                    "APPROVED",
                    "bob",
                    true,
                    false,
                )?;
            }
            2 => {
                read(l)?;
                // The start's guards: another start running, a newer success, freezes,
                // the start timeout; then the deploy target (W1 configures none).
                let other = conn
                    .prepare_cached(writer_sql::OTHER_STARTED.sqlite())?
                    .query(params![l.service, "staging", l.id])?
                    .next()?
                    .is_some();
                let newer = conn
                    .prepare_cached(writer_sql::NEWER_SUCCEEDED.sqlite())?
                    .query(params![l.service, "staging", l.created_at, l.id])?
                    .next()?
                    .is_some();
                let frozen = conn
                    .prepare_cached(writer_sql::FREEZE_WINDOWS_OF.sqlite())?
                    .query(params!["staging"])?
                    .next()?
                    .is_some();
                if other || newer || frozen {
                    return Err("a start guard held; W5 sets none up".into());
                }
                let _timeout: Option<i64> = conn
                    .prepare_cached(writer_sql::START_TIMEOUT.sqlite())?
                    .query_row(params!["staging"], |r| r.get(0))?;
                transition(
                    l,
                    "APPROVED",
                    "STARTED",
                    "STARTED",
                    "deploybot",
                    false,
                    true,
                )?;
                let target = conn
                    .prepare_cached(writer_sql::TARGET.sqlite())?
                    .query(params![l.service, "staging"])?
                    .next()?
                    .is_some();
                if target {
                    return Err("a deploy target was found; W5 configures none".into());
                }
            }
            _ => {
                read(l)?;
                transition(
                    l,
                    "STARTED",
                    "SUCCEEDED",
                    "SUCCEEDED",
                    "deploybot",
                    false,
                    false,
                )?;
            }
        }
        conn.prepare_cached("RELEASE write")?.execute([])?;
        l.step = (l.step + 1) % 4;
        Ok(())
    };

    let mut groups = Groups {
        latencies_us: Vec::new(),
        writes: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        execute: Duration::ZERO,
        commit: Duration::ZERO,
    };
    let mut lifecycles: Vec<Lifecycle> = (0..size)
        .map(|_| Lifecycle {
            id: String::new(),
            service: String::new(),
            created_at: 0,
            step: 0,
        })
        .collect();
    let started = Instant::now();
    let deadline = started + run;
    let mut next = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        let mut group = || -> Result<Duration, BenchError> {
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            for l in lifecycles.iter_mut() {
                step(l, next)?;
                next += 1;
            }
            let executed = t.elapsed();
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(executed)
        };
        match group() {
            Ok(executed) => {
                let total = t.elapsed();
                groups.latencies_us.push(total.as_micros() as u64);
                groups.execute += executed;
                groups.commit += total - executed;
                groups.writes += size as u64;
            }
            Err(err) => {
                if groups.failed < 3 {
                    eprintln!("  failed: {err}");
                }
                groups.failed += 1;
                // Nothing of a failed group stays, as in the server's writer.
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK")?;
                }
                return Err(format!("W5: a group failed: {err}").into());
            }
        }
    }
    groups.elapsed = started.elapsed();
    Ok(groups)
}

/// Where one W2 page's time goes, measured in process over the seeded database:
/// each store call alone, then the whole document, then its JSON serialisation.
pub async fn w2_breakdown(db: &Path) -> Result<Vec<Row>, BenchError> {
    use shiplog::store::{DeploymentFilter, Store, StoreConfig};
    let store = Store::open(&StoreConfig::new(path_str(db))).await?;
    let schema = shiplog::graphql::schema(store.clone(), Default::default());
    let doc = dashboard(true, false);
    let filter = DeploymentFilter::default();
    let rounds = 300;
    let mut rows = Vec::new();
    let mut time = |name: &str, samples: &mut Vec<u64>| {
        samples.sort_unstable();
        rows.push(Row {
            workload: format!("W2 part: {name}"),
            unit: "in process".to_owned(),
            p50_ms: percentile(samples, 50.0),
            p99_ms: percentile(samples, 99.0),
            ..Row::default()
        });
    };
    let page = store.deployment_page(&filter, 50, None).await?;
    let ids: Vec<_> = page.items.iter().map(|d| d.id).collect();
    let mut s = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        store.deployment_page(&filter, 50, None).await?;
        s.push(t.elapsed().as_micros() as u64);
    }
    time("page of 50 (1 statement)", &mut s);
    let mut s = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        store.events_of(&ids).await?;
        s.push(t.elapsed().as_micros() as u64);
    }
    time("events of 50 (1 statement)", &mut s);
    let mut s = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        store.count_deployments(&filter).await?;
        s.push(t.elapsed().as_micros() as u64);
    }
    time("totalCount (1 statement)", &mut s);
    let mut s = Vec::new();
    let mut ser = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let response = schema
            .execute(
                async_graphql::Request::new(&doc)
                    .variables(async_graphql::Variables::from_json(json!({ "first": 50 }))),
            )
            .await;
        s.push(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        let body = serde_json::to_vec(&response)?;
        ser.push(t.elapsed().as_micros() as u64);
        assert!(body.len() > 1000);
    }
    time("execute whole document", &mut s);
    time("serialise response to JSON", &mut ser);
    store.close().await?;
    Ok(rows)
}

/// W6's document: one service's release train, every stop with its deployments.
const TRAIN: &str = "query($service: String!) { releaseTrain(service: $service) { service \
     stops { environment { name position tier } \
     live { id version status reviewedBy updatedAt events { kind actor occurredAt } } \
     inFlight { id version status } pending { id version createdAt } \
     promotable { id version } } } }";

/// W6: single-client latency of one service's release train at two database sizes
/// (`w6_small`, `w6_large`). The rows are written straight into the file before the
/// server starts (`seed_direct`); every seeded deployment SUCCEEDED, so each stop's live
/// deployment is the newest of thousands; a few in-flight and pending ones are added
/// over HTTP.
pub async fn w6_train(plan: &Plan, binary: &Path, dir: &Path) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    for size in [plan.w6_small, plan.w6_large] {
        let db = dir.join(format!("w6-{size}.db"));
        crate::seed::seed_direct(&db, size).await?;
        let server = Server::start(binary, &db).await?;
        let client = reqwest::Client::new();
        let url = server.url("/graphql");
        let service = service(0);
        // Two pending and one started deployment of the service in staging.
        for i in 0..3 {
            let mut vars = create_vars(0);
            vars["input"]["version"] = json!(format!("v9.{i}"));
            let created = post(&client, &url, CREATE, vars).await?;
            let id = created["createDeployment"]["deployment"]["id"].clone();
            if i == 0 {
                for (mutation, input) in [
                    ("approveDeployment", "ApproveDeploymentInput"),
                    ("startDeployment", "StartDeploymentInput"),
                ] {
                    post(
                        &client,
                        &url,
                        &act(mutation, input),
                        json!({ "input": { "id": id, "actor": "bob" } }),
                    )
                    .await?;
                }
            }
        }
        let mut tally = Tally::default();
        let started = Instant::now();
        for _ in 0..plan.w3_requests {
            let t = Instant::now();
            let result = post(&client, &url, TRAIN, json!({ "service": service })).await;
            if let Ok(data) = &result {
                let stops = &data["releaseTrain"]["stops"];
                let complete = stops.as_array().is_some_and(|s| {
                    s.len() == crate::seed::ENVIRONMENTS.len()
                        && s.iter().all(|stop| !stop["live"].is_null())
                });
                if !complete {
                    tally.record(t, &Err(format!("an incomplete train: {stops}")));
                    continue;
                }
            }
            tally.record(t, &result);
        }
        let elapsed = started.elapsed();
        tally.latencies_us.sort_unstable();
        let mut row = row(
            &format!("W6 release train, {size} deployments"),
            "requests/s",
            &tally,
            elapsed,
            &server,
        );
        row.note = format!(
            "1 client, {} stops, live with events; seeded in the file, 2 events each",
            crate::seed::ENVIRONMENTS.len()
        );
        server.stop().await?;
        rows.push(row);
    }
    if let (Some(small), Some(large)) = (rows[0].p50_ms, rows[1].p50_ms) {
        rows[1].note = format!(
            "{} ; p50 ratio large/small = {:.2}x",
            rows[1].note,
            large / small
        );
    }
    Ok(rows)
}
