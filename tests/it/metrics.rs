//! Operations: `GET /metrics`, request ids, and JSON logs.
//!
//! The metrics recorder is process-global and every test of this binary shares it, so
//! in-process tests compare a scrape before with a scrape after, and look only at series
//! that no other test touches (operation names of their own) or that can only grow. The
//! live-subscribers gauge goes up and down with every test that subscribes; it is tested
//! in a `shiplog` process of its own, where nothing else moves it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{create_input, post_create, TestApp, TestDb, CREATE};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Reading the exposition
// ---------------------------------------------------------------------------------------

/// One scrape: every sample, by metric name and label set.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|err| panic!("a number in {line:?}: {err}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    parse_labels(rest.strip_suffix('}').expect("labels end with }")),
                ),
                None => (series, BTreeMap::new()),
            };
            samples.insert((name.to_owned(), labels), value);
        }
        Self { samples, text }
    }

    /// The sample of `name` with exactly these labels; 0 when it is not there (yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.contains_key(&(name.to_owned(), labels))
    }

    /// The sum of every sample of `name` whose labels include these.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

/// `a="x",b="y"` (values here never hold quotes or commas).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("key=value");
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

async fn scrape(client: &reqwest::Client, url: &str) -> Scrape {
    let response = client.get(url).send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(response.text().await.expect("a text body"))
}

/// How much an operation's count grew between two scrapes. Operation names are bounded
/// process-wide: when other tests (the fuzzer) have used up the places, a new name is
/// counted as `other`, so it is looked for there.
fn operation_grew(before: &Scrape, after: &Scrape, kind: &str, name: &str) -> (f64, f64) {
    let requests = "shiplog_graphql_requests_total";
    let durations = "shiplog_graphql_request_duration_seconds_count";
    let label = if after.has(
        requests,
        &[("operation_type", kind), ("operation_name", name)],
    ) {
        name
    } else {
        "other"
    };
    let labels = [("operation_type", kind), ("operation_name", label)];
    (
        after.value(requests, &labels) - before.value(requests, &labels),
        after.value(durations, &labels) - before.value(durations, &labels),
    )
}

fn errors_grew(before: &Scrape, after: &Scrape, code: &str) -> f64 {
    let name = "shiplog_graphql_errors_total";
    after.value(name, &[("code", code)]) - before.value(name, &[("code", code)])
}

/// POSTs a request that may fail (any status) and returns its JSON body.
async fn post(app: &TestApp, body: Value) -> Value {
    app.client
        .post(app.url("/graphql"))
        .json(&body)
        .send()
        .await
        .expect("send the request")
        .json()
        .await
        .expect("a JSON body")
}

// ---------------------------------------------------------------------------------------
// In-process: counters
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn graphql_operations_are_counted_by_type_name_and_error_code() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let metrics = app.url("/metrics");
    let before = scrape(&app.client, &metrics).await;

    app.ok(
        "query MetricsProbeList { deployments(first: 1) { totalCount } }",
        json!({}),
    )
    .await;
    app.ok(
        &CREATE.replace("mutation Create(", "mutation MetricsProbeCreate("),
        json!({ "input": create_input("metrics", "staging") }),
    )
    .await;
    // Refused by validation: a known type and name, and GRAPHQL_VALIDATION_FAILED.
    let refused = post(
        &app,
        json!({ "query": "query MetricsProbeRefused { noSuchField }" }),
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    // Not even parsed: no operation is known.
    let unparsed = post(
        &app,
        json!({ "query": "query MetricsProbeUnparsed {", "operationName": "MetricsProbeUnparsed" }),
    )
    .await;
    assert_eq!(
        unparsed["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    // Runs, and fails in a resolver: NOT_FOUND.
    let missing = post(
        &app,
        json!({
            "query": "query MetricsProbeMissing($id: ID!) { deployment(id: $id) { id } }",
            "variables": { "id": "00000000-0000-7000-8000-000000000000" },
        }),
    )
    .await;
    assert!(missing.get("errors").is_some(), "{missing:#}");

    let after = scrape(&app.client, &metrics).await;
    assert_eq!(
        operation_grew(&before, &after, "query", "MetricsProbeList"),
        (1.0, 1.0),
        "the named query, counted and timed once\n{}",
        after.text
    );
    assert_eq!(
        operation_grew(&before, &after, "mutation", "MetricsProbeCreate"),
        (1.0, 1.0),
        "the named mutation\n{}",
        after.text
    );
    assert_eq!(
        operation_grew(&before, &after, "query", "MetricsProbeRefused"),
        (1.0, 1.0),
        "the refused query\n{}",
        after.text
    );
    let unknown = |scrape: &Scrape| {
        scrape.sum(
            "shiplog_graphql_requests_total",
            &[("operation_type", "unknown")],
        )
    };
    assert!(
        unknown(&after) - unknown(&before) >= 1.0,
        "a request that fails before its operation is known has type unknown\n{}",
        after.text
    );
    assert!(
        !after.has(
            "shiplog_graphql_requests_total",
            &[
                ("operation_type", "unknown"),
                ("operation_name", "MetricsProbeUnparsed")
            ],
        ),
        "a name only a refused request used takes no place among the bounded names"
    );
    for code in [
        "GRAPHQL_VALIDATION_FAILED",
        "GRAPHQL_PARSE_FAILED",
        "NOT_FOUND",
    ] {
        assert!(
            errors_grew(&before, &after, code) >= 1.0,
            "{code} counted\n{}",
            after.text
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_batch_counts_each_operation_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let metrics = app.url("/metrics");
    let before = scrape(&app.client, &metrics).await;
    let answers = post(
        &app,
        json!([
            { "query": "query MetricsProbeBatchA { deployments(first: 1) { totalCount } }" },
            { "query": "query MetricsProbeBatchB { deployments(first: 1) { totalCount } }" },
        ]),
    )
    .await;
    assert_eq!(answers.as_array().map(Vec::len), Some(2), "{answers:#}");
    let after = scrape(&app.client, &metrics).await;
    for name in ["MetricsProbeBatchA", "MetricsProbeBatchB"] {
        assert_eq!(
            operation_grew(&before, &after, "query", name),
            (1.0, 1.0),
            "{name}: the complexity rehearsal of a batch is not an operation\n{}",
            after.text
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn write_groups_are_counted() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let metrics = app.url("/metrics");
    let before = scrape(&app.client, &metrics).await;
    app.create("metrics-writes", "staging").await;
    let after = scrape(&app.client, &metrics).await;

    let committed = [("outcome", "committed")];
    let groups = "shiplog_write_groups_total";
    assert!(
        after.value(groups, &committed) - before.value(groups, &committed) >= 1.0,
        "the group of the write is counted before its caller is answered\n{}",
        after.text
    );
    let sizes = "shiplog_write_group_size_count";
    assert!(after.value(sizes, &[]) - before.value(sizes, &[]) >= 1.0);
    // Each group's time in its statements and in its COMMIT (which fsyncs: never zero).
    let phases = "shiplog_write_group_duration_seconds";
    for phase in ["execute", "commit"] {
        let count = format!("{phases}_count");
        let sum = format!("{phases}_sum");
        let at = [("phase", phase)];
        assert!(
            after.value(&count, &at) - before.value(&count, &at) >= 1.0,
            "{phase} is timed for the group\n{}",
            after.text
        );
        assert!(
            after.value(&sum, &at) > before.value(&sum, &at),
            "{phase} took some time\n{}",
            after.text
        );
    }
    assert!(
        after.has("shiplog_writes_queued", &[]),
        "the queue gauge is there\n{}",
        after.text
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// In-process: request ids
// ---------------------------------------------------------------------------------------

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("x-request-id on a {}", response.status()))
        .to_str()
        .expect("a visible id")
        .to_owned()
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    let ok = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(ok.status(), 200);
    let bad = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    let missing = app
        .client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    let ids = [request_id(&ok), request_id(&bad), request_id(&missing)];
    for id in &ids {
        assert_eq!(id.len(), 36, "a fresh id is a UUID: {id}");
    }
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "each request its own: {ids:?}"
    );

    // The WebSocket upgrade too.
    let mut request = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    request
        .headers_mut()
        .insert("x-request-id", HeaderValue::from_static("metrics-ws-probe"));
    let (ws, upgrade) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect the WebSocket");
    assert_eq!(upgrade.headers()["x-request-id"], "metrics-ws-probe");
    drop(ws);
    app.stop().await;
}

#[tokio::test]
async fn a_client_request_id_is_kept_when_usable_and_replaced_when_not() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let send = |id: String| {
        let request = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", id);
        async move { request.send().await.expect("GET /healthz") }
    };

    let echoed = send("trace-4bf92f3577b34da6a3ce929d0e0e4736".into()).await;
    assert_eq!(
        request_id(&echoed),
        "trace-4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let longest = "x".repeat(128);
    assert_eq!(request_id(&send(longest.clone()).await), longest);

    for unusable in ["x".repeat(129), "two words".into()] {
        let replaced = request_id(&send(unusable.clone()).await);
        assert_ne!(replaced, unusable);
        assert_eq!(replaced.len(), 36, "a fresh UUID instead of {unusable:?}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// A process of its own: the live-subscribers gauge, and the logs
// ---------------------------------------------------------------------------------------

/// The `shiplog` binary on a free port, with every line it logs kept. Dropping it kills
/// it.
struct Process {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn start(database: String, log_format: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shiplog"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(database)
            .arg("--log-format")
            .arg(log_format)
            .env("RUST_LOG", "info")
            .env_remove("SHIPLOG_LISTEN")
            .env_remove("DATABASE_URL")
            .env_remove("SHIPLOG_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the shiplog binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut process = Process {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines: lines.clone(),
        };
        // Drains stdout to the end: a full pipe would stall the server's logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().expect("the lines").push(line);
            }
        });
        let line = process.wait_for_line(|line| line.contains("listening on http://"));
        let message = match log_format {
            "json" => {
                let json: Value = serde_json::from_str(&line).expect("a JSON log line");
                json["message"].as_str().expect("a message").to_owned()
            }
            _ => line,
        };
        let addr = message
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address");
        process.addr = addr.parse().expect("a socket address");
        process
    }

    /// The first line logged so far, or within WAIT, that satisfies `found`.
    fn wait_for_line(&self, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let lines = self.lines.lock().expect("the lines");
                if let Some(line) = lines.iter().find(|line| found(line)) {
                    return line.clone();
                }
                if Instant::now() > deadline {
                    panic!("no such line within {WAIT:?}; the server said: {lines:#?}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn subscribe(addr: SocketAddr) -> Ws {
    subscribe_to(
        addr,
        "subscription MetricsProbeWatch { deploymentEvents { kind } }",
    )
    .await
}

/// A WebSocket with one subscription, `1`, to `query`.
async fn subscribe_to(addr: SocketAddr, query: &str) -> Ws {
    subscribe_with(addr, query, Value::Null).await
}

/// A WebSocket (graphql-transport-ws, acknowledged) with one subscription, `1`, to
/// `query` with `variables` (none when null).
pub async fn subscribe_with(addr: SocketAddr, query: &str, variables: Value) -> Ws {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect the WebSocket");
    let send = |value: Value| Message::text(value.to_string());
    ws.send(send(json!({ "type": "connection_init", "payload": {} })))
        .await
        .expect("init");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an ack in time")
            .expect("the socket open")
            .expect("a message");
        if let Message::Text(text) = msg {
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["type"] == "connection_ack" {
                break;
            }
        }
    }
    let mut payload = json!({ "query": query });
    if !variables.is_null() {
        payload["variables"] = variables;
    }
    ws.send(send(
        json!({ "id": "1", "type": "subscribe", "payload": payload }),
    ))
    .await
    .expect("subscribe");
    ws
}

/// Scrapes until the live subscribers gauge reads `want`.
async fn gauge_reaches(client: &reqwest::Client, url: &str, want: f64) -> Scrape {
    metric_reaches(client, url, "shiplog_live_subscribers", want).await
}

/// Scrapes until metric `name` (no labels) reads `want`.
async fn metric_reaches(client: &reqwest::Client, url: &str, name: &str, want: f64) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = scrape(client, url).await;
        if now.value(name, &[]) == want {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never read {want}\n{}",
            now.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next event of subscription `1` on `ws`, as its `payload` text exactly.
async fn next_payload(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event in time")
            .expect("the socket open")
            .expect("a message");
        if let Message::Text(text) = msg {
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["type"] == "next" {
                assert_eq!(value["id"], "1", "{value}");
                return value["payload"].to_string();
            }
        }
    }
}

#[tokio::test]
async fn the_live_subscribers_gauge_follows_open_subscriptions() {
    let db = TestDb::new();
    let server = Process::start(db.url(), "text");
    let client = reqwest::Client::new();
    let metrics = server.url("/metrics");
    gauge_reaches(&client, &metrics, 0.0).await;

    let mut first = subscribe(server.addr).await;
    let mut second = subscribe(server.addr).await;
    let open = gauge_reaches(&client, &metrics, 2.0).await;
    assert_eq!(
        open.value(
            "shiplog_graphql_requests_total",
            &[
                ("operation_type", "subscription"),
                ("operation_name", "MetricsProbeWatch")
            ],
        ),
        2.0,
        "a subscription is counted once accepted, before any event\n{}",
        open.text
    );

    // A query over the WebSocket is counted too, once, though it never goes through the
    // schema's `request` hook.
    first
        .send(Message::text(
            json!({ "id": "q", "type": "subscribe",
                    "payload": { "query": "query MetricsProbeOverWs { __typename }" } })
            .to_string(),
        ))
        .await
        .expect("a query");
    let deadline = Instant::now() + WAIT;
    let over_ws = [
        ("operation_type", "query"),
        ("operation_name", "MetricsProbeOverWs"),
    ];
    loop {
        let now = scrape(&client, &metrics).await;
        let count = now.value("shiplog_graphql_requests_total", &over_ws);
        if count > 0.0 {
            assert_eq!(count, 1.0, "{}", now.text);
            break;
        }
        assert!(Instant::now() < deadline, "never counted\n{}", now.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Unsubscribing ends the stream; the socket stays open.
    first
        .send(Message::text(
            json!({ "id": "1", "type": "complete" }).to_string(),
        ))
        .await
        .expect("complete");
    gauge_reaches(&client, &metrics, 1.0).await;
    // Going away drops it.
    second.close(None).await.expect("close");
    drop(second);
    gauge_reaches(&client, &metrics, 0.0).await;
    drop(first);
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let db = TestDb::new();
    let server = Process::start(db.url(), "json");
    let response = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-request-id", "metrics-json-log-probe")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(response.status(), 200);

    let line = server.wait_for_line(|line| line.contains("metrics-json-log-probe"));
    let json: Value = serde_json::from_str(&line).expect("the line is JSON");
    assert_eq!(
        json["span"]["request_id"], "metrics-json-log-probe",
        "{json:#}"
    );
    assert_eq!(json["span"]["method"], "GET", "{json:#}");
    assert_eq!(json["span"]["path"], "/healthz", "{json:#}");
    for field in ["timestamp", "level", "target", "message"] {
        assert!(json.get(field).is_some(), "{field} in {json:#}");
    }
}

#[tokio::test]
async fn text_logs_carry_the_request_id() {
    let db = TestDb::new();
    let server = Process::start(db.url(), "text");
    let response = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-request-id", "metrics-text-log-probe")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(response.status(), 200);
    let line = server.wait_for_line(|line| line.contains("metrics-text-log-probe"));
    assert!(
        line.contains("request_id=metrics-text-log-probe") && line.contains("path=/healthz"),
        "{line}"
    );
}

/// Clients that send the same subscription share one running operation (one execution,
/// one serialisation per event); a different selection runs on its own. Each client
/// still gets its own answer.
#[tokio::test]
async fn clients_with_the_same_subscription_share_one_feed() {
    const WATCH: &str = "subscription MetricsFeedWatch { deploymentEvents { kind deploymentId } }";
    const OTHER: &str = "subscription MetricsFeedOther { deploymentEvents { deploymentId actor } }";
    let db = TestDb::new();
    let server = Process::start(db.url(), "text");
    let client = reqwest::Client::new();
    let metrics = server.url("/metrics");
    metric_reaches(&client, &metrics, "shiplog_subscription_feeds", 0.0).await;

    // The first one's feed is listed once it counts as live; the others join it.
    let mut same = vec![subscribe_to(server.addr, WATCH).await];
    gauge_reaches(&client, &metrics, 1.0).await;
    for _ in 0..4 {
        same.push(subscribe_to(server.addr, WATCH).await);
    }
    gauge_reaches(&client, &metrics, 5.0).await;
    let shared = metric_reaches(&client, &metrics, "shiplog_subscription_feeds", 1.0).await;
    assert_eq!(
        shared.value(
            "shiplog_graphql_requests_total",
            &[
                ("operation_type", "subscription"),
                ("operation_name", "MetricsFeedWatch")
            ],
        ),
        5.0,
        "a client that joins a feed is counted like one that started it\n{}",
        shared.text
    );
    let mut other = subscribe_to(server.addr, OTHER).await;
    gauge_reaches(&client, &metrics, 6.0).await;
    metric_reaches(&client, &metrics, "shiplog_subscription_feeds", 2.0).await;

    let created = post_create(
        &client,
        &server.url("/graphql"),
        create_input("feeds", "staging"),
    )
    .await;
    let id = created["data"]["createDeployment"]["deployment"]["id"].clone();
    assert!(id.is_string(), "{created}");
    for ws in &mut same {
        let payload: Value = serde_json::from_str(&next_payload(ws).await).expect("JSON");
        assert_eq!(
            payload,
            json!({ "data": { "deploymentEvents": { "kind": "CREATED", "deploymentId": id } } })
        );
    }
    let payload: Value = serde_json::from_str(&next_payload(&mut other).await).expect("JSON");
    assert_eq!(
        payload,
        json!({ "data": { "deploymentEvents": { "deploymentId": id, "actor": "alice" } } })
    );

    // Every client leaving ends its feed.
    for ws in same.iter_mut().chain([&mut other]) {
        ws.close(None).await.expect("close");
    }
    drop(same);
    drop(other);
    gauge_reaches(&client, &metrics, 0.0).await;
    metric_reaches(&client, &metrics, "shiplog_subscription_feeds", 0.0).await;
}
