//! Start timeouts over HTTP and WebSocket: a STARTED deployment whose deadline passes is
//! failed by the server (actor `shiplog`) within 2 seconds, exactly once, seen live; the
//! deadline is kept at the start and after the outcome, survives a restart, and loses to
//! an outcome that commits first.
//!
//! Deadlines are 1 or 2 seconds. The only timed bound is the contract's: FAILED within
//! 2 s of the deadline, checked on the event's own time, and waited for with a margin.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shiplog::store::StoreError;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::helpers::{single_error, TestApp, TestDb};

/// The contract's bound, and the margin a loaded test machine gets on top of it.
const BOUND: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(1500);
const NOTE: &str = "start timeout of 1 s passed without an outcome";

fn note(seconds: i64) -> String {
    format!("start timeout of {seconds} s passed without an outcome")
}

const CONFIGURE: &str = r#"
mutation Configure($input: ConfigureEnvironmentInput!) {
  configureEnvironment(input: $input) { name startTimeoutSeconds }
}"#;

const READ: &str = r#"
query Read($id: ID!) {
  deployment(id: $id) {
    status startedAt startDeadline updatedAt
    events { kind actor note fromStatus toStatus occurredAt }
  }
}"#;

const START: &str = r#"
mutation Start($input: StartDeploymentInput!) {
  startDeployment(input: $input) {
    deployment { status startedAt startDeadline }
    event { occurredAt }
  }
}"#;

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a DateTime"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

async fn configure(app: &TestApp, environment: &str, seconds: Option<i64>) {
    let data = app
        .ok(
            CONFIGURE,
            json!({ "input": { "name": environment, "actor": "carol", "startTimeoutSeconds": seconds } }),
        )
        .await;
    assert_eq!(
        data["configureEnvironment"]["startTimeoutSeconds"],
        json!(seconds)
    );
}

/// An approved deployment of `service` in `environment`.
async fn approved(app: &TestApp, service: &str, environment: &str) -> String {
    let id = app.create(service, environment).await;
    app.act("approveDeployment", &id, "bob", None).await;
    id
}

/// Starts it; answers the deployment as the start left it.
async fn start(app: &TestApp, id: &str) -> Value {
    let data = app
        .ok(
            START,
            json!({ "input": { "id": id, "actor": "deploybot" } }),
        )
        .await;
    let deployment = data["startDeployment"]["deployment"].clone();
    assert_eq!(deployment["status"], "STARTED");
    assert_eq!(
        deployment["startedAt"], data["startDeployment"]["event"]["occurredAt"],
        "startedAt is the time of the STARTED event"
    );
    deployment
}

async fn read(app: &TestApp, id: &str) -> Value {
    app.ok(READ, json!({ "id": id })).await["deployment"].clone()
}

fn events_of_kind<'a>(deployment: &'a Value, kind: &str) -> Vec<&'a Value> {
    deployment["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Polls until the deployment is no longer STARTED, for at most the bound plus the margin
/// after `deadline`. Answers it as it then is.
async fn settled(app: &TestApp, id: &str, deadline: DateTime<Utc>) -> Value {
    let left = (deadline - Utc::now()).to_std().unwrap_or_default();
    let give_up = Instant::now() + left + BOUND + MARGIN;
    loop {
        let deployment = read(app, id).await;
        if deployment["status"] != "STARTED" {
            return deployment;
        }
        assert!(
            Instant::now() < give_up,
            "still STARTED {:?} after its deadline",
            BOUND + MARGIN
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that the deployment was failed by the timeout, once, within the bound.
fn assert_timed_out(deployment: &Value, deadline: DateTime<Utc>) {
    assert_eq!(deployment["status"], "FAILED", "{deployment:#}");
    let failed = events_of_kind(deployment, "FAILED");
    assert_eq!(failed.len(), 1, "exactly one FAILED event: {deployment:#}");
    assert_eq!(failed[0]["actor"], "shiplog");
    let timeout = deadline - time(&deployment["startedAt"]);
    assert_eq!(failed[0]["note"], note(timeout.num_seconds()));
    assert_eq!(failed[0]["fromStatus"], "STARTED");
    let at = time(&failed[0]["occurredAt"]);
    assert!(
        at >= deadline,
        "failed at {at}, before its deadline {deadline}"
    );
    assert!(
        at - deadline <= chrono::Duration::from_std(BOUND).unwrap(),
        "failed at {at}, more than {BOUND:?} after its deadline {deadline}"
    );
    assert_eq!(
        deployment["startDeadline"],
        json!(deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "the deadline is kept after the outcome"
    );
}

/// A `graphql-transport-ws` client with one subscription to a deployment's events.
struct Watcher {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Watcher {
    async fn watch(app: &TestApp, id: &str) -> Self {
        let mut request = format!("ws://{}/graphql/ws", app.addr)
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect the WebSocket");
        let mut watcher = Self { ws };
        watcher
            .send(json!({ "type": "connection_init", "payload": {} }))
            .await;
        assert_eq!(watcher.receive().await["type"], "connection_ack");
        // After the deployment's latest event: a subscription starts when the server
        // first runs it, which no message tells, so what commits meanwhile comes replayed.
        let data = app
            .ok(
                "query L($id: ID!) { deployment(id: $id) { events { cursor } } }",
                json!({ "id": id }),
            )
            .await;
        let after = data["deployment"]["events"]
            .as_array()
            .and_then(|events| events.last())
            .map(|event| event["cursor"].clone())
            .expect("an event");
        watcher
            .send(json!({
                "id": "1", "type": "subscribe",
                "payload": {
                    "query": "subscription W($id: ID, $after: String) { deploymentEvents(filter: { deploymentId: $id }, after: $after) { kind actor note toStatus } }",
                    "variables": { "id": id, "after": after }
                }
            }))
            .await;
        watcher
    }

    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send a message");
    }

    async fn receive(&mut self) -> Value {
        loop {
            let message = timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a message");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                match value["type"].as_str() {
                    Some("ping") => self.send(json!({ "type": "pong" })).await,
                    Some("pong") => {}
                    _ => return value,
                }
            }
        }
    }

    /// The next event of the subscription.
    async fn next_event(&mut self) -> Value {
        let message = self.receive().await;
        assert_eq!(message["type"], "next", "{message}");
        message["payload"]["data"]["deploymentEvents"].clone()
    }
}

#[tokio::test]
async fn a_start_past_its_deadline_is_failed_by_shiplog_once_and_seen_live() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    configure(&app, "staging", Some(1)).await;
    let id = approved(&app, "billing", "staging").await;
    let mut watcher = Watcher::watch(&app, &id).await;
    let started = start(&app, &id).await;
    let started_at = time(&started["startedAt"]);
    let deadline = time(&started["startDeadline"]);
    assert_eq!(deadline - started_at, chrono::Duration::seconds(1));
    assert_eq!(watcher.next_event().await["kind"], "STARTED");

    let deployment = settled(&app, &id, deadline).await;
    assert_timed_out(&deployment, deadline);
    assert_eq!(deployment["startedAt"], started["startedAt"]);
    let live = watcher.next_event().await;
    assert_eq!(
        live,
        json!({ "kind": "FAILED", "actor": "shiplog", "note": NOTE, "toStatus": "FAILED" })
    );

    // Exactly once: nothing more comes, live or stored.
    sleep(Duration::from_millis(500)).await;
    let again = read(&app, &id).await;
    assert_eq!(again["events"], deployment["events"]);
    assert!(
        timeout(Duration::from_millis(200), watcher.receive())
            .await
            .is_err(),
        "no second event"
    );
    // A late attempt records nothing either.
    let refused = app
        .store
        .time_out(Uuid::parse_str(&id).unwrap())
        .await
        .expect_err("no longer STARTED");
    assert!(matches!(refused, StoreError::Refused(_)), "{refused:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_deadline_is_null_without_a_timeout_and_kept_after_the_outcome() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;

    let id = approved(&app, "billing", "staging").await;
    let before = read(&app, &id).await;
    assert_eq!(before["startedAt"], Value::Null);
    assert_eq!(before["startDeadline"], Value::Null);
    let started = start(&app, &id).await;
    assert_eq!(
        started["startDeadline"],
        Value::Null,
        "no timeout, no deadline"
    );
    app.act("succeedDeployment", &id, "deploybot", None).await;
    let after = read(&app, &id).await;
    assert_eq!(after["startedAt"], started["startedAt"]);
    assert_eq!(after["startDeadline"], Value::Null);

    configure(&app, "testing", Some(600)).await;
    let id = approved(&app, "billing", "testing").await;
    let started = start(&app, &id).await;
    assert_eq!(
        time(&started["startDeadline"]) - time(&started["startedAt"]),
        chrono::Duration::seconds(600)
    );
    app.act("succeedDeployment", &id, "deploybot", None).await;
    app.act("rollBackDeployment", &id, "carol", Some("slow"))
        .await;
    let after = read(&app, &id).await;
    assert_eq!(after["status"], "ROLLED_BACK");
    assert_eq!(after["startedAt"], started["startedAt"]);
    assert_eq!(after["startDeadline"], started["startDeadline"]);
    assert!(events_of_kind(&after, "FAILED").is_empty());

    // Not due: the store refuses a timeout of a deployment whose deadline is to come.
    let id = approved(&app, "payments", "testing").await;
    start(&app, &id).await;
    let refused = app
        .store
        .time_out(Uuid::parse_str(&id).unwrap())
        .await
        .expect_err("not due");
    assert!(matches!(refused, StoreError::Refused(_)), "{refused:?}");
    assert_eq!(read(&app, &id).await["status"], "STARTED");
    app.stop().await;
}

#[tokio::test]
async fn configuration_after_the_start_does_not_move_the_deadline() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    configure(&app, "staging", Some(1)).await;
    configure(&app, "testing", Some(600)).await;
    let short = approved(&app, "billing", "staging").await;
    let long = approved(&app, "billing", "testing").await;
    let short_started = start(&app, &short).await;
    let long_started = start(&app, &long).await;
    // Lengthened, removed; and shortened.
    configure(&app, "staging", Some(2_592_000)).await;
    configure(&app, "staging", None).await;
    configure(&app, "testing", Some(1)).await;

    let deadline = time(&short_started["startDeadline"]);
    let deployment = settled(&app, &short, deadline).await;
    assert_timed_out(&deployment, deadline);

    // Past what the shortened timeout would have allowed, and the bound: still STARTED.
    let would_be = time(&long_started["startedAt"]) + chrono::Duration::seconds(1);
    let wait = (would_be - Utc::now()).to_std().unwrap_or_default() + BOUND + MARGIN;
    sleep(wait).await;
    let long_now = read(&app, &long).await;
    assert_eq!(long_now["status"], "STARTED");
    assert_eq!(long_now["startDeadline"], long_started["startDeadline"]);
    app.stop().await;
}

#[tokio::test]
async fn deadlines_that_passed_while_the_server_was_down_are_handled_right_after_start() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    configure(&app, "staging", Some(2)).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(approved(&app, &format!("svc-{i}"), "staging").await);
    }
    let mut deadlines = Vec::new();
    for id in &ids {
        deadlines.push(time(&start(&app, id).await["startDeadline"]));
    }
    app.stop().await;
    {
        // Stopped before the first deadline: nothing failed them.
        let store = db.open().await;
        for id in &ids {
            let stored = store
                .deployment(Uuid::parse_str(id).unwrap())
                .await
                .expect("read")
                .expect("there");
            assert_eq!(stored.status, shiplog::domain::Status::Started);
        }
        store.close().await.expect("close");
    }
    // Down until every deadline has passed.
    let last = *deadlines.iter().max().unwrap();
    sleep((last - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300)).await;

    let restarted_at = Utc::now();
    let app = TestApp::start(&db, &[]).await;
    let mut histories = Vec::new();
    for (id, deadline) in ids.iter().zip(&deadlines) {
        let deployment = settled(&app, id, *deadline).await;
        assert_eq!(deployment["status"], "FAILED");
        let failed = events_of_kind(&deployment, "FAILED");
        assert_eq!(failed.len(), 1, "{deployment:#}");
        assert_eq!(failed[0]["actor"], "shiplog");
        assert_eq!(failed[0]["note"], note(2));
        let at = time(&failed[0]["occurredAt"]);
        assert!(
            at >= restarted_at && at - restarted_at <= chrono::Duration::from_std(BOUND).unwrap(),
            "failed at {at}, not within {BOUND:?} of the restart at {restarted_at}"
        );
        histories.push(deployment["events"].clone());
    }
    app.stop().await;

    // And a third start finds nothing more to do.
    let app = TestApp::start(&db, &[]).await;
    sleep(Duration::from_millis(300)).await;
    for (id, history) in ids.iter().zip(histories) {
        assert_eq!(read(&app, id).await["events"], history);
    }
    app.stop().await;
}

#[tokio::test]
async fn an_outcome_that_commits_first_wins_over_the_timeout() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    configure(&app, "staging", Some(1)).await;
    // Succeeded right after the start (well before the deadline), and at moments around
    // the deadline, where either may commit first.
    let offsets_ms: [i64; 6] = [-900, -40, -10, 0, 10, 40];
    let mut ids = Vec::new();
    for (i, _) in offsets_ms.iter().enumerate() {
        ids.push(approved(&app, &format!("svc-{i}"), "staging").await);
    }
    let mut deadlines = Vec::new();
    for id in &ids {
        deadlines.push(time(&start(&app, id).await["startDeadline"]));
    }
    let races = ids
        .iter()
        .zip(&deadlines)
        .zip(offsets_ms)
        .map(|((id, deadline), offset)| {
            let app = &app;
            async move {
                let at = *deadline + chrono::Duration::milliseconds(offset);
                sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
                let body = app
                    .graphql(
                        &crate::helpers::action("succeedDeployment"),
                        json!({ "input": { "id": id, "actor": "deploybot" } }),
                    )
                    .await;
                (offset, body)
            }
        });
    let answers = futures_util::future::join_all(races).await;

    let mut succeeded = 0;
    for ((id, deadline), (offset, body)) in ids.iter().zip(&deadlines).zip(answers) {
        let won = body.get("errors").is_none();
        if !won {
            let (code, error) = single_error(&body);
            assert_eq!(code, "CONFLICT", "{body:#}");
            assert_eq!(error["extensions"]["status"], "FAILED", "{body:#}");
        }
        let deployment = settled(&app, id, *deadline).await;
        let outcomes: Vec<&Value> = deployment["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["fromStatus"] == "STARTED")
            .collect();
        assert_eq!(outcomes.len(), 1, "exactly one outcome: {deployment:#}");
        if won {
            succeeded += 1;
            assert_eq!(deployment["status"], "SUCCEEDED", "offset {offset}");
            assert_eq!(outcomes[0]["kind"], "SUCCEEDED");
        } else {
            assert_timed_out(&deployment, *deadline);
        }
        if offset == -900 {
            assert!(won, "a succeed long before the deadline wins: {body:#}");
        }
    }
    assert!(succeeded >= 1);

    // Past every deadline and the bound: the SUCCEEDED ones stay so, with one outcome each.
    let last = *deadlines.iter().max().unwrap();
    sleep((last - Utc::now()).to_std().unwrap_or_default() + BOUND).await;
    for id in &ids {
        let deployment = read(&app, id).await;
        let outcomes = deployment["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["fromStatus"] == "STARTED")
            .count();
        assert_eq!(outcomes, 1, "{deployment:#}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_next_deadline_is_one_step_down_its_index() {
    use sqlx::Connection;
    let db = TestDb::sqlite();
    db.open().await.close().await.expect("close");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db.path());
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("a plain connection");
    let plan = crate::helpers::query_plan(&mut conn, shiplog::store::NEXT_START_DEADLINE).await;
    assert!(
        plan.contains("deployments_start_deadlines"),
        "uses the partial index: {plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    conn.close().await.expect("close");
}

/// Deployments that started before start timeouts existed get their start time from
/// their STARTED event, and no deadline: none is failed for it.
#[tokio::test]
async fn an_upgraded_database_gets_start_times_from_the_started_events() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::ConnectionTrait;
    let db = TestDb::new();
    let conn = db.connect().await;
    Migrator::up(&conn, Some(1))
        .await
        .expect("the v1 migration");
    let (a, b, c) = (
        "0193a1b2-0000-7000-8000-00000000000a",
        "0193a1b2-0000-7000-8000-00000000000b",
        "0193a1b2-0000-7000-8000-00000000000c",
    );
    conn.execute_unprepared(&format!(
        r#"
        INSERT INTO deployments (id, service, environment, version, requester, work_refs, risk,
            rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at)
        VALUES
          ('{a}', 'billing', 'staging', 'v1', 'alice', '["JIRA-1"]', NULL, 'redeploy v0',
           'SUCCEEDED', 'bob', 1700000001000, 1700000000000, 1700000003000),
          ('{b}', 'billing', 'staging', 'v2', 'alice', '["JIRA-2"]', NULL, 'redeploy v1',
           'APPROVED', 'bob', 1700000005000, 1700000004000, 1700000005000),
          ('{c}', 'search', 'staging', 'v3', 'alice', '["JIRA-3"]', NULL, 'redeploy v2',
           'STARTED', 'bob', 1700000007000, 1700000006000, 1700000008000);
        INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor,
            note, from_status, to_status, occurred_at)
        VALUES
          ('0193a1b2-0000-7000-8000-0000000000e1', '{a}', 'billing', 'staging', 'CREATED',
           'alice', NULL, NULL, 'PENDING_APPROVAL', 1700000000000),
          ('0193a1b2-0000-7000-8000-0000000000e2', '{a}', 'billing', 'staging', 'APPROVED',
           'bob', NULL, 'PENDING_APPROVAL', 'APPROVED', 1700000001000),
          ('0193a1b2-0000-7000-8000-0000000000e3', '{a}', 'billing', 'staging', 'STARTED',
           'bot', NULL, 'APPROVED', 'STARTED', 1700000002000),
          ('0193a1b2-0000-7000-8000-0000000000e4', '{a}', 'billing', 'staging', 'SUCCEEDED',
           'bot', NULL, 'STARTED', 'SUCCEEDED', 1700000003000),
          ('0193a1b2-0000-7000-8000-0000000000e5', '{b}', 'billing', 'staging', 'CREATED',
           'alice', NULL, NULL, 'PENDING_APPROVAL', 1700000004000),
          ('0193a1b2-0000-7000-8000-0000000000e6', '{b}', 'billing', 'staging', 'APPROVED',
           'bob', NULL, 'PENDING_APPROVAL', 'APPROVED', 1700000005000),
          ('0193a1b2-0000-7000-8000-0000000000e7', '{c}', 'search', 'staging', 'CREATED',
           'alice', NULL, NULL, 'PENDING_APPROVAL', 1700000006000),
          ('0193a1b2-0000-7000-8000-0000000000e8', '{c}', 'search', 'staging', 'APPROVED',
           'bob', NULL, 'PENDING_APPROVAL', 'APPROVED', 1700000007000),
          ('0193a1b2-0000-7000-8000-0000000000e9', '{c}', 'search', 'staging', 'STARTED',
           'bot', NULL, 'APPROVED', 'STARTED', 1700000008000);
        "#
    ))
    .await
    .expect("v1 rows");
    conn.close().await.expect("close");

    let app = TestApp::start(&db, &[]).await;
    let expected = [
        (a, "SUCCEEDED", json!("2023-11-14T22:13:22.000Z")),
        (b, "APPROVED", Value::Null),
        (c, "STARTED", json!("2023-11-14T22:13:28.000Z")),
    ];
    for (id, status, started_at) in expected {
        let deployment = read(&app, id).await;
        assert_eq!(deployment["status"], status, "{id}");
        assert_eq!(deployment["startedAt"], started_at, "{id}");
        assert_eq!(deployment["startDeadline"], Value::Null, "{id}");
    }
    assert_eq!(
        app.store.next_start_deadlines().await.expect("read"),
        vec![]
    );
    app.stop().await;
}
