//! Reliability of the outbox (issue 11) against the real binary: webhook deliveries and
//! executor triggers survive SIGKILL, and every one recorded in the database reaches its
//! receiver, signed, at least once, after a restart on the same file.
//!
//! - `pending_deliveries_and_triggers_survive_kill_9`: receivers down while events are
//!   written (every attempt fails and is rescheduled), SIGKILL, receivers up on the same
//!   ports, restart: every recorded delivery and execution goes out, nothing is lost.
//! - `a_kill_in_the_middle_of_sending_loses_nothing`: receivers up but slow (200 ms),
//!   writes going on; at the 8th webhook request the receivers stop answering and the
//!   server is SIGKILLed with those requests in flight; restart: every delivery in the
//!   database is received at least once and DELIVERED, every request that was in
//!   flight is sent again, every start is triggered.
//!
//! Every wait is a bounded poll on a condition; nothing is asserted after a fixed sleep.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::{action, create_input, TestDb, CREATE};
use crate::process::Server;
use crate::webhooks::{verify, Received, CREATE_WEBHOOK, SECRET};

/// Fast retries; enough attempts that nothing is FAILED within a test.
const ARGS: &[&str] = &[
    "--webhook-allow-private",
    "true",
    "--webhook-backoff-ms",
    "100",
    "--webhook-max-attempts",
    "30",
];
/// Bound of every wait for the outbox to catch up.
const SETTLE: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PAGES: usize = 100;

// ------------------------------------------------------------------ receivers

/// Shared by receivers: once `close_at` requests have arrived at the counting ones, no
/// receiver answers until it is opened again. The request that closes it, and any
/// other not answered yet, is then certainly in flight when the server is killed.
struct Gate {
    arrivals: AtomicUsize,
    close_at: usize,
    closed: watch::Sender<bool>,
}

impl Gate {
    fn new(close_at: usize) -> Arc<Self> {
        Arc::new(Self {
            arrivals: AtomicUsize::new(0),
            close_at,
            closed: watch::channel(false).0,
        })
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn open(&self) {
        self.closed.send_replace(false);
    }
}

/// Records every request on arrival, then answers 200 after `delay` once `gate` is
/// open, and records the answer. Aborted on drop.
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
    /// The `webhook-id` of every request answered.
    answered: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// `counts`: whether its requests count towards closing the gate.
    async fn start_on(addr: SocketAddr, delay: Duration, gate: Arc<Gate>, counts: bool) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answered: Arc<Mutex<Vec<String>>> = Arc::default();
        let (log, answers) = (received.clone(), answered.clone());
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, answers, gate) = (log.clone(), answers.clone(), gate.clone());
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                {
                    // Recorded and counted under one lock: the request that reaches
                    // close_at closes the gate before anything more is answered.
                    let mut log = log.lock().expect("the log");
                    log.push(Received {
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    });
                    if counts && gate.arrivals.fetch_add(1, Ordering::SeqCst) + 1 == gate.close_at {
                        gate.closed.send_replace(true);
                    }
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut closed = gate.closed.subscribe();
                let _ = closed.wait_for(|closed| !*closed).await;
                answers.lock().expect("the answers").push(id);
                StatusCode::OK
            }
        });
        // The port was free a moment ago; should an outgoing connection hold it for
        // an instant, try again for a while.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("bind {addr}: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            received,
            answered,
            task,
        }
    }

    /// How many requests of each `webhook-id` have come but not been answered.
    fn unanswered(&self) -> HashMap<String, usize> {
        let mut open: HashMap<String, usize> = HashMap::new();
        for r in self.got() {
            *open.entry(r.header("webhook-id").to_owned()).or_default() += 1;
        }
        for id in self.answered.lock().expect("the answers").iter() {
            if let Some(n) = open.get_mut(id) {
                *n -= 1;
            }
        }
        open.retain(|_, n| *n > 0);
        open
    }

    /// How many requests of this `webhook-id` have come.
    fn count(&self, id: &str) -> usize {
        self.got()
            .iter()
            .filter(|r| r.header("webhook-id") == id)
            .count()
    }

    fn got(&self) -> Vec<Received> {
        self.received.lock().expect("the log").clone()
    }

    fn len(&self) -> usize {
        self.received.lock().expect("the log").len()
    }

    /// The distinct `webhook-id`s received.
    fn ids(&self) -> HashSet<String> {
        self.got()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Addresses on 127.0.0.1 where nothing listens now: bound together (so distinct), then
/// closed. A receiver is later started on exactly these.
fn closed_ports<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("its address"))
}

// ------------------------------------------------------------------ the server

async fn start(database: &str) -> Server {
    let database = database.to_owned();
    tokio::task::spawn_blocking(move || Server::start_with(&database, ARGS))
        .await
        .expect("start the server")
}

async fn kill(server: Server) {
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .expect("kill the server");
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    fn of(server: &Server) -> Self {
        Self {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client"),
            url: server.graphql_url(),
        }
    }

    /// The response body; None when there was no complete response.
    async fn post(&self, query: &str, variables: Value) -> Option<Value> {
        let response = self
            .client
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .ok()?;
        response.json::<Value>().await.ok()
    }

    async fn ok(&self, query: &str, variables: Value) -> Value {
        let body = self
            .post(query, variables)
            .await
            .expect("a response from the server");
        assert!(body.get("errors").is_none(), "errors: {body:#}");
        body["data"].clone()
    }
}

const CONFIGURE: &str = r#"
mutation($input: ConfigureDeploymentTargetInput!) {
  configureDeploymentTarget(input: $input) { service environment executor url }
}"#;

const DELIVERIES: &str = r#"
query($id: ID!, $after: String) {
  node(id: $id) {
    ... on Webhook {
      deliveries(first: 25, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { id status event { cursor kind } attempts { at } }
      }
    }
  }
}"#;

const UNSETTLED: &str = r#"
query($id: ID!) {
  node(id: $id) { ... on Webhook { deliveries(first: 1, status: [PENDING, FAILED]) { nodes { id } } } }
}"#;

const EXECUTION: &str = r#"
query($id: ID!) { deployment(id: $id) { status execution { action status attempts } } }"#;

async fn create_webhook(api: &Api, addr: SocketAddr) -> String {
    let input = json!({ "url": format!("http://{addr}/hook"), "secret": SECRET, "actor": "ops" });
    let data = api.ok(CREATE_WEBHOOK, json!({ "input": input })).await;
    data["createWebhook"]["id"]
        .as_str()
        .expect("a webhook id")
        .to_owned()
}

async fn configure_http_target(api: &Api, service: &str, addr: SocketAddr) {
    api.ok(
        CONFIGURE,
        json!({ "input": { "service": service, "environment": "staging", "executor": "HTTP",
                "actor": "ops", "url": format!("http://{addr}/deploy"), "secret": SECRET } }),
    )
    .await;
}

/// One delivery as the API shows it.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    status: String,
    cursor: String,
    kind: String,
    attempts: usize,
}

/// Every delivery of the webhook, paging with first/after.
async fn deliveries(api: &Api, webhook: &str) -> Vec<Delivery> {
    let mut all = Vec::new();
    let mut after = Value::Null;
    for page in 0.. {
        assert!(page < MAX_PAGES, "the delivery list ends");
        let data = api
            .ok(DELIVERIES, json!({ "id": webhook, "after": after }))
            .await;
        let connection = &data["node"]["deliveries"];
        for node in connection["nodes"].as_array().expect("nodes") {
            let text = |v: &Value| v.as_str().expect("a string").to_owned();
            all.push(Delivery {
                id: text(&node["id"]),
                status: text(&node["status"]),
                cursor: text(&node["event"]["cursor"]),
                kind: text(&node["event"]["kind"]),
                attempts: node["attempts"].as_array().expect("attempts").len(),
            });
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    let ids: HashSet<&str> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "paging lists each delivery once");
    all
}

/// Whether the webhook has no PENDING or FAILED delivery.
async fn settled(api: &Api, webhook: &str) -> bool {
    let data = api.ok(UNSETTLED, json!({ "id": webhook })).await;
    data["node"]["deliveries"]["nodes"]
        .as_array()
        .expect("nodes")
        .is_empty()
}

async fn execution(api: &Api, deployment: &str) -> Value {
    let data = api.ok(EXECUTION, json!({ "id": deployment })).await;
    data["deployment"]["execution"].clone()
}

/// Polls `check` every 50 ms until it is Ok; fails the test with its last complaint
/// after `limit`.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return,
            Err(complaint) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}: {complaint}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// An event a write was acknowledged with: its cursor and kind.
type Event = (String, String);

fn event_of(payload: &Value) -> Event {
    let text = |v: &Value| v.as_str().expect("a string").to_owned();
    (
        text(&payload["event"]["cursor"]),
        text(&payload["event"]["kind"]),
    )
}

/// Checks every request a webhook receiver got: signed, for one of `expected` (by
/// delivery id), with that delivery's event. Returns the ids seen.
fn check_requests(
    name: &str,
    got: &[Received],
    expected: &HashMap<String, Delivery>,
) -> HashSet<String> {
    let mut seen = HashSet::new();
    for request in got {
        assert_eq!(request.path, "/hook", "{name}");
        verify(SECRET, request);
        let id = request.header("webhook-id");
        let delivery = expected
            .get(id)
            .unwrap_or_else(|| panic!("{name}: got delivery {id}, which the API does not list"));
        let body = request.json();
        assert_eq!(
            body["type"],
            format!("deployment.{}", delivery.kind.to_lowercase()),
            "{name}: delivery {id}"
        );
        assert_eq!(
            body["data"]["event"]["cursor"], delivery.cursor,
            "{name}: delivery {id} carries its event"
        );
        assert_eq!(body["data"]["event"]["kind"], delivery.kind, "{name}");
        seen.insert(id.to_owned());
    }
    seen
}

/// Checks every request the HTTP executor got: signed, a deploy of one of `allowed`.
/// Returns the distinct execution ids (`webhook-id`) and the deployments seen.
fn check_triggers(
    got: &[Received],
    allowed: &HashSet<String>,
) -> (HashSet<String>, HashSet<String>) {
    let (mut executions, mut deployments) = (HashSet::new(), HashSet::new());
    for request in got {
        verify(SECRET, request);
        let body = request.json();
        assert_eq!(body["type"], "deployment.deploy", "{body:#}");
        let deployment = body["data"]["deployment"]["id"]
            .as_str()
            .expect("the deployment id")
            .to_owned();
        assert!(
            allowed.contains(&deployment),
            "a trigger for {deployment}, which was not started: {body:#}"
        );
        executions.insert(request.header("webhook-id").to_owned());
        deployments.insert(deployment);
    }
    (executions, deployments)
}

/// The ids of `deliveries` that `seen` lacks, for messages.
fn missing<'a>(deliveries: &'a [Delivery], seen: &HashSet<String>) -> Vec<&'a str> {
    deliveries
        .iter()
        .filter(|d| !seen.contains(&d.id))
        .map(|d| d.id.as_str())
        .collect()
}

/// Whether each webhook's receiver got every delivery recorded for it, and the API shows
/// them all DELIVERED; else what is missing, with each one's status and attempts.
async fn all_received_and_delivered(
    api: &Api,
    webhooks: &[String],
    recorded: &[Vec<Delivery>],
    sinks: &[Sink],
) -> Result<(), String> {
    for (i, webhook) in webhooks.iter().enumerate() {
        let lacking = missing(&recorded[i], &sinks[i].ids());
        if !lacking.is_empty() {
            let now = deliveries(api, webhook).await;
            let state: Vec<String> = now
                .iter()
                .filter(|d| lacking.contains(&d.id.as_str()))
                .map(|d| format!("{} {} after {} attempts", d.id, d.status, d.attempts))
                .collect();
            return Err(format!("webhook {i}: not received: {state:?}"));
        }
        if !settled(api, webhook).await {
            return Err(format!("webhook {i}: deliveries not all DELIVERED"));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ test 1

/// Every write acknowledged, or the test fails.
async fn write(api: &Api, query: &str, variables: Value, field: &str) -> Value {
    let data = api.ok(query, variables).await;
    data[field].clone()
}

async fn create(api: &Api, service: &str, version: &str, events: &mut Vec<Event>) -> String {
    let mut input = create_input(service, "staging");
    input["version"] = json!(version);
    let payload = write(api, CREATE, json!({ "input": input }), "createDeployment").await;
    events.push(event_of(&payload));
    payload["deployment"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

async fn act(
    api: &Api,
    mutation: &str,
    id: &str,
    actor: &str,
    note: Option<&str>,
    events: &mut Vec<Event>,
) {
    let variables = json!({ "input": { "id": id, "actor": actor, "note": note } });
    let payload = write(api, &action(mutation), variables, mutation).await;
    events.push(event_of(&payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_and_triggers_survive_kill_9() {
    let started_at = Instant::now();
    let [hook_a, hook_b, executor] = closed_ports::<3>();
    let db = TestDb::new();
    let database = db.url();
    let server = start(&database).await;
    let api = Api::of(&server);

    let webhooks = [
        create_webhook(&api, hook_a).await,
        create_webhook(&api, hook_b).await,
    ];
    configure_http_target(&api, "payments", executor).await;

    // 4 deployments of payments to staging, each started (an execution each) and
    // succeeded before the next starts; 10 of other services, approved or rejected.
    let mut events: Vec<Event> = Vec::new();
    let mut started = Vec::new();
    for n in 0..4 {
        let id = create(&api, "payments", &format!("v{n}"), &mut events).await;
        act(&api, "approveDeployment", &id, "bob", None, &mut events).await;
        act(&api, "startDeployment", &id, "carol", None, &mut events).await;
        act(&api, "succeedDeployment", &id, "ci", None, &mut events).await;
        started.push(id);
    }
    for n in 0..10 {
        let id = create(&api, &format!("svc-{n}"), "v1", &mut events).await;
        if n % 2 == 0 {
            act(&api, "approveDeployment", &id, "bob", None, &mut events).await;
        } else {
            act(
                &api,
                "rejectDeployment",
                &id,
                "bob",
                Some("not now"),
                &mut events,
            )
            .await;
        }
    }
    assert_eq!(events.len(), 36);

    // Before the kill: every delivery and execution has failed at least once and is
    // PENDING again (rescheduled), none got anywhere.
    until("every job attempted once", SETTLE, || async {
        for webhook in &webhooks {
            let all = deliveries(&api, webhook).await;
            if all.len() != events.len() {
                return Err(format!("{} deliveries", all.len()));
            }
            if let Some(d) = all.iter().find(|d| d.attempts == 0) {
                return Err(format!("delivery {} not yet attempted", d.id));
            }
        }
        for id in &started {
            let execution = execution(&api, id).await;
            if execution["attempts"].as_i64().unwrap_or(0) < 1 {
                return Err(format!("execution of {id}: {execution}"));
            }
        }
        Ok(())
    })
    .await;
    let mut recorded: Vec<Vec<Delivery>> = Vec::new();
    for webhook in &webhooks {
        let all = deliveries(&api, webhook).await;
        assert!(
            all.iter().all(|d| d.status == "PENDING"),
            "receivers are down: all PENDING: {all:#?}"
        );
        recorded.push(all);
    }
    for id in &started {
        let execution = execution(&api, id).await;
        assert_eq!(execution["status"], "PENDING", "{id}: {execution}");
        assert_eq!(execution["action"], "DEPLOY", "{id}: {execution}");
    }
    let attempts_before: usize = recorded.iter().flatten().map(|d| d.attempts).sum();

    kill(server).await;

    // The receivers come up on exactly the ports the webhooks and the target name.
    let never = Gate::new(usize::MAX);
    let sinks = [
        Sink::start_on(hook_a, Duration::ZERO, never.clone(), true).await,
        Sink::start_on(hook_b, Duration::ZERO, never.clone(), true).await,
    ];
    let executor_sink = Sink::start_on(executor, Duration::ZERO, never, false).await;
    let killed_at = Instant::now();
    let server = start(&database).await;
    let api = Api::of(&server);

    until(
        "every delivery and trigger after the restart",
        SETTLE,
        || async {
            all_received_and_delivered(&api, &webhooks, &recorded, &sinks).await?;
            for id in &started {
                let execution = execution(&api, id).await;
                if execution["status"] != "TRIGGERED" {
                    return Err(format!("execution of {id}: {execution}"));
                }
            }
            if executor_sink.ids().len() < started.len() {
                return Err(format!("{} triggers received", executor_sink.ids().len()));
            }
            Ok(())
        },
    )
    .await;
    let caught_up = killed_at.elapsed();

    // Every request signed, for a recorded delivery, with its event; every recorded
    // delivery received; nothing lost, nothing new: one delivery per event and webhook.
    let expected_cursors: BTreeSet<&str> = events.iter().map(|(c, _)| c.as_str()).collect();
    let mut requests = 0;
    for (i, webhook) in webhooks.iter().enumerate() {
        let by_id: HashMap<String, Delivery> = recorded[i]
            .iter()
            .map(|d| (d.id.clone(), d.clone()))
            .collect();
        let got = sinks[i].got();
        requests += got.len();
        let seen = check_requests(&format!("webhook {i}"), &got, &by_id);
        assert_eq!(seen.len(), recorded[i].len(), "webhook {i}: each received");

        let now = deliveries(&api, webhook).await;
        assert_eq!(now.len(), events.len(), "webhook {i}: one per event");
        let ids_then: BTreeSet<&str> = recorded[i].iter().map(|d| d.id.as_str()).collect();
        let ids_now: BTreeSet<&str> = now.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids_now, ids_then, "webhook {i}: the same deliveries");
        let cursors: BTreeSet<&str> = now.iter().map(|d| d.cursor.as_str()).collect();
        assert_eq!(cursors, expected_cursors, "webhook {i}: every event");
        assert!(now.iter().all(|d| d.status == "DELIVERED"), "{now:#?}");
        for d in &now {
            assert!(
                d.attempts >= 2,
                "{}: failed before the kill, then sent",
                d.id
            );
        }
    }
    assert_eq!(
        recorded.iter().map(Vec::len).sum::<usize>(),
        events.len() * webhooks.len(),
        "deliveries = events x webhooks"
    );

    let allowed: HashSet<String> = started.iter().cloned().collect();
    let triggers = executor_sink.got();
    let (executions, deployments) = check_triggers(&triggers, &allowed);
    assert_eq!(executions.len(), started.len(), "one execution per start");
    assert_eq!(triggers.len(), started.len(), "one request per execution");
    assert_eq!(deployments, allowed, "every started deployment triggered");
    assert!(triggers.iter().all(|r| r.path == "/deploy"));

    eprintln!(
        "outbox kill -9 (receivers down): {} events, {} deliveries ({} failed attempts before \
         the kill), {} webhook requests and {} triggers after the restart, caught up {:?} \
         after the kill, test {:?}",
        events.len(),
        events.len() * webhooks.len(),
        attempts_before,
        requests,
        triggers.len(),
        caught_up,
        started_at.elapsed()
    );
    let _ = tokio::task::spawn_blocking(move || server.terminate()).await;
}

// ------------------------------------------------------------------ test 2

/// Requests received (both webhooks) before the kill.
const KILL_AFTER_RECEIVED: usize = 8;
/// Deployment cycles (create, approve, start, succeed) the writer makes at most.
const WRITER_CYCLES: usize = 15;
/// Pause after each write: the writer outpaces the receivers, but not by much.
const WRITE_PACE: Duration = Duration::from_millis(50);
const RECEIVER_DELAY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Writes {
    events: Mutex<Vec<Event>>,
    created: Mutex<Vec<String>>,
    started: Mutex<Vec<String>>,
    /// Responses with errors (none expected).
    errors: Mutex<Vec<Value>>,
    stop: AtomicBool,
    done: AtomicBool,
}

/// Sends one write; the payload when acknowledged, None when the server is gone (or
/// refused it, recorded in `errors`).
async fn try_write(
    api: &Api,
    writes: &Writes,
    query: &str,
    variables: Value,
    field: &str,
) -> Option<Value> {
    let body = api.post(query, variables).await?;
    if body.get("errors").is_some() || !body["data"][field].is_object() {
        writes.errors.lock().expect("errors").push(body);
        return None;
    }
    let payload = body["data"][field].clone();
    writes
        .events
        .lock()
        .expect("events")
        .push(event_of(&payload));
    Some(payload)
}

/// Deployments of payments to staging one after another, each started then succeeded,
/// until the server is gone, `stop`, or WRITER_CYCLES.
async fn writer(api: Api, writes: Arc<Writes>) {
    'cycles: for n in 0..WRITER_CYCLES {
        let mut input = create_input("payments", "staging");
        input["version"] = json!(format!("v{n}"));
        let Some(created) = try_write(
            &api,
            &writes,
            CREATE,
            json!({ "input": input }),
            "createDeployment",
        )
        .await
        else {
            break;
        };
        let id = created["deployment"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        writes.created.lock().expect("created").push(id.clone());
        for (mutation, actor) in [
            ("approveDeployment", "bob"),
            ("startDeployment", "carol"),
            ("succeedDeployment", "ci"),
        ] {
            tokio::time::sleep(WRITE_PACE).await;
            if writes.stop.load(Ordering::SeqCst) {
                break 'cycles;
            }
            let variables = json!({ "input": { "id": id, "actor": actor } });
            if try_write(&api, &writes, &action(mutation), variables, mutation)
                .await
                .is_none()
            {
                break 'cycles;
            }
            if mutation == "startDeployment" {
                writes.started.lock().expect("started").push(id.clone());
            }
        }
        tokio::time::sleep(WRITE_PACE).await;
        if writes.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    writes.done.store(true, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_sending_loses_nothing() {
    let started_at = Instant::now();
    let [hook_a, hook_b, executor] = closed_ports::<3>();
    let gate = Gate::new(KILL_AFTER_RECEIVED);
    let sinks = [
        Sink::start_on(hook_a, RECEIVER_DELAY, gate.clone(), true).await,
        Sink::start_on(hook_b, RECEIVER_DELAY, gate.clone(), true).await,
    ];
    let executor_sink = Sink::start_on(executor, RECEIVER_DELAY, gate.clone(), false).await;
    let db = TestDb::new();
    let database = db.url();
    let server = start(&database).await;
    let api = Api::of(&server);
    let webhooks = [
        create_webhook(&api, hook_a).await,
        create_webhook(&api, hook_b).await,
    ];
    configure_http_target(&api, "payments", executor).await;

    let writes = Arc::new(Writes::default());
    let writing = tokio::spawn(writer(api.clone(), writes.clone()));
    // The receivers stop answering at the KILL_AFTER_RECEIVED-th webhook request; the
    // server is killed with that request (and any other come since) unanswered.
    until("the receivers get the first requests", SETTLE, || async {
        if gate.is_closed() {
            Ok(())
        } else {
            Err(format!(
                "{} received",
                sinks.iter().map(Sink::len).sum::<usize>()
            ))
        }
    })
    .await;
    let writes_at_kill = writes.events.lock().expect("events").len();
    let writer_done_at_kill = writes.done.load(Ordering::SeqCst);
    kill(server).await;
    writes.stop.store(true, Ordering::SeqCst);
    let received_at_kill: usize = sinks.iter().map(Sink::len).sum();
    // Requests in flight at the kill: no 2xx reached the server, so each is sent again.
    let in_flight: Vec<Vec<(String, usize)>> = sinks
        .iter()
        .chain([&executor_sink])
        .map(|sink| {
            sink.unanswered()
                .into_keys()
                .map(|id| {
                    let n = sink.count(&id);
                    (id, n)
                })
                .collect()
        })
        .collect();
    assert!(
        !in_flight[0].is_empty() || !in_flight[1].is_empty(),
        "the request that closed the gate was in flight at the kill"
    );
    gate.open();
    tokio::time::timeout(Duration::from_secs(15), writing)
        .await
        .expect("the writer gives up once the server is gone")
        .expect("the writer ran");
    assert!(
        writes.errors.lock().expect("errors").is_empty(),
        "no write was refused: {:#?}",
        writes.errors.lock().expect("errors")
    );

    let killed_at = Instant::now();
    let server = start(&database).await;
    let api = Api::of(&server);

    // What the database holds: one delivery per (event, webhook) for every acknowledged
    // event, and at most the one write in flight at the kill besides.
    let events = writes.events.lock().expect("events").clone();
    let acked: BTreeSet<&str> = events.iter().map(|(c, _)| c.as_str()).collect();
    let mut recorded: Vec<Vec<Delivery>> = Vec::new();
    for (i, webhook) in webhooks.iter().enumerate() {
        let all = deliveries(&api, webhook).await;
        let cursors: BTreeSet<&str> = all.iter().map(|d| d.cursor.as_str()).collect();
        assert_eq!(cursors.len(), all.len(), "webhook {i}: one per event");
        assert!(
            cursors.is_superset(&acked),
            "webhook {i}: a delivery for every acknowledged event; missing {:?}",
            acked.difference(&cursors).collect::<Vec<_>>()
        );
        assert!(
            all.len() <= acked.len() + 1,
            "webhook {i}: {} deliveries for {} acknowledged events",
            all.len(),
            acked.len()
        );
        recorded.push(all);
    }
    let started: HashSet<String> = writes
        .started
        .lock()
        .expect("started")
        .iter()
        .cloned()
        .collect();
    let created: HashSet<String> = writes
        .created
        .lock()
        .expect("created")
        .iter()
        .cloned()
        .collect();

    until(
        "every recorded delivery received and DELIVERED",
        SETTLE,
        || async {
            all_received_and_delivered(&api, &webhooks, &recorded, &sinks).await?;
            // Every execution in the database: the acknowledged starts', and one that a
            // start in flight at the kill may have committed.
            for id in &created {
                let execution = execution(&api, id).await;
                let must = started.contains(id);
                if (must || !execution.is_null()) && execution["status"] != "TRIGGERED" {
                    return Err(format!("execution of {id}: {execution}"));
                }
            }
            Ok(())
        },
    )
    .await;
    let caught_up = killed_at.elapsed();

    for (sink, open) in sinks.iter().chain([&executor_sink]).zip(&in_flight) {
        for (id, before) in open {
            assert!(
                sink.count(id) > *before,
                "{id}, in flight at the kill, was sent again after the restart"
            );
        }
    }

    let mut requests = 0;
    let mut duplicates = 0;
    for (i, webhook) in webhooks.iter().enumerate() {
        let now = deliveries(&api, webhook).await;
        let ids_then: BTreeSet<&str> = recorded[i].iter().map(|d| d.id.as_str()).collect();
        let ids_now: BTreeSet<&str> = now.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids_now, ids_then, "webhook {i}: no delivery came or went");
        assert!(now.iter().all(|d| d.status == "DELIVERED"), "{now:#?}");
        let by_id: HashMap<String, Delivery> =
            now.iter().map(|d| (d.id.clone(), d.clone())).collect();
        let got = sinks[i].got();
        let seen = check_requests(&format!("webhook {i}"), &got, &by_id);
        assert_eq!(seen.len(), now.len(), "webhook {i}: each received");
        requests += got.len();
        duplicates += got.len() - seen.len();
    }

    // Triggers: every acknowledged start's, signed; a start in flight at the kill may
    // have committed too, so any created deployment may appear.
    let triggers = executor_sink.got();
    let (executions, deployments) = check_triggers(&triggers, &created);
    assert!(
        deployments.is_superset(&started),
        "every acknowledged start triggered: missing {:?}",
        started.difference(&deployments).collect::<Vec<_>>()
    );
    for id in &created {
        let execution = execution(&api, id).await;
        assert_eq!(
            !execution.is_null(),
            deployments.contains(id),
            "{id}: triggered if and only if it has an execution: {execution}"
        );
    }

    eprintln!(
        "outbox kill -9 mid-send: killed after {received_at_kill} requests ({} in flight) with \
         {writes_at_kill} writes acknowledged (writer finished: {writer_done_at_kill}); {} events acknowledged, \
         {} deliveries recorded, {requests} webhook requests ({duplicates} repeats), {} \
         triggers for {} executions; caught up {caught_up:?} after the kill, test {:?}",
        in_flight.iter().map(Vec::len).sum::<usize>(),
        events.len(),
        recorded.iter().map(Vec::len).sum::<usize>(),
        triggers.len(),
        executions.len(),
        started_at.elapsed()
    );
    let _ = tokio::task::spawn_blocking(move || server.terminate()).await;
}
