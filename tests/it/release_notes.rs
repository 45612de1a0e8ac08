//! `draftReleaseNotes` over HTTP: what a draft covers (the live base, other
//! environments, duplicate work references, nothing live), argument checks, and the
//! language model behind it: a fake Anthropic Messages API on 127.0.0.1:0 that checks
//! every request it gets and answers well, with a 500, too slowly, or with something
//! other than the agreed form. The API key must never leave the server.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use shiplog::llm::{ApiKey, Client, LlmConfig};
use shiplog::server::ServerOptions;

use crate::helpers::{single_error, RefusingPort, TestApp, TestDb, CREATE};
use crate::process::Server;

const KEY: &str = "sk-test-SECRET-0123456789";
const MODEL: &str = "claude-test-model";

const DRAFT: &str = r#"
query Draft($service: String!, $environment: String!, $version: String!) {
  draftReleaseNotes(service: $service, environment: $environment, version: $version) {
    text suggestedBump source workRefs baseVersion
  }
}"#;

// ---------------------------------------------------------------------------------------
// The fake Messages API
// ---------------------------------------------------------------------------------------

/// How the fake model answers.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Good,
    ServerError,
    Slow,
    Malformed,
    NotMessagesApi,
}

/// One request the fake model received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct FakeModel {
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<Received>>>,
}

const GOOD_NOTES: &str = "## billing v3\n- Invoices in EUR (INV-2)\n- Faster exports (INV-3)";

async fn messages(
    State(fake): State<FakeModel>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    fake.received
        .lock()
        .expect("the fake's lock")
        .push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
        });
    let text = |text: &str| {
        Json(json!({
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn",
            "usage": { "input_tokens": 10, "output_tokens": 10 }
        }))
        .into_response()
    };
    match fake.behaviour {
        Behaviour::Good => text(&json!({ "bump": "MINOR", "notes": GOOD_NOTES }).to_string()),
        Behaviour::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "type": "error", "error": { "type": "api_error", "message": "boom" } })),
        )
            .into_response(),
        Behaviour::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            text(&json!({ "bump": "MINOR", "notes": "too late" }).to_string())
        }
        Behaviour::Malformed => text("Sure! Here are the release notes:\n- Invoices in EUR"),
        Behaviour::NotMessagesApi => Json(json!({ "answer": "hello" })).into_response(),
    }
}

/// Starts a fake model; returns its address and what it received.
async fn fake_model(behaviour: Behaviour) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeModel {
        behaviour,
        received: received.clone(),
    };
    // Any path is recorded, so a request to the wrong one fails the checks below.
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .fallback(messages)
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake model");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, received)
}

/// A shiplog server whose release notes the model at `url` drafts.
async fn app_with_model(db: &TestDb, url: &str, timeout: Duration) -> TestApp {
    let config = LlmConfig {
        timeout,
        ..LlmConfig::new(url, ApiKey::new(KEY), MODEL)
    };
    let client = Client::new(&config).expect("a model client");
    TestApp::start_with_llm(
        db,
        &["production"],
        ServerOptions::default(),
        Some(Arc::new(client)),
    )
    .await
}

/// The one request the fake got, checked as the Messages API requires.
fn checked_request(received: &Arc<Mutex<Vec<Received>>>) -> Received {
    let received = received.lock().expect("the fake's lock").clone();
    assert_eq!(received.len(), 1, "one request to the model: {received:#?}");
    let request = received.into_iter().next().expect("one request");
    assert_eq!(request.path, "/v1/messages");
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("x-api-key"), KEY);
    assert_eq!(header("anthropic-version"), "2023-06-01");
    assert!(header("content-type").starts_with("application/json"));
    let body = &request.body;
    assert_eq!(body["model"], MODEL);
    assert!(
        body["max_tokens"].as_u64().is_some_and(|n| n > 0),
        "{body:#}"
    );
    let system = body["system"].as_str().expect("a system prompt");
    assert!(system.contains(r#""bump""#) && system.contains(r#""notes""#));
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["role"], "user");
    request
}

/// The prompt (the user message) of a checked request.
fn prompt_of(request: &Received) -> &str {
    request.body["messages"][0]["content"]
        .as_str()
        .expect("the user message is text")
}

// ---------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------

/// Creates a deployment of `service` and returns its id.
async fn create(
    app: &TestApp,
    service: &str,
    environment: &str,
    version: &str,
    refs: &[&str],
    notes: Option<&str>,
) -> String {
    let input = json!({
        "service": service,
        "environment": environment,
        "version": version,
        "requester": "alice",
        "workRefs": refs,
        "risk": "low: behind a flag",
        "rollbackPlan": "redeploy the previous version",
        "releaseNotes": notes,
    });
    let data = app.ok(CREATE, json!({ "input": input })).await;
    data["createDeployment"]["deployment"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

async fn succeed(app: &TestApp, id: &str) {
    app.act(
        "approveDeployment",
        id,
        "bob",
        Some("watch the EUR rounding"),
    )
    .await;
    app.act("startDeployment", id, "ci", None).await;
    app.act("succeedDeployment", id, "ci", None).await;
}

/// billing: v1 live in production; after it v2 in dev and staging, a redeploy of v1 in
/// dev, v3 in dev (with release notes), v4 in dev; payroll v3 in dev.
async fn history(app: &TestApp) {
    let v1 = create(app, "billing", "production", "v1", &["INV-1"], None).await;
    succeed(app, &v1).await;
    let v2 = create(app, "billing", "dev", "v2", &["INV-2", "INV-1"], None).await;
    succeed(app, &v2).await;
    create(app, "billing", "staging", "v2", &["INV-2"], None).await;
    create(app, "billing", "dev", "v1", &["INV-9"], None).await;
    create(
        app,
        "billing",
        "dev",
        "v3",
        &["INV-3", "INV-2"],
        Some("Faster exports."),
    )
    .await;
    create(app, "billing", "dev", "v4", &["INV-4"], None).await;
    create(app, "payroll", "dev", "v3", &["PAY-1"], None).await;
}

async fn draft(app: &TestApp, service: &str, environment: &str, version: &str) -> Value {
    let body = app
        .graphql(
            DRAFT,
            json!({ "service": service, "environment": environment, "version": version }),
        )
        .await;
    assert!(
        !body.to_string().contains(KEY),
        "the key is never in a response: {body:#}"
    );
    body
}

async fn draft_ok(app: &TestApp, service: &str, environment: &str, version: &str) -> Value {
    let body = draft(app, service, environment, version).await;
    assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
    body["data"]["draftReleaseNotes"].clone()
}

// ---------------------------------------------------------------------------------------
// Log capture: the server's warn lines, on this test's thread
// ---------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log's lock")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log's lock")).into_owned()
    }
}

/// Captures what this (current-thread) test logs, server tasks included, while the
/// guard lives.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

// ---------------------------------------------------------------------------------------
// Coverage and arguments (no model: templates)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_draft_covers_the_deployments_after_the_live_version_up_to_the_target() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    history(&app).await;

    let draft = draft_ok(&app, "billing", "production", "v3").await;
    assert_eq!(draft["baseVersion"], "v1");
    assert_eq!(
        draft["workRefs"],
        json!(["INV-2", "INV-1", "INV-3"]),
        "v2 (dev and staging) and v3, each reference once, oldest first; not the v1 redeploy, \
         not v4, not payroll"
    );
    assert_eq!(draft["source"], "TEMPLATE");
    assert_eq!(draft["suggestedBump"], Value::Null);
    let text = draft["text"].as_str().expect("a text");
    for expected in [
        "billing v3 to production",
        "live there: v1",
        "- v2\n",
        "- v3\n  Faster exports.",
        "- INV-2\n- INV-1\n- INV-3\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert!(!text.contains("v4") && !text.contains("INV-9"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn with_nothing_live_the_draft_covers_everything_up_to_the_target() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    history(&app).await;

    // staging has only a pending v2: nothing is live there.
    let draft = draft_ok(&app, "billing", "staging", "v3").await;
    assert_eq!(draft["baseVersion"], Value::Null);
    assert_eq!(
        draft["workRefs"],
        json!(["INV-1", "INV-2", "INV-9", "INV-3"])
    );
    assert!(draft["text"]
        .as_str()
        .is_some_and(|t| t.contains("nothing live there yet")));

    // An environment nobody ever used: nothing is live there either.
    let fresh = draft_ok(&app, "billing", "qa-lab", "v2").await;
    assert_eq!(fresh["baseVersion"], Value::Null);
    assert_eq!(fresh["workRefs"], json!(["INV-1", "INV-2"]));

    // dev: v2 is live there (v1 never was): the draft for v4 starts after v2.
    let dev = draft_ok(&app, "billing", "dev", "v4").await;
    assert_eq!(dev["baseVersion"], "v2");
    assert_eq!(dev["workRefs"], json!(["INV-9", "INV-3", "INV-2", "INV-4"]));
    app.stop().await;
}

#[tokio::test]
async fn the_base_is_the_deployment_that_succeeded_last_in_the_environment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    create(&app, "billing", "production", "v2", &["INV-2"], None).await;
    let v1 = create(&app, "billing", "production", "v1", &["INV-1"], None).await;
    create(&app, "billing", "dev", "v3", &["INV-3"], None).await;
    // v1, created after v2, succeeds; v2 never does. Roll v1 back: nothing is live, and
    // the draft covers everything up to v3.
    succeed(&app, &v1).await;
    let draft = draft_ok(&app, "billing", "production", "v3").await;
    assert_eq!(draft["baseVersion"], "v1");
    assert_eq!(draft["workRefs"], json!(["INV-3"]));
    // The live version itself: nothing to cover.
    let same = draft_ok(&app, "billing", "production", "v1").await;
    assert_eq!(same["baseVersion"], "v1");
    assert_eq!(same["workRefs"], json!([]));
    assert!(same["text"]
        .as_str()
        .is_some_and(|t| t.contains("No deployment of billing since the live version.")));
    app.act("rollBackDeployment", &v1, "ci", Some("bad rounding"))
        .await;
    let after = draft_ok(&app, "billing", "production", "v3").await;
    assert_eq!(after["baseVersion"], Value::Null);
    assert_eq!(after["workRefs"], json!(["INV-2", "INV-1", "INV-3"]));
    app.stop().await;
}

#[tokio::test]
async fn a_version_the_service_never_deployed_is_bad_input() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    history(&app).await;
    for (service, version) in [("billing", "v9"), ("nobody", "v1"), ("payroll", "v1")] {
        let body = draft(&app, service, "production", version).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        assert_eq!(
            error["extensions"]["fields"],
            json!([{ "field": "version", "message": "no deployment of this service has this version" }]),
            "{service} {version}"
        );
        assert_eq!(body["data"], Value::Null);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_arguments_follow_the_name_and_version_rules() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    create(&app, "billing", "dev", "v1", &["INV-1"], None).await;

    // Trimmed before use.
    let trimmed = draft_ok(&app, "  billing ", " production\t", " v1 ").await;
    assert_eq!(trimmed["workRefs"], json!(["INV-1"]));

    let long_name = "s".repeat(101);
    let long_version = "v".repeat(201);
    let body = draft(&app, " ", &long_name, &long_version).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(
        error["extensions"]["fields"],
        json!([
            { "field": "service", "message": "must not be blank" },
            { "field": "environment", "message": "must be at most 100 characters" },
            { "field": "version", "message": "must be at most 200 characters" },
        ])
    );
    let body = draft(&app, "billing", "prod\u{1}uction", "v1").await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(
        error["extensions"]["fields"],
        json!([{ "field": "environment", "message": "must not contain control characters" }])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_scope_costs_three_statements_whatever_the_history() {
    use shiplog::domain::release_notes::DraftRequest;
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    for n in 0..30 {
        let environment = ["dev", "staging", "production"][n % 3];
        create(
            &app,
            "billing",
            environment,
            &format!("v{n}"),
            &["INV-1"],
            None,
        )
        .await;
    }
    let request = DraftRequest::validate("billing", "production", "v29").expect("valid");
    let before = app.store.read_statements();
    let scope = app
        .store
        .release_notes_scope(&request)
        .await
        .expect("read")
        .expect("v29 exists");
    assert_eq!(app.store.read_statements() - before, 3);
    assert_eq!(scope.covered.len(), 30);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_good_answer_is_the_draft_with_its_bump() {
    let (addr, received) = fake_model(Behaviour::Good).await;
    let db = TestDb::new();
    let app = app_with_model(&db, &format!("http://{addr}"), Duration::from_secs(20)).await;
    history(&app).await;

    let draft = draft_ok(&app, "billing", "production", "v3").await;
    assert_eq!(draft["source"], "MODEL");
    assert_eq!(draft["text"], GOOD_NOTES);
    assert_eq!(draft["suggestedBump"], "MINOR");
    assert_eq!(draft["baseVersion"], "v1");
    assert_eq!(draft["workRefs"], json!(["INV-2", "INV-1", "INV-3"]));

    let request = checked_request(&received);
    let prompt = prompt_of(&request);
    for expected in [
        "Service: billing",
        "Target environment: production",
        "Base version (live in the target environment): v1",
        "Target version: v3",
        "- INV-2\n- INV-1\n- INV-3\n",
        "## v2 in dev (SUCCEEDED",
        "## v2 in staging (PENDING_APPROVAL",
        "## v3 in dev (PENDING_APPROVAL",
        "Release notes:\nFaster exports.",
        "Risk: low: behind a flag",
        "Note on APPROVED by bob: watch the EUR rounding",
    ] {
        assert!(
            prompt.contains(expected),
            "{expected:?} in the prompt:\n{prompt}"
        );
    }
    assert!(!prompt.contains("INV-9") && !prompt.contains("PAY-1"));
    assert!(!prompt.contains(KEY));
    app.stop().await;
}

/// Runs a draft against a fake model that misbehaves; the template answers, a warn line
/// says why, and neither says the key.
async fn falls_back(behaviour: Behaviour, timeout: Duration, why: &str) {
    let (logs, _guard) = capture_logs();
    let (addr, received) = fake_model(behaviour).await;
    let db = TestDb::new();
    let app = app_with_model(&db, &format!("http://{addr}/"), timeout).await;
    history(&app).await;

    let started = Instant::now();
    let draft = draft_ok(&app, "billing", "production", "v3").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{behaviour:?}: answered in {:?}",
        started.elapsed()
    );
    assert_eq!(draft["source"], "TEMPLATE", "{behaviour:?}");
    assert_eq!(draft["suggestedBump"], Value::Null, "{behaviour:?}");
    assert_eq!(draft["baseVersion"], "v1");
    assert_eq!(draft["workRefs"], json!(["INV-2", "INV-1", "INV-3"]));
    assert!(draft["text"]
        .as_str()
        .is_some_and(|t| t.contains("- INV-2\n- INV-1\n- INV-3\n")));
    let request = checked_request(&received);
    assert!(prompt_of(&request).contains("- INV-2\n- INV-1\n- INV-3\n"));

    let logs = logs.text();
    assert!(
        logs.contains("WARN") && logs.contains("answering with the template"),
        "{behaviour:?}: a warn line: {logs}"
    );
    assert!(logs.contains(why), "{behaviour:?}: {why:?} in {logs}");
    assert!(
        !logs.contains(KEY),
        "{behaviour:?}: the key is never logged"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failing_model_leaves_the_template() {
    falls_back(
        Behaviour::ServerError,
        Duration::from_secs(20),
        "HTTP status 500",
    )
    .await;
}

#[tokio::test]
async fn a_slow_model_leaves_the_template_after_the_timeout() {
    falls_back(
        Behaviour::Slow,
        Duration::from_millis(500),
        "did not answer within 500ms",
    )
    .await;
}

#[tokio::test]
async fn an_answer_in_another_form_leaves_the_template() {
    falls_back(
        Behaviour::Malformed,
        Duration::from_secs(20),
        "the answer is not a JSON object",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_a_messages_answer_leaves_the_template() {
    falls_back(
        Behaviour::NotMessagesApi,
        Duration::from_secs(20),
        "not a Messages API response",
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_model_leaves_the_template() {
    let (logs, _guard) = capture_logs();
    // A port nothing listens on, and that no other test can be given.
    let refusing = RefusingPort::new();
    let addr = refusing.addr;
    let db = TestDb::new();
    let app = app_with_model(&db, &format!("http://{addr}"), Duration::from_secs(20)).await;
    history(&app).await;
    let draft = draft_ok(&app, "billing", "production", "v3").await;
    assert_eq!(draft["source"], "TEMPLATE");
    let logs = logs.text();
    assert!(logs.contains("cannot connect"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
    app.stop().await;
}

#[tokio::test]
async fn without_a_model_the_template_answers_and_nothing_is_asked() {
    let (addr, received) = fake_model(Behaviour::Good).await;
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    history(&app).await;
    let draft = draft_ok(&app, "billing", "production", "v3").await;
    assert_eq!(draft["source"], "TEMPLATE");
    assert_eq!(draft["suggestedBump"], Value::Null);
    assert!(
        received.lock().expect("lock").is_empty(),
        "{addr} was not asked"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_key_is_in_no_error_either() {
    let (addr, _received) = fake_model(Behaviour::ServerError).await;
    let db = TestDb::new();
    let app = app_with_model(&db, &format!("http://{addr}"), Duration::from_secs(20)).await;
    create(&app, "billing", "dev", "v1", &["INV-1"], None).await;
    // Errors of every kind the query has: bad arguments, an unknown version, a failing
    // model (which is no error at all).
    for (service, environment, version) in [
        ("", "dev", "v1"),
        ("billing", "dev", "v9"),
        ("billing", "production", "v1"),
    ] {
        draft(&app, service, environment, version).await;
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The binary: the three environment variables
// ---------------------------------------------------------------------------------------

/// The `shiplog` binary with the given LLM variables, logging at debug level as text.
fn binary(db: &TestDb, vars: &[(&str, &str)], wait: bool) -> Server {
    let mut all = vec![("RUST_LOG", "debug"), ("SHIPLOG_LOG_FORMAT", "text")];
    all.extend_from_slice(vars);
    if wait {
        Server::start_env(db.url(), &[], &all)
    } else {
        Server::spawn(db.url(), &[], &all)
    }
}

#[tokio::test]
async fn the_binary_reads_the_three_variables_and_never_prints_the_key() {
    let (model, received) = fake_model(Behaviour::Good).await;
    let db = TestDb::new();
    let url = format!("http://{model}");
    let binary = binary(
        &db,
        &[
            ("SHIPLOG_LLM_URL", &url),
            ("SHIPLOG_LLM_API_KEY", KEY),
            ("SHIPLOG_LLM_MODEL", MODEL),
        ],
        true,
    );
    let addr = binary.addr();
    let client = reqwest::Client::new();
    let post = |query: &'static str, variables: Value| {
        let client = client.clone();
        async move {
            let response = client
                .post(format!("http://{addr}/graphql"))
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("send");
            let text = response.text().await.expect("a body");
            assert!(!text.contains(KEY), "{text}");
            serde_json::from_str::<Value>(&text).expect("JSON")
        }
    };
    let input = json!({
        "service": "billing", "environment": "dev", "version": "v1", "requester": "alice",
        "workRefs": ["INV-1"], "rollbackPlan": "redeploy",
    });
    post(CREATE, json!({ "input": input })).await;
    let body = post(
        DRAFT,
        json!({ "service": "billing", "environment": "production", "version": "v1" }),
    )
    .await;
    assert_eq!(
        body["data"]["draftReleaseNotes"]["source"], "MODEL",
        "{body:#}"
    );
    let request = checked_request(&received);
    assert!(prompt_of(&request).contains("- INV-1\n"));
    let output = binary.output();
    assert!(
        output.contains("release notes are drafted by a language model"),
        "{output}"
    );
    assert!(!output.contains(KEY), "the key is never printed: {output}");
}

#[tokio::test]
async fn some_of_the_variables_without_the_others_stop_the_binary() {
    let db = TestDb::new();
    let mut binary = binary(&db, &[("SHIPLOG_LLM_API_KEY", KEY)], false);
    let status = binary.exit();
    assert!(!status.success());
    let output = binary.output();
    assert!(
        output.contains("missing: SHIPLOG_LLM_URL, SHIPLOG_LLM_MODEL"),
        "{output}"
    );
    assert!(!output.contains(KEY), "{output}");

    // Nor does --help show the key's value.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_shiplog"))
        .arg("--help")
        .env("SHIPLOG_LLM_API_KEY", KEY)
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("SHIPLOG_LLM_API_KEY"), "{help}");
    assert!(!help.contains(KEY), "{help}");
}
