//! Crash safety of the real binary: while eight clients write, the server is killed with
//! SIGKILL, restarted on the same database (the suite's engine: a SQLite file, or a
//! PostgreSQL database), and checked. Three cycles in one test.
//!
//! What must hold after every restart:
//! - every acknowledged write (a response with data and no errors) is there: its
//!   deployment, its event, and a status that is the acknowledged one or a later one;
//! - nothing else is there except, per client, the one write whose response was lost;
//! - every deployment's history is a consistent chain that ends in its current state;
//! - the feed lists every event once, in an order that agrees with each history;
//! - the database is intact (SQLite: `PRAGMA integrity_check` and the foreign keys;
//!   PostgreSQL: no event without its deployment), and the server keeps taking writes.
//!
//! At the end the last server is stopped with SIGTERM and the database is read once more
//! through `Store` directly.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shiplog::store::{DeploymentFilter, DeploymentKey, EventFilter, Store, StoreConfig};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use crate::helpers::{action, create_input, Engine, TestDb, CREATE};
use crate::process::{Server, STOP_TIMEOUT};

/// Kill/restart cycles in the one test.
const CYCLES: usize = 3;
/// Concurrent writing clients.
const WORKERS: usize = 8;
/// How long the clients write before each kill (varied, to land at different moments).
const KILL_AFTER_MS: [u64; CYCLES] = [350, 450, 550];
/// Bounds of each client: deployments per cycle, and time.
const MAX_DEPLOYMENTS_PER_WORKER: usize = 1_000;
const WORKER_TIME_LIMIT: Duration = Duration::from_secs(4);
/// Bound of every page walk.
const MAX_PAGES: usize = 1_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client")
}

// ---------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------

/// One acknowledged write: what the server said it committed.
#[derive(Debug, Clone)]
struct Ack {
    deployment: String,
    /// The deployment's status the server reported after the action.
    status: String,
    event: String,
    event_cursor: String,
    event_kind: String,
}

#[derive(Default)]
struct Load {
    acks: Mutex<Vec<Ack>>,
    /// Responses that carried errors (none are expected).
    errors: Mutex<Vec<Value>>,
    in_flight: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    fn ack_count(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }
}

/// Sends one mutation. `Some(payload)` when acknowledged; `None` when the outcome is
/// unknown (no complete response) or refused (recorded in `errors`).
async fn write(
    client: &reqwest::Client,
    url: &str,
    load: &Load,
    query: &str,
    variables: Value,
    field: &str,
) -> Option<Value> {
    load.in_flight.fetch_add(1, Ordering::SeqCst);
    let body = async {
        let response = client
            .post(url)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .ok()?;
        response.json::<Value>().await.ok()
    }
    .await;
    load.in_flight.fetch_sub(1, Ordering::SeqCst);
    let body = body?;
    let payload = &body["data"][field];
    if body.get("errors").is_some() || !payload.is_object() {
        load.errors.lock().expect("errors").push(body);
        return None;
    }
    let text = |v: &Value| v.as_str().expect("a string in the payload").to_owned();
    let ack = Ack {
        deployment: text(&payload["deployment"]["id"]),
        status: text(&payload["deployment"]["status"]),
        event: text(&payload["event"]["id"]),
        event_cursor: text(&payload["event"]["cursor"]),
        event_kind: text(&payload["event"]["kind"]),
    };
    assert_eq!(
        ack.status,
        text(&payload["event"]["toStatus"]),
        "payload status is the event's toStatus: {payload:#}"
    );
    load.acks.lock().expect("acks").push(ack);
    Some(payload.clone())
}

const APPROVE: (&str, &str, Option<&str>) = ("approveDeployment", "bob", None);
const REJECT: (&str, &str, Option<&str>) = ("rejectDeployment", "bob", Some("not now"));
const START: (&str, &str, Option<&str>) = ("startDeployment", "carol", None);
const SUCCEED: (&str, &str, Option<&str>) = ("succeedDeployment", "carol", Some("healthy"));
const FAIL: (&str, &str, Option<&str>) = ("failDeployment", "carol", Some("checks failed"));
const ROLL_BACK: (&str, &str, Option<&str>) =
    ("rollBackDeployment", "dave", Some("restore previous"));

/// Creates deployments one after another and moves each along one of four paths, until
/// a write gets no answer (the server is gone), `stop`, or a bound is reached.
async fn worker(
    client: reqwest::Client,
    url: String,
    load: Arc<Load>,
    cycle: usize,
    worker: usize,
) {
    let paths: [&[(&str, &str, Option<&str>)]; 4] = [
        &[APPROVE, START, SUCCEED],
        &[APPROVE, START, FAIL, ROLL_BACK],
        &[REJECT],
        &[APPROVE, START, SUCCEED, ROLL_BACK],
    ];
    let deadline = Instant::now() + WORKER_TIME_LIMIT;
    for n in 0..MAX_DEPLOYMENTS_PER_WORKER {
        if load.stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return;
        }
        // A service per cycle: a start cut short by the kill stays STARTED, and would
        // keep the next cycle's starts of the service ENVIRONMENT_BUSY.
        let mut input = create_input(&format!("svc-c{cycle}-w{worker}"), "staging");
        input["version"] = json!(format!("c{cycle}-w{worker}-n{n}"));
        let Some(created) = write(
            &client,
            &url,
            &load,
            CREATE,
            json!({ "input": input }),
            "createDeployment",
        )
        .await
        else {
            return;
        };
        let id = created["deployment"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        for &(mutation, actor, note) in paths[(worker + n) % paths.len()] {
            let variables = json!({ "input": { "id": id, "actor": actor, "note": note } });
            if write(&client, &url, &load, &action(mutation), variables, mutation)
                .await
                .is_none()
            {
                return;
            }
        }
    }
}

/// Runs the clients for `run_for`, kills the server with requests in flight, and
/// returns once every client has given up.
async fn write_then_kill(server: Server, load: &Arc<Load>, cycle: usize, run_for: Duration) {
    let client = client();
    let url = server.graphql_url();
    let acks_before = load.ack_count();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(client.clone(), url.clone(), load.clone(), cycle, w)))
        .collect();
    tokio::time::sleep(run_for).await;

    let in_flight = load.in_flight.load(Ordering::SeqCst);
    let finished = workers.iter().filter(|w| w.is_finished()).count();
    server.kill();
    load.stop.store(true, Ordering::SeqCst);

    for w in workers {
        tokio::time::timeout(REQUEST_TIMEOUT * 2, w)
            .await
            .expect("a client gives up once the server is gone")
            .expect("a client task");
    }
    load.stop.store(false, Ordering::SeqCst);
    {
        let errors = load.errors.lock().expect("errors");
        assert!(
            errors.is_empty(),
            "no write was refused; got {} errors, the first: {:#}",
            errors.len(),
            errors[0]
        );
    }
    assert_eq!(finished, 0, "every client was still writing at the kill");
    eprintln!(
        "crash cycle {cycle}: {} writes acknowledged in {run_for:?}, {in_flight} in flight at the kill",
        load.ack_count() - acks_before
    );
    assert!(
        load.ack_count() > acks_before,
        "some writes were acknowledged before the kill"
    );
}

// ---------------------------------------------------------------------------------------
// What is stored, read through the API or the store
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    id: String,
    /// The feed cursor (API) or sequence number (store).
    key: String,
    deployment: String,
    kind: String,
    actor: String,
    from: Option<String>,
    to: String,
    occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    id: String,
    requester: String,
    status: String,
    reviewed_by: Option<String>,
    reviewed_at_ms: Option<i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
    events: Vec<Event>,
}

/// The event feed in its order: (key, event id, deployment id).
type Feed = Vec<(String, String, String)>;

fn millis(value: &Value) -> i64 {
    let text = value.as_str().expect("a DateTime string");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text:?} is RFC 3339: {err}"))
        .timestamp_millis()
}

fn opt_string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string, got {value}"))
        .to_owned()
}

const ALL_DEPLOYMENTS: &str = r#"
query All($after: String) {
  deployments(first: 100, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id requester status reviewedBy reviewedAt createdAt updatedAt
      events { id cursor deploymentId kind actor fromStatus toStatus occurredAt }
    }
  }
}"#;

const ALL_EVENTS: &str = r#"
query Feed($after: String) {
  deploymentEvents(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id deploymentId } }
  }
}"#;

async fn query(client: &reqwest::Client, url: &str, document: &str, variables: Value) -> Value {
    let body: Value = client
        .post(url)
        .json(&json!({ "query": document, "variables": variables }))
        .send()
        .await
        .expect("the restarted server answers")
        .json()
        .await
        .expect("a JSON body");
    assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
    body["data"].clone()
}

async fn read_api(client: &reqwest::Client, url: &str) -> (Vec<Stored>, Feed) {
    let mut deployments = Vec::new();
    let mut total = None;
    let mut after = Value::Null;
    for page in 0.. {
        assert!(page < MAX_PAGES, "the deployment list ends");
        let data = query(client, url, ALL_DEPLOYMENTS, json!({ "after": after })).await;
        let conn = &data["deployments"];
        total.get_or_insert(conn["totalCount"].as_u64().expect("totalCount"));
        for node in conn["nodes"].as_array().expect("nodes") {
            let events = node["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| Event {
                    id: string(&e["id"]),
                    key: string(&e["cursor"]),
                    deployment: string(&e["deploymentId"]),
                    kind: string(&e["kind"]),
                    actor: string(&e["actor"]),
                    from: opt_string(&e["fromStatus"]),
                    to: string(&e["toStatus"]),
                    occurred_at_ms: millis(&e["occurredAt"]),
                })
                .collect();
            deployments.push(Stored {
                id: string(&node["id"]),
                requester: string(&node["requester"]),
                status: string(&node["status"]),
                reviewed_by: opt_string(&node["reviewedBy"]),
                reviewed_at_ms: (!node["reviewedAt"].is_null())
                    .then(|| millis(&node["reviewedAt"])),
                created_at_ms: millis(&node["createdAt"]),
                updated_at_ms: millis(&node["updatedAt"]),
                events,
            });
        }
        if !conn["pageInfo"]["hasNextPage"]
            .as_bool()
            .expect("hasNextPage")
        {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        total,
        Some(deployments.len() as u64),
        "totalCount is the number of deployments listed"
    );

    let mut feed = Vec::new();
    let mut after = Value::Null;
    for page in 0.. {
        assert!(page < MAX_PAGES, "the event feed ends");
        let data = query(client, url, ALL_EVENTS, json!({ "after": after })).await;
        let conn = &data["deploymentEvents"];
        for edge in conn["edges"].as_array().expect("edges") {
            feed.push((
                string(&edge["cursor"]),
                string(&edge["node"]["id"]),
                string(&edge["node"]["deploymentId"]),
            ));
        }
        if !conn["pageInfo"]["hasNextPage"]
            .as_bool()
            .expect("hasNextPage")
        {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    (deployments, feed)
}

async fn read_store(store: &Store) -> (Vec<Stored>, Feed) {
    let mut deployments = Vec::new();
    let mut after: Option<DeploymentKey> = None;
    for page in 0.. {
        assert!(page < MAX_PAGES, "the deployment list ends");
        let page = store
            .deployment_page(&DeploymentFilter::default(), 100, after)
            .await
            .expect("a page of deployments");
        after = page.items.last().map(DeploymentKey::of);
        deployments.extend(page.items);
        if !page.has_next {
            break;
        }
    }
    let ids: Vec<_> = deployments.iter().map(|d| d.id).collect();
    let mut events = store.events_of(&ids).await.expect("the events");
    let deployments = deployments
        .into_iter()
        .map(|d| Stored {
            id: d.id.to_string(),
            requester: d.requester.clone(),
            status: d.status.as_str().to_owned(),
            reviewed_by: d.reviewed_by.clone(),
            reviewed_at_ms: d.reviewed_at.map(|t| t.timestamp_millis()),
            created_at_ms: d.created_at.timestamp_millis(),
            updated_at_ms: d.updated_at.timestamp_millis(),
            events: events
                .remove(&d.id)
                .unwrap_or_default()
                .into_iter()
                .map(|s| Event {
                    id: s.event.id.to_string(),
                    key: s.seq.to_string(),
                    deployment: s.event.deployment_id.to_string(),
                    kind: s.event.kind.as_str().to_owned(),
                    actor: s.event.actor.clone(),
                    from: s.event.from_status.map(|s| s.as_str().to_owned()),
                    to: s.event.to_status.as_str().to_owned(),
                    occurred_at_ms: s.event.occurred_at.timestamp_millis(),
                })
                .collect(),
        })
        .collect();
    assert!(events.is_empty(), "no events of unlisted deployments");

    let mut feed = Vec::new();
    let mut last_seq: Option<i64> = None;
    for page in 0.. {
        assert!(page < MAX_PAGES, "the event feed ends");
        let page = store
            .event_page(&EventFilter::default(), 100, last_seq)
            .await
            .expect("a page of events");
        for s in page.items {
            assert!(
                last_seq.is_none_or(|last| s.seq > last),
                "sequence numbers strictly increase: {last_seq:?} then {}",
                s.seq
            );
            last_seq = Some(s.seq);
            feed.push((
                s.seq.to_string(),
                s.event.id.to_string(),
                s.event.deployment_id.to_string(),
            ));
        }
        if !page.has_next {
            break;
        }
    }
    (deployments, feed)
}

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

fn legal(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("PENDING_APPROVAL", "APPROVED")
            | ("PENDING_APPROVAL", "REJECTED")
            | ("APPROVED", "STARTED")
            | ("STARTED", "SUCCEEDED")
            | ("STARTED", "FAILED")
            | ("STARTED" | "SUCCEEDED" | "FAILED", "ROLLED_BACK")
    )
}

/// Every history is a chain that ends in the current state.
fn check_chains(deployments: &[Stored]) {
    let mut ids = HashSet::new();
    for d in deployments {
        assert!(ids.insert(&d.id), "deployment {} listed once", d.id);
        let first = d
            .events
            .first()
            .unwrap_or_else(|| panic!("{} has events", d.id));
        assert_eq!(first.kind, "CREATED", "{} starts with CREATED", d.id);
        assert_eq!(first.from, None, "{}: CREATED has no fromStatus", d.id);
        assert_eq!(first.to, "PENDING_APPROVAL", "{}: CREATED", d.id);
        assert_eq!(
            first.actor, d.requester,
            "{}: created by the requester",
            d.id
        );
        assert_eq!(first.occurred_at_ms, d.created_at_ms, "{}: createdAt", d.id);
        for pair in d.events.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            assert_eq!(
                next.from.as_deref(),
                Some(prev.to.as_str()),
                "{}: fromStatus follows the previous toStatus: {:#?}",
                d.id,
                d.events
            );
            assert!(legal(&prev.to, &next.to), "{}: {prev:?} -> {next:?}", d.id);
            assert_eq!(next.kind, next.to, "{}: kind names its toStatus", d.id);
            assert!(
                next.occurred_at_ms >= prev.occurred_at_ms,
                "{}: events in time order",
                d.id
            );
        }
        for e in &d.events {
            assert_eq!(e.deployment, d.id, "event {} belongs to {}", e.id, d.id);
        }
        let last = d.events.last().expect("events");
        assert_eq!(last.to, d.status, "{}: status is the last toStatus", d.id);
        assert_eq!(
            last.occurred_at_ms, d.updated_at_ms,
            "{}: updatedAt is the last occurredAt",
            d.id
        );
        let review = d
            .events
            .iter()
            .find(|e| e.kind == "APPROVED" || e.kind == "REJECTED");
        assert_eq!(
            d.reviewed_by.as_deref(),
            review.map(|e| e.actor.as_str()),
            "{}: reviewedBy",
            d.id
        );
        assert_eq!(
            d.reviewed_at_ms,
            review.map(|e| e.occurred_at_ms),
            "{}: reviewedAt",
            d.id
        );
    }
}

/// The feed holds every event once, and agrees with each deployment's history.
fn check_feed(deployments: &[Stored], feed: &Feed) {
    let mut keys = HashSet::new();
    let mut position = HashMap::new();
    for (i, (key, id, deployment)) in feed.iter().enumerate() {
        assert!(keys.insert(key), "feed cursor {key} appears once");
        assert!(
            position.insert(id, (i, key, deployment)).is_none(),
            "event {id} appears once in the feed"
        );
    }
    let total: usize = deployments.iter().map(|d| d.events.len()).sum();
    assert_eq!(
        feed.len(),
        total,
        "the feed has exactly the events of the deployments"
    );
    for d in deployments {
        let mut previous = None;
        for e in &d.events {
            let &(i, key, deployment) = position
                .get(&e.id)
                .unwrap_or_else(|| panic!("event {} of {} is in the feed", e.id, d.id));
            assert_eq!(key, &e.key, "event {} has its feed cursor", e.id);
            assert_eq!(deployment, &d.id, "event {} names its deployment", e.id);
            assert!(
                previous.is_none_or(|p| p < i),
                "{}: history order is feed order",
                d.id
            );
            previous = Some(i);
        }
    }
}

/// Every acknowledged write is there; beyond them, only the writes that were in flight at
/// a kill (at most one per client per kill) may be there.
fn check_acks(deployments: &[Stored], acks: &[Ack], kills: usize, cursors_comparable: bool) {
    let by_id: HashMap<&str, &Stored> = deployments.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut acked: HashMap<&str, Vec<&Ack>> = HashMap::new();
    for ack in acks {
        acked.entry(ack.deployment.as_str()).or_default().push(ack);
    }
    let mut unknown = 0;
    for d in deployments {
        if !acked.contains_key(d.id.as_str()) {
            // A creation whose answer was lost at a kill.
            assert_eq!(d.events.len(), 1, "{}: unacknowledged, only created", d.id);
            unknown += 1;
        }
    }
    for (id, acks) in &acked {
        let d = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged deployment {id} survives: {acks:#?}"));
        // One client moves a deployment one acknowledged step at a time, so its
        // acknowledged events are the start of its history, in order.
        assert!(
            d.events.len() >= acks.len(),
            "{id}: every acknowledged event survives: acked {acks:#?}, stored {:#?}",
            d.events
        );
        for (ack, e) in acks.iter().zip(&d.events) {
            assert_eq!(
                (
                    ack.event.as_str(),
                    ack.event_kind.as_str(),
                    ack.status.as_str()
                ),
                (e.id.as_str(), e.kind.as_str(), e.to.as_str()),
                "{id}: acknowledged events survive in order: acked {acks:#?}, stored {:#?}",
                d.events
            );
            if cursors_comparable {
                assert_eq!(ack.event_cursor, e.key, "{id}: the event keeps its cursor");
            }
        }
        let acked_status = &acks.last().expect("an ack").status;
        let later = d.events.len() - acks.len();
        assert!(
            later <= 1,
            "{id}: at most the one write in flight at a kill follows the acknowledged ones: {:#?}",
            d.events
        );
        assert!(
            d.status == *acked_status || (later == 1 && legal(acked_status, &d.status)),
            "{id}: status {} is the acknowledged {acked_status} or a later one",
            d.status
        );
        unknown += later;
    }
    assert!(
        unknown <= WORKERS * kills,
        "only writes in flight at the {kills} kill(s) are unacknowledged: {unknown}"
    );
}

fn check(deployments: &[Stored], feed: &Feed, acks: &[Ack], kills: usize, from_api: bool) {
    check_chains(deployments);
    check_feed(deployments, feed);
    check_acks(deployments, acks, kills, from_api);
}

async fn integrity_check(db: &TestDb) {
    if db.engine() == Engine::Postgres {
        let dangling = db
            .scalar(
                "SELECT COUNT(*) FROM deployment_events e \
                 LEFT JOIN deployments d ON d.id = e.deployment_id WHERE d.id IS NULL",
            )
            .await;
        assert_eq!(dangling, 0, "no event without its deployment");
        return;
    }
    let options = SqliteConnectOptions::new()
        .filename(db.path())
        .busy_timeout(Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("a plain connection to the database file");
    let result: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check runs");
    assert_eq!(result, vec!["ok".to_owned()], "PRAGMA integrity_check");
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .expect("foreign_key_check runs");
    assert!(dangling.is_empty(), "no event without its deployment");
    conn.close().await.expect("close the plain connection");
}

/// One more write on a restarted server, acknowledged like the others.
async fn create_one(url: &str, load: &Load) {
    let created = write(
        &client(),
        url,
        load,
        CREATE,
        json!({ "input": create_input("after-restart", "staging") }),
        "createDeployment",
    )
    .await;
    assert!(
        created.is_some(),
        "the restarted server takes writes: {:#?}",
        load.errors.lock().expect("errors")
    );
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_and_restart() {
    let started = Instant::now();
    let db = TestDb::new();
    let database = db.url();
    let load = Arc::new(Load::default());

    let mut server = Server::start(&database);
    let mut last_api = Vec::new();
    for (cycle, run_for) in KILL_AFTER_MS.iter().enumerate() {
        write_then_kill(server, &load, cycle, Duration::from_millis(*run_for)).await;
        let kills = cycle + 1;

        server = Server::start(&database);
        let url = server.graphql_url();
        let client = client();
        let acks = load.acks.lock().expect("acks").clone();
        let (deployments, feed) = read_api(&client, &url).await;
        check(&deployments, &feed, &acks, kills, true);
        integrity_check(&db).await;
        create_one(&url, &load).await;
        last_api = deployments;
        eprintln!(
            "crash cycle {cycle}: after the restart, {} deployments and {} events checked against {} acknowledged writes",
            last_api.len(),
            feed.len(),
            acks.len()
        );
    }

    let status = server.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "the last server stops on SIGTERM with 0 within {STOP_TIMEOUT:?}: {status:?}"
    );

    let acks = load.acks.lock().expect("acks").clone();
    let store = Store::open(&StoreConfig::new(database.clone()))
        .await
        .expect("the store opens the database");
    let (deployments, feed) = read_store(&store).await;
    check(&deployments, &feed, &acks, CYCLES, false);
    store.close().await.expect("close the store");
    integrity_check(&db).await;

    // The store sees what the API showed, plus the last creation.
    let summary = |list: &[Stored]| -> HashMap<String, (String, Vec<String>)> {
        list.iter()
            .map(|d| {
                let events = d.events.iter().map(|e| e.id.clone()).collect();
                (d.id.clone(), (d.status.clone(), events))
            })
            .collect()
    };
    let (before, after) = (summary(&last_api), summary(&deployments));
    assert_eq!(
        after.len(),
        before.len() + 1,
        "one creation after the last check"
    );
    for (id, seen) in &before {
        assert_eq!(
            after.get(id),
            Some(seen),
            "{id} unchanged since the API showed it"
        );
    }

    eprintln!(
        "crash test: {} acknowledged writes checked, {} deployments, {} events, in {:?}",
        acks.len(),
        deployments.len(),
        feed.len(),
        started.elapsed()
    );
}

/// A SIGTERM sent the moment the server says where it listens stops it cleanly (exit 0):
/// the handlers are installed before that line is written, not when the shutdown future
/// is first polled. Repeated, since the window it closes was short.
#[test]
fn a_sigterm_right_after_listening_stops_the_server_cleanly() {
    let db = TestDb::new();
    for round in 0..15 {
        let server = Server::start(db.url());
        let status = server.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "round {round}: exited with {status:?}"
        );
    }
}
