//! Webhooks and deploy executors end to end: a server on port 0, receivers and a fake
//! GitHub on 127.0.0.1 that record what they get, signatures checked with the
//! `standardwebhooks` crate (an implementation independent of ours).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use serde_json::{json, Value};
use shiplog::domain::integrations::RetryPolicy;
use shiplog::integrations::SenderOptions;
use shiplog::outbox::OutboxSender;
use shiplog::server::ServerOptions;

use crate::helpers::{single_error, RefusingPort, TestApp, TestDb};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on 127.0.0.1:0: answers the scripted statuses in order, then 200
/// (or `then`), and records every request.
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Self {
        Self::start_on("127.0.0.1:0", script).await
    }

    pub async fn start_on(addr: &str, script: &[u16]) -> Self {
        Self::start_slow(addr, script, Duration::ZERO).await
    }

    /// A receiver that takes `delay` over each answer.
    pub async fn start_slow(addr: &str, script: &[u16], delay: Duration) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<u16>>> =
            Arc::new(Mutex::new(script.iter().copied().collect()));
        let (log, answers) = (received.clone(), script.clone());
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, answers) = (log.clone(), answers.clone());
            async move {
                log.lock().unwrap().push(Received {
                    path: uri.path().to_owned(),
                    headers,
                    body,
                });
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                tokio::time::sleep(delay).await;
                StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            received,
            task,
        }
    }

    pub fn got(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come (or fails the test after 20 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..2_000 {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} requests, got {}", self.got().len());
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Checks a request's signature with the standardwebhooks crate.
pub fn verify(secret: &str, request: &Received) {
    let verifier = standardwebhooks::Webhook::new(secret).expect("a valid secret");
    verifier
        .verify(&request.body, &request.headers)
        .expect("a valid Standard Webhooks signature");
}

/// Server options whose outbox may reach 127.0.0.1, GitHub at `github`.
pub fn options(github: Option<&str>) -> ServerOptions {
    let sender = SenderOptions {
        allow_private: true,
        github_api_url: github.unwrap_or("http://127.0.0.1:9").to_owned(),
        ..Default::default()
    };
    ServerOptions {
        outbox: Some(OutboxSender::new(sender).expect("an HTTP client")),
        ..ServerOptions::default()
    }
}

/// Retries after 50 ms, 100 ms, ...: fast enough for tests.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        backoff: Duration::from_millis(50),
        max_attempts,
    }
}

pub const CREATE_WEBHOOK: &str = r#"
mutation($input: CreateWebhookInput!) {
  createWebhook(input: $input) { id url service environment kind active createdBy createdAt }
}"#;

pub async fn create_webhook(app: &TestApp, url: &str, extra: Value) -> String {
    let mut input = json!({ "url": url, "secret": SECRET, "actor": "ops" });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            input.insert(k.clone(), v.clone());
        }
    }
    let data = app.ok(CREATE_WEBHOOK, json!({ "input": input })).await;
    data["createWebhook"]["id"].as_str().unwrap().to_owned()
}

const DELIVERIES: &str = r#"
query($id: ID!) {
  node(id: $id) {
    ... on Webhook {
      deliveries(first: 100) {
        nodes { id status nextAttemptAt deliveredAt event { cursor kind }
                attempts { at statusCode error durationMs } }
      }
    }
  }
}"#;

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let data = app.ok(DELIVERIES, json!({ "id": webhook })).await;
    data["node"]["deliveries"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every delivery of the webhook has `status` (20 s at most).
async fn settled(app: &TestApp, webhook: &str, n: usize, status: &str) -> Vec<Value> {
    for _ in 0..400 {
        let all = deliveries(app, webhook).await;
        if all.len() == n && all.iter().all(|d| d["status"] == status) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "deliveries did not settle as {status}: {:#}",
        json!(deliveries(app, webhook).await)
    );
}

#[tokio::test]
async fn an_event_is_delivered_signed_with_the_event_and_deployment_as_the_api_shows_them() {
    let receiver = Receiver::start(&[]).await;
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(None), fast_retry(3)).await;
    let webhook = create_webhook(&app, &receiver.url, json!({})).await;

    let id = app.create("payments", "staging").await;
    let got = receiver.wait_for(1).await;
    let request = &got[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("content-type"), "application/json");
    verify(SECRET, request);
    let body = request.json();
    assert_eq!(body["type"], "deployment.created");

    // The same fields, names and formats as the API.
    let api = app
        .ok(
            r#"query($id: ID!) { deployment(id: $id) {
                 id service environment version requester workRefs risk rollbackPlan status
                 reviewedBy reviewedAt createdAt updatedAt requiredApprovals startedAt
                 startDeadline releaseNotes
                 events { id cursor deploymentId kind actor note fromStatus toStatus occurredAt overrides } } }"#,
            json!({ "id": id }),
        )
        .await;
    let mut deployment = api["deployment"].clone();
    let event = deployment["events"][0].clone();
    deployment.as_object_mut().unwrap().remove("events");
    assert_eq!(body["data"]["deployment"], deployment);
    assert_eq!(body["data"]["event"], event);
    assert_eq!(body["timestamp"], event["occurredAt"]);

    // The delivery log: one delivery, DELIVERED, one attempt, webhook-id its id.
    let all = settled(&app, &webhook, 1, "DELIVERED").await;
    assert_eq!(all[0]["id"], request.header("webhook-id"));
    assert_eq!(all[0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(all[0]["attempts"][0]["statusCode"], 200);
    assert_eq!(all[0]["attempts"][0]["error"], Value::Null);
    assert_eq!(all[0]["event"]["cursor"], event["cursor"]);
    assert!(all[0]["deliveredAt"].is_string());
    assert_eq!(all[0]["nextAttemptAt"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn three_failures_then_success_make_four_attempts_with_one_webhook_id() {
    let receiver = Receiver::start(&[500, 500, 500]).await;
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(None), fast_retry(8)).await;
    let webhook = create_webhook(&app, &receiver.url, json!({})).await;
    app.create("payments", "staging").await;

    let got = receiver.wait_for(4).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for request in &got {
        verify(SECRET, request);
    }
    let all = settled(&app, &webhook, 1, "DELIVERED").await;
    let codes: Vec<&Value> = all[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["statusCode"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(500), &json!(200)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 4, "nothing more after DELIVERED");
    app.stop().await;
}

#[tokio::test]
async fn the_last_failed_attempt_makes_it_failed_and_redelivery_makes_exactly_one_more() {
    let receiver = Receiver::start(&[503, 503, 503]).await;
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(None), fast_retry(2)).await;
    let webhook = create_webhook(&app, &receiver.url, json!({})).await;
    app.create("payments", "staging").await;

    let all = settled(&app, &webhook, 1, "FAILED").await;
    assert_eq!(all[0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(all[0]["attempts"][1]["error"], "HTTP 503");
    assert_eq!(all[0]["nextAttemptAt"], Value::Null);
    let delivery = all[0]["id"].as_str().unwrap().to_owned();

    // One more attempt: it fails (503), the status stays FAILED, nothing else follows.
    let redeliver = r#"mutation($input: RedeliverWebhookDeliveryInput!) {
        redeliverWebhookDelivery(input: $input) { id status } }"#;
    app.ok(
        redeliver,
        json!({ "input": { "id": delivery, "actor": "ops" } }),
    )
    .await;
    receiver.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = settled(&app, &webhook, 1, "FAILED").await;
    assert_eq!(all[0]["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(receiver.got().len(), 3);

    // Again: now the receiver answers 200, and it is DELIVERED.
    app.ok(
        redeliver,
        json!({ "input": { "id": delivery, "actor": "ops" } }),
    )
    .await;
    let all = settled(&app, &webhook, 1, "DELIVERED").await;
    assert_eq!(all[0]["attempts"].as_array().unwrap().len(), 4);
    let got = receiver.got();
    assert!(got.iter().all(|r| r.header("webhook-id") == delivery));

    let body = app
        .graphql(
            redeliver,
            json!({ "input": { "id": uuid::Uuid::now_v7().to_string(), "actor": "ops" } }),
        )
        .await;
    assert_eq!(single_error(&body).0, "NOT_FOUND");
    app.stop().await;
}

#[tokio::test]
async fn filters_choose_the_events_and_updates_tell_absent_from_null() {
    let receiver = Receiver::start(&[]).await;
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(None), fast_retry(3)).await;
    let webhook = create_webhook(
        &app,
        &receiver.url,
        json!({ "service": "payments", "kind": ["APPROVED", "APPROVED", "STARTED"] }),
    )
    .await;
    let listed = app
        .ok(
            "{ webhooks { id service environment kind active } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["webhooks"],
        json!([{ "id": webhook, "service": "payments", "environment": null,
                 "kind": ["APPROVED", "STARTED"], "active": true }])
    );

    let other = app.create("search", "staging").await;
    app.act("approveDeployment", &other, "bob", None).await;
    let id = app.create("payments", "staging").await;
    app.act("approveDeployment", &id, "bob", None).await;
    let got = receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.got().len(), 1, "only payments' APPROVED");
    assert_eq!(got[0].json()["type"], "deployment.approved");

    // Absent fields stay; an explicit null clears a filter.
    let update = r#"mutation($input: UpdateWebhookInput!) {
        updateWebhook(input: $input) { id service environment kind active } }"#;
    let data = app
        .ok(
            update,
            json!({ "input": { "id": webhook, "actor": "ops", "kind": null } }),
        )
        .await;
    assert_eq!(
        data["updateWebhook"],
        json!({ "id": webhook, "service": "payments", "environment": null, "kind": null, "active": true })
    );
    let data = app
        .ok(
            update,
            json!({ "input": { "id": webhook, "actor": "ops", "active": false } }),
        )
        .await;
    assert_eq!(data["updateWebhook"]["active"], false);
    app.act("startDeployment", &id, "carol", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1, "an inactive webhook gets nothing");

    // Null for a required field is refused, with every problem at once.
    let body = app
        .graphql(
            update,
            json!({ "input": { "id": webhook, "actor": " ", "url": null, "secret": "nope" } }),
        )
        .await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    let fields: Vec<&str> = error["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["input.actor", "input.url", "input.secret"]);
    assert!(
        !body.to_string().contains("nope"),
        "the secret is not echoed"
    );

    // Deleted: gone from the list, and its deliveries with it.
    let data = app
        .ok(
            r#"mutation($input: DeleteWebhookInput!) { deleteWebhook(input: $input) { id } }"#,
            json!({ "input": { "id": webhook, "actor": "ops" } }),
        )
        .await;
    assert_eq!(data["deleteWebhook"]["id"], webhook);
    let listed = app.ok("{ webhooks { id } }", json!({})).await;
    assert_eq!(listed["webhooks"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn urls_and_secrets_are_checked_and_secrets_never_shown() {
    let db = TestDb::new();
    // The default sender: private addresses refused.
    let app = TestApp::start(&db, &["production"]).await;
    let cases = [
        (json!({ "url": "http://127.0.0.1:9/hook" }), "input.url"),
        (json!({ "url": "http://localhost:9/hook" }), "input.url"),
        (json!({ "url": "ftp://example.com/x" }), "input.url"),
        (json!({ "url": "not a url" }), "input.url"),
        (
            json!({ "url": "https://example.com/x", "secret": "whsec_c2hvcnQ=" }),
            "input.secret",
        ),
        (
            json!({ "url": "https://example.com/x", "secret": "plain" }),
            "input.secret",
        ),
    ];
    for (input, field) in cases {
        let mut full = json!({ "url": "", "secret": SECRET, "actor": "ops" });
        for (k, v) in input.as_object().unwrap() {
            full[k] = v.clone();
        }
        let body = app.graphql(CREATE_WEBHOOK, json!({ "input": full })).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{input}");
        assert_eq!(error["extensions"]["fields"][0]["field"], field, "{body:#}");
        assert!(!body.to_string().contains(SECRET), "{body}");
    }
    // No field of any type can show a secret.
    let schema = shiplog::graphql::sdl();
    for ty in ["Webhook", "DeploymentTarget", "WebhookDelivery"] {
        let start = schema.find(&format!("type {ty} ")).expect("the type");
        let end = schema[start..].find('}').unwrap() + start;
        assert!(
            !schema[start..end].contains("secret"),
            "{ty} has no secret field"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_dead_receiver_holds_back_no_other_webhook() {
    // A port that refuses connections, and that no receiver can be given.
    let refusing = RefusingPort::new();
    let dead = format!("http://{}/hook", refusing.addr);
    let receivers = [
        Receiver::start(&[]).await,
        Receiver::start(&[]).await,
        Receiver::start(&[]).await,
        Receiver::start(&[]).await,
    ];
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(None), fast_retry(3)).await;
    create_webhook(&app, &dead, json!({})).await;
    for r in &receivers {
        create_webhook(&app, &r.url, json!({})).await;
    }
    // 1,000 events: 1,000 deployments created, 8 clients at a time.
    let events = 1_000;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for client in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for i in (client..events).step_by(8) {
                app.create(&format!("svc-{i}"), "staging").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for r in &receivers {
        let got = r.wait_for(events).await;
        let cursors: Vec<i64> = got
            .iter()
            .map(|request| {
                let cursor = request.json()["data"]["event"]["cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                seq_of(&cursor)
            })
            .collect();
        assert_eq!(cursors.len(), events);
        assert!(
            cursors.windows(2).all(|w| w[0] < w[1]),
            "every event once, in commit order"
        );
    }
    for r in &receivers {
        r.stop();
    }
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("the app is still shared"),
    }
}

/// The sequence number inside an event cursor (opaque to clients; tests may look).
pub fn seq_of(cursor: &str) -> i64 {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .unwrap();
    String::from_utf8(text).unwrap()[3..].parse().unwrap()
}

// ------------------------------------------------------------------ executors

/// A fake GitHub: records dispatches, answers `status`.
async fn github(script: &[u16]) -> Receiver {
    Receiver::start(script).await
}

pub const CONFIGURE: &str = r#"
mutation($input: ConfigureDeploymentTargetInput!) {
  configureDeploymentTarget(input: $input) {
    service environment executor repository workflow workflowRef environmentInput refInput
    tokenEnv url updatedBy updatedAt
  }
}"#;

const EXECUTION: &str = r#"
query($id: ID!) { deployment(id: $id) { status
  execution { executor action status attempts lastError triggeredAt }
  events { kind actor note } } }"#;

async fn wait_execution(app: &TestApp, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let data = app.ok(EXECUTION, json!({ "id": id })).await;
        if data["deployment"]["execution"]["status"] == status {
            return data["deployment"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the execution of {id} did not become {status}");
}

/// Approved, ready to start.
async fn approved(app: &TestApp, service: &str, version: &str) -> String {
    let mut input = crate::helpers::create_input(service, "staging");
    input["version"] = json!(version);
    let data = app
        .ok(crate::helpers::CREATE, json!({ "input": input }))
        .await;
    let id = data["createDeployment"]["deployment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.act("approveDeployment", &id, "bob", None).await;
    id
}

#[tokio::test]
async fn github_actions_gets_a_dispatch_for_every_start_and_rollback() {
    let token_env = "SHIPLOG_TEST_GH_TOKEN_DISPATCH";
    std::env::set_var(token_env, "ghs_test_token_123");
    let gh = github(&[204, 204, 204]).await;
    let base = gh.url.trim_end_matches("/hook").to_owned();
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(Some(&base)), fast_retry(3)).await;
    let target = app
        .ok(
            CONFIGURE,
            json!({ "input": { "service": "payments", "environment": "staging",
                    "executor": "GITHUB_ACTIONS", "actor": "ops", "repository": "acme/payments",
                    "workflow": "deploy.yml", "tokenEnv": token_env } }),
        )
        .await;
    assert_eq!(
        target["configureDeploymentTarget"]["workflowRef"], "main",
        "defaults"
    );
    assert_eq!(
        target["configureDeploymentTarget"]["environmentInput"],
        "environment"
    );
    assert_eq!(target["configureDeploymentTarget"]["refInput"], "ref");
    assert_eq!(target["configureDeploymentTarget"]["url"], Value::Null);

    // v1 succeeds; v2 starts, then is rolled back: v1 is live again.
    let first = approved(&app, "payments", "v1").await;
    app.act("startDeployment", &first, "carol", None).await;
    let done = wait_execution(&app, &first, "TRIGGERED").await;
    assert_eq!(done["execution"]["action"], "DEPLOY");
    assert_eq!(done["execution"]["executor"], "GITHUB_ACTIONS");
    assert_eq!(done["execution"]["attempts"], 1);
    app.act("succeedDeployment", &first, "ci", None).await;
    let second = approved(&app, "payments", "v2").await;
    app.act("startDeployment", &second, "carol", None).await;
    wait_execution(&app, &second, "TRIGGERED").await;
    app.act("rollBackDeployment", &second, "dave", Some("errors up"))
        .await;
    let rolled = wait_execution(&app, &second, "TRIGGERED").await;
    assert_eq!(rolled["execution"]["action"], "ROLLBACK");

    let got = gh.wait_for(3).await;
    let expect = |request: &Received, version: &str, id: &str, actor: &str, action: &str| {
        assert_eq!(
            request.path,
            "/repos/acme/payments/actions/workflows/deploy.yml/dispatches"
        );
        assert_eq!(request.header("authorization"), "Bearer ghs_test_token_123");
        assert_eq!(request.header("accept"), "application/vnd.github+json");
        assert!(!request.header("user-agent").is_empty());
        assert_eq!(
            request.json(),
            json!({ "ref": "main", "inputs": { "environment": "staging", "ref": version,
                    "deployment_id": id, "actor": actor, "action": action } })
        );
    };
    expect(&got[0], "v1", &first, "carol", "deploy");
    expect(&got[1], "v2", &second, "carol", "deploy");
    expect(&got[2], "v1", &second, "dave", "rollback");

    // Removed: later starts trigger nothing.
    app.ok(
        r#"mutation($input: RemoveDeploymentTargetInput!) { removeDeploymentTarget(input: $input) { service } }"#,
        json!({ "input": { "service": "payments", "environment": "staging", "actor": "ops" } }),
    )
    .await;
    let listed = app.ok("{ deploymentTargets { service } }", json!({})).await;
    assert_eq!(listed["deploymentTargets"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_final_answer_fails_the_deployment_with_the_executors_reason() {
    let token_env = "SHIPLOG_TEST_GH_TOKEN_FINAL";
    std::env::set_var(token_env, "ghs_secret_final");
    let gh = github(&[422]).await;
    let base = gh.url.trim_end_matches("/hook").to_owned();
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(Some(&base)), fast_retry(5)).await;
    app.ok(
        CONFIGURE,
        json!({ "input": { "service": "payments", "environment": "staging",
                "executor": "GITHUB_ACTIONS", "actor": "ops", "repository": "acme/payments",
                "workflow": "deploy.yml", "tokenEnv": token_env } }),
    )
    .await;
    let id = approved(&app, "payments", "v1").await;
    app.act("startDeployment", &id, "carol", None).await;
    let failed = wait_execution(&app, &id, "FAILED").await;
    assert_eq!(failed["execution"]["attempts"], 1, "422 is final: no retry");
    for _ in 0..100 {
        let data = app.ok(EXECUTION, json!({ "id": id })).await;
        if data["deployment"]["status"] == "FAILED" {
            let last = data["deployment"]["events"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(last["kind"], "FAILED");
            assert_eq!(last["actor"], "shiplog");
            let note = last["note"].as_str().unwrap();
            assert!(note.contains("422"), "{note}");
            assert!(!note.contains("ghs_secret_final"));
            app.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the deployment was not failed");
}

#[tokio::test]
async fn the_http_executor_gets_a_signed_request_and_retries() {
    let receiver = Receiver::start(&[500]).await;
    let db = TestDb::new();
    let app = TestApp::start_with_retry(&db, options(None), fast_retry(5)).await;
    app.ok(
        CONFIGURE,
        json!({ "input": { "service": "payments", "environment": "staging",
                "executor": "HTTP", "actor": "ops", "url": receiver.url, "secret": SECRET } }),
    )
    .await;
    let id = approved(&app, "payments", "v7").await;
    app.act("startDeployment", &id, "carol", None).await;
    let done = wait_execution(&app, &id, "TRIGGERED").await;
    assert_eq!(done["execution"]["attempts"], 2);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    verify(SECRET, &got[1]);
    let body = got[1].json();
    assert_eq!(body["type"], "deployment.deploy");
    assert_eq!(body["data"]["ref"], "v7");
    assert_eq!(body["data"]["environment"], "staging");
    assert_eq!(body["data"]["actor"], "carol");
    assert_eq!(body["data"]["deployment"]["id"], id);

    // Refused: a GITHUB_ACTIONS target without its fields, every problem at once.
    let body = app
        .graphql(
            CONFIGURE,
            json!({ "input": { "service": "payments", "environment": "staging",
                    "executor": "GITHUB_ACTIONS", "actor": "ops", "url": "http://x" } }),
        )
        .await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    let fields: Vec<&str> = error["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "input.url",
            "input.repository",
            "input.workflow",
            "input.tokenEnv"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn no_secret_or_token_reaches_a_log_line_even_at_debug_level() {
    let receiver = Receiver::start(&[500, 500, 500, 500, 500, 500]).await;
    let gh = github(&[401, 401]).await;
    let token = "ghs_never_logged_7f3a9c";
    let db = TestDb::new();
    let github_url = gh.url.trim_end_matches("/hook").to_owned();
    let server = crate::process::Server::start_env(
        db.url(),
        &[
            "--webhook-allow-private",
            "true",
            "--webhook-backoff-ms",
            "20",
            "--webhook-max-attempts",
            "3",
            "--github-api-url",
            &github_url,
        ],
        &[
            ("RUST_LOG", "debug"),
            ("SHIPLOG_LOG_FORMAT", "json"),
            ("SHIPLOG_TEST_LOG_TOKEN", token),
        ],
    );
    let client = reqwest::Client::new();
    let post = |query: &'static str, variables: Value| {
        let client = client.clone();
        let url = server.graphql_url();
        async move {
            let text = client
                .post(url)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("send")
                .text()
                .await
                .expect("a body");
            assert!(!text.contains(SECRET) && !text.contains(token), "{text}");
            serde_json::from_str::<Value>(&text).expect("JSON")
        }
    };
    post(
        CREATE_WEBHOOK,
        json!({ "input": { "url": receiver.url, "secret": SECRET, "actor": "ops" } }),
    )
    .await;
    post(
        CONFIGURE,
        json!({ "input": { "service": "payments", "environment": "staging",
                "executor": "GITHUB_ACTIONS", "actor": "ops", "repository": "acme/payments",
                "workflow": "deploy.yml", "tokenEnv": "SHIPLOG_TEST_LOG_TOKEN" } }),
    )
    .await;
    post(
        CONFIGURE,
        json!({ "input": { "service": "search", "environment": "staging",
                "executor": "HTTP", "actor": "ops", "url": receiver.url, "secret": SECRET } }),
    )
    .await;
    // A refused secret is not echoed either.
    let refused = post(
        CREATE_WEBHOOK,
        json!({ "input": { "url": receiver.url, "secret": "whsec_dG9vIHNob3J0", "actor": "ops" } }),
    )
    .await;
    assert!(!refused.to_string().contains("dG9vIHNob3J0"));
    for service in ["payments", "search"] {
        let mut input = crate::helpers::create_input(service, "staging");
        input["version"] = json!("v1");
        let created = post(crate::helpers::CREATE, json!({ "input": input })).await;
        let id = created["data"]["createDeployment"]["deployment"]["id"].clone();
        for (mutation, actor) in [("approveDeployment", "bob"), ("startDeployment", "carol")] {
            let body = post(
                if mutation == "approveDeployment" {
                    r#"mutation($input: ApproveDeploymentInput!) { approveDeployment(input: $input) { deployment { status } } }"#
                } else {
                    r#"mutation($input: StartDeploymentInput!) { startDeployment(input: $input) { deployment { status } } }"#
                },
                json!({ "input": { "id": id, "actor": actor } }),
            )
            .await;
            assert!(body.get("errors").is_none(), "{body:#}");
        }
    }
    // Attempts made: webhook deliveries failing, GitHub refusing the token, the HTTP
    // target failing; then the deploy failed for good by the 401.
    gh.wait_for(1).await;
    receiver.wait_for(6).await;
    let key = SECRET.trim_start_matches("whsec_");
    for _ in 0..200 {
        if server.output().contains("executor trigger attempt failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = server.output();
    assert!(
        output.contains("webhook delivery attempt failed"),
        "{output}"
    );
    assert!(
        output.contains("executor trigger attempt failed"),
        "{output}"
    );
    for secret in [SECRET, key, token] {
        assert!(!output.contains(secret), "{secret} was logged:\n{output}");
    }
    receiver.stop();
    gh.stop();
}
