//! The sending side of webhooks and deploy executors, against small HTTP servers on
//! 127.0.0.1 that record what they receive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use shiplog::domain::integrations::{
    ExecutionAction, ExecutorSettings, GitHubActionsSettings, HttpSettings, TriggerRequest,
};
use shiplog::integrations::{executor_for, Sender, SenderOptions};
use uuid::Uuid;

/// One request a fake server received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// How a fake server answers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    delay: Duration,
    location: Option<String>,
    body: String,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            location: None,
            body: String::new(),
        }
    }
}

/// A server on 127.0.0.1:0 that records every request and answers with `reply`.
struct Fake {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start(reply: Reply) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                let reply = reply.clone();
                async move {
                    log.lock().expect("log").push(Received {
                        method,
                        uri,
                        headers,
                        body,
                    });
                    tokio::time::sleep(reply.delay).await;
                    let mut response: Response = (
                        StatusCode::from_u16(reply.status).expect("status"),
                        reply.body,
                    )
                        .into_response();
                    if let Some(location) = reply.location {
                        response.headers_mut().insert(
                            "location",
                            HeaderValue::from_str(&location).expect("location"),
                        );
                    }
                    response
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            received,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sender(allow_private: bool) -> Sender {
    Sender::new(SenderOptions {
        allow_private,
        ..SenderOptions::default()
    })
    .expect("sender")
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Checks a request's Standard Webhooks signature with the reference library.
fn verify(key: &[u8], r: &Received) {
    let wh = standardwebhooks::Webhook::from_bytes(key.to_vec()).expect("webhook");
    wh.verify(&r.body, &r.headers).expect("signature verifies");
}

const KEY: &[u8] = b"an example key of 32 bytes......";

fn secret() -> String {
    use base64::Engine;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    )
}

fn trigger(action: ExecutionAction) -> TriggerRequest {
    TriggerRequest {
        execution_id: Uuid::now_v7(),
        action,
        deployment_id: Uuid::now_v7(),
        service: "web".to_owned(),
        environment: "production".to_owned(),
        git_ref: "1.4.0".to_owned(),
        actor: "ana".to_owned(),
        deployment: json!({"id": "x", "service": "web", "version": "1.4.0", "status": "STARTED"}),
        now: chrono::Utc::now(),
    }
}

fn github(token_env: &str) -> ExecutorSettings {
    ExecutorSettings::GitHubActions(GitHubActionsSettings {
        repository: "acme/web".to_owned(),
        workflow: "deploy.yml".to_owned(),
        workflow_ref: "main".to_owned(),
        environment_input: "environment".to_owned(),
        ref_input: "ref".to_owned(),
        token_env: token_env.to_owned(),
    })
}

fn github_sender(api: &str) -> Sender {
    Sender::new(SenderOptions {
        allow_private: false,
        github_api_url: format!("{api}/"),
        ..SenderOptions::default()
    })
    .expect("sender")
}

// ---- GitHub Actions ----

#[tokio::test]
async fn github_dispatch_is_sent_as_the_contract_says() {
    let fake = Fake::start(Reply::status(204)).await;
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_OK", "ghp_secret_token_1");
    let request = trigger(ExecutionAction::Deploy);
    // allow_private is false: the operator's API URL is not subject to the address rule.
    let report = executor_for(&github("SHIPLOG_IT_GH_TOKEN_OK"))
        .trigger(&github_sender(&fake.base), &request)
        .await;
    assert!(report.succeeded, "{report:?}");
    assert_eq!(report.status_code, Some(204));
    assert_eq!(report.error, None);
    assert!(!report.is_final);

    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(
        r.uri.path(),
        "/repos/acme/web/actions/workflows/deploy.yml/dispatches"
    );
    assert_eq!(header(r, "authorization"), "Bearer ghp_secret_token_1");
    assert_eq!(header(r, "accept"), "application/vnd.github+json");
    assert_eq!(header(r, "x-github-api-version"), "2022-11-28");
    assert!(header(r, "user-agent").starts_with("shiplog/"));
    assert_eq!(header(r, "content-type"), "application/json");
    let body: Value = serde_json::from_slice(&r.body).expect("json body");
    assert_eq!(
        body,
        json!({"ref": "main", "inputs": {
            "environment": "production",
            "ref": "1.4.0",
            "deployment_id": request.deployment_id.to_string(),
            "actor": "ana",
            "action": "deploy"
        }})
    );
}

#[tokio::test]
async fn github_rollback_reads_the_token_at_each_attempt() {
    let fake = Fake::start(Reply::status(204)).await;
    let executor = executor_for(&github("SHIPLOG_IT_GH_TOKEN_ROTATE"));
    let sender = github_sender(&fake.base);
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_ROTATE", "first");
    let report = executor
        .trigger(&sender, &trigger(ExecutionAction::Rollback))
        .await;
    assert!(report.succeeded, "{report:?}");
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_ROTATE", "second");
    let report = executor
        .trigger(&sender, &trigger(ExecutionAction::Rollback))
        .await;
    assert!(report.succeeded, "{report:?}");
    let got = fake.received();
    assert_eq!(header(&got[0], "authorization"), "Bearer first");
    assert_eq!(header(&got[1], "authorization"), "Bearer second");
    let body: Value = serde_json::from_slice(&got[1].body).expect("json body");
    assert_eq!(body["inputs"]["action"], "rollback");
}

#[tokio::test]
async fn github_422_is_final_and_quotes_github() {
    let fake = Fake::start(Reply {
        body: r#"{"message":"Workflow does not have 'workflow_dispatch' trigger"}"#.to_owned(),
        ..Reply::status(422)
    })
    .await;
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_422", "ghp_secret_token_2");
    let report = executor_for(&github("SHIPLOG_IT_GH_TOKEN_422"))
        .trigger(
            &github_sender(&fake.base),
            &trigger(ExecutionAction::Deploy),
        )
        .await;
    assert!(!report.succeeded && report.is_final, "{report:?}");
    assert_eq!(report.status_code, Some(422));
    assert_eq!(
        report.error.as_deref(),
        Some("HTTP 422: Workflow does not have 'workflow_dispatch' trigger")
    );
}

#[tokio::test]
async fn github_final_and_retryable_statuses() {
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_CODES", "ghp_secret_token_3");
    for (status, is_final) in [
        (400, true),
        (401, true),
        (403, true),
        (404, true),
        (500, false),
        (502, false),
        (429, false),
    ] {
        let fake = Fake::start(Reply::status(status)).await;
        let report = executor_for(&github("SHIPLOG_IT_GH_TOKEN_CODES"))
            .trigger(
                &github_sender(&fake.base),
                &trigger(ExecutionAction::Deploy),
            )
            .await;
        assert!(!report.succeeded, "{status}");
        assert_eq!(report.is_final, is_final, "{status}");
        assert_eq!(report.status_code, Some(status));
        assert_eq!(report.error, Some(format!("HTTP {status}")));
    }
    // Another 2xx counts as success.
    let fake = Fake::start(Reply::status(200)).await;
    let report = executor_for(&github("SHIPLOG_IT_GH_TOKEN_CODES"))
        .trigger(
            &github_sender(&fake.base),
            &trigger(ExecutionAction::Deploy),
        )
        .await;
    assert!(report.succeeded);
}

#[tokio::test]
async fn github_missing_token_is_final_and_sends_nothing() {
    let fake = Fake::start(Reply::status(204)).await;
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_EMPTY", "");
    for env in ["SHIPLOG_IT_GH_TOKEN_NEVER_SET", "SHIPLOG_IT_GH_TOKEN_EMPTY"] {
        let report = executor_for(&github(env))
            .trigger(
                &github_sender(&fake.base),
                &trigger(ExecutionAction::Deploy),
            )
            .await;
        assert!(!report.succeeded && report.is_final, "{report:?}");
        assert_eq!(report.status_code, None);
        assert_eq!(
            report.error,
            Some(format!("environment variable {env} is not set"))
        );
    }
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn github_unreachable_is_retryable() {
    let port = free_port();
    std::env::set_var("SHIPLOG_IT_GH_TOKEN_DOWN", "ghp_secret_token_4");
    let report = executor_for(&github("SHIPLOG_IT_GH_TOKEN_DOWN"))
        .trigger(
            &github_sender(&format!("http://127.0.0.1:{port}")),
            &trigger(ExecutionAction::Deploy),
        )
        .await;
    assert!(!report.succeeded && !report.is_final, "{report:?}");
    assert_eq!(report.error.as_deref(), Some("connection refused"));
}

// ---- HTTP executor ----

fn http_target(url: &str, secret: &str) -> ExecutorSettings {
    ExecutorSettings::Http(HttpSettings {
        url: url.to_owned(),
        secret: secret.to_owned(),
    })
}

#[tokio::test]
async fn http_executor_sends_a_signed_request() {
    let fake = Fake::start(Reply::status(202)).await;
    let request = trigger(ExecutionAction::Deploy);
    let report = executor_for(&http_target(
        &format!("{}/deploy?k=1", fake.base),
        &secret(),
    ))
    .trigger(&sender(true), &request)
    .await;
    assert!(report.succeeded, "{report:?}");
    assert_eq!(report.status_code, Some(202));

    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.uri.path(), "/deploy");
    assert_eq!(r.uri.query(), Some("k=1"));
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "webhook-id"), request.execution_id.to_string());
    verify(KEY, r);
    let body: Value = serde_json::from_slice(&r.body).expect("json body");
    assert_eq!(body["type"], "deployment.deploy");
    let ts = body["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z') && ts.len() == 24,
        "{ts}"
    );
    assert_eq!(
        body["data"],
        json!({"deployment": request.deployment, "environment": "production",
            "ref": "1.4.0", "actor": "ana"})
    );
}

#[tokio::test]
async fn http_executor_statuses_and_the_address_rule() {
    let fake = Fake::start(Reply::status(404)).await;
    let target = http_target(&format!("{}/deploy", fake.base), &secret());
    let report = executor_for(&target)
        .trigger(&sender(true), &trigger(ExecutionAction::Rollback))
        .await;
    assert!(!report.succeeded && report.is_final, "{report:?}");
    let body: Value = serde_json::from_slice(&fake.received()[0].body).expect("json");
    assert_eq!(body["type"], "deployment.rollback");

    let fake = Fake::start(Reply::status(503)).await;
    let target = http_target(&format!("{}/deploy", fake.base), &secret());
    let report = executor_for(&target)
        .trigger(&sender(true), &trigger(ExecutionAction::Deploy))
        .await;
    assert!(!report.succeeded && !report.is_final, "{report:?}");
    assert_eq!(report.error.as_deref(), Some("HTTP 503"));

    // Without allow_private, 127.0.0.1 is refused before anything is sent.
    let before = fake.received().len();
    let report = executor_for(&target)
        .trigger(&sender(false), &trigger(ExecutionAction::Deploy))
        .await;
    assert!(
        !report.succeeded && report.status_code.is_none(),
        "{report:?}"
    );
    assert!(report
        .error
        .as_deref()
        .unwrap_or_default()
        .starts_with("address 127.0.0.1 is not allowed"));
    assert_eq!(fake.received().len(), before);
}

// ---- post_signed ----

#[tokio::test]
async fn post_signed_delivers_with_standard_webhooks_headers() {
    let fake = Fake::start(Reply::status(200)).await;
    let body = br#"{"type":"deployment.created","data":{}}"#;
    let report = sender(true)
        .post_signed(&format!("{}/hook", fake.base), KEY, "msg_1", body)
        .await;
    assert!(report.succeeded && report.error.is_none(), "{report:?}");
    assert_eq!(report.status_code, Some(200));
    assert_eq!(report.at.timestamp_subsec_nanos() % 1_000_000, 0);
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(&r.body[..], body);
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "webhook-id"), "msg_1");
    assert_eq!(
        header(r, "webhook-timestamp"),
        report.at.timestamp().to_string()
    );
    assert!(header(r, "webhook-signature").starts_with("v1,"));
    verify(KEY, r);
}

#[tokio::test]
async fn post_signed_server_error_is_a_failed_attempt() {
    let fake = Fake::start(Reply::status(500)).await;
    let report = sender(true)
        .post_signed(&format!("{}/hook?token=abc", fake.base), KEY, "m", b"{}")
        .await;
    assert!(!report.succeeded && !report.is_final, "{report:?}");
    assert_eq!(report.status_code, Some(500));
    assert_eq!(report.error.as_deref(), Some("HTTP 500"));
    verify(KEY, &fake.received()[0]);
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn post_signed_connection_refused() {
    let port = free_port();
    let report = sender(true)
        .post_signed(
            &format!("http://127.0.0.1:{port}/hook?token=abc"),
            KEY,
            "m",
            b"{}",
        )
        .await;
    assert!(!report.succeeded, "{report:?}");
    assert_eq!(report.status_code, None);
    assert_eq!(report.error.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn post_signed_times_out() {
    let fake = Fake::start(Reply {
        delay: Duration::from_secs(3),
        ..Reply::status(200)
    })
    .await;
    let sender = Sender::new(SenderOptions {
        allow_private: true,
        timeout: Duration::from_millis(300),
        ..SenderOptions::default()
    })
    .expect("sender");
    let report = sender
        .post_signed(&format!("{}/slow", fake.base), KEY, "m", b"{}")
        .await;
    assert!(!report.succeeded, "{report:?}");
    assert_eq!(report.status_code, None);
    assert_eq!(report.error.as_deref(), Some("timed out after 300 ms"));
    assert!(
        (250..2500).contains(&report.duration_ms),
        "{}",
        report.duration_ms
    );
}

#[tokio::test]
async fn post_signed_does_not_follow_redirects() {
    let fake = Fake::start(Reply {
        location: Some("/elsewhere?token=abc#frag".to_owned()),
        ..Reply::status(302)
    })
    .await;
    let report = sender(true)
        .post_signed(&format!("{}/hook", fake.base), KEY, "m", b"{}")
        .await;
    assert!(!report.succeeded, "{report:?}");
    assert_eq!(report.status_code, Some(302));
    assert_eq!(
        report.error,
        Some(format!("HTTP 302: redirected to {}/elsewhere", fake.base))
    );
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri.path(), "/hook");
}

#[tokio::test]
async fn post_signed_refuses_private_addresses_unless_allowed() {
    let fake = Fake::start(Reply::status(204)).await;
    let url = format!("{}/hook", fake.base);
    let report = sender(false).post_signed(&url, KEY, "m", b"{}").await;
    assert!(!report.succeeded, "{report:?}");
    assert_eq!(report.status_code, None);
    assert_eq!(
        report.error.as_deref(),
        Some(
            "address 127.0.0.1 is not allowed (loopback, private or link-local); \
             set SHIPLOG_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        )
    );
    assert!(fake.received().is_empty());

    // A name that resolves to loopback is refused by the resolver, before connecting.
    let port = fake.base.rsplit(':').next().expect("port");
    let by_name = format!("http://localhost:{port}/hook");
    let report = sender(false).post_signed(&by_name, KEY, "m", b"{}").await;
    assert!(
        !report.succeeded && report.status_code.is_none(),
        "{report:?}"
    );
    let error = report.error.unwrap_or_default();
    assert!(error.contains("is not allowed"), "{error}");
    assert!(fake.received().is_empty());

    let report = sender(true).post_signed(&url, KEY, "m", b"{}").await;
    assert!(report.succeeded, "{report:?}");
    assert_eq!(fake.received().len(), 1);
    verify(KEY, &fake.received()[0]);
}

// ---- check_destination ----

#[tokio::test]
async fn check_destination_rules() {
    let strict = sender(false);
    let err = strict
        .check_destination("http://127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert!(err.starts_with("address 127.0.0.1 is not allowed"), "{err}");
    let err = strict
        .check_destination("http://localhost/")
        .await
        .unwrap_err();
    assert!(err.contains("is not allowed"), "{err}");
    let err = strict.check_destination("http://[::1]/").await.unwrap_err();
    assert!(err.contains("is not allowed"), "{err}");
    let err = strict
        .check_destination("http://169.254.169.254/latest")
        .await
        .unwrap_err();
    assert!(err.contains("169.254.169.254"), "{err}");
    let err = strict.check_destination("ftp://x").await.unwrap_err();
    assert!(err.contains("http"), "{err}");
    let err = strict
        .check_destination("https://admin:pa55word@example.com/")
        .await
        .unwrap_err();
    assert!(!err.contains("pa55word") && !err.contains("admin"), "{err}");
    let err = strict
        .check_destination("https://no-such-host.invalid/")
        .await
        .unwrap_err();
    assert_eq!(err, "host no-such-host.invalid does not resolve");
    assert!(strict
        .check_destination("https://8.8.8.8/hook")
        .await
        .is_ok());

    let open = sender(true);
    assert!(open.check_destination("http://127.0.0.1:1/x").await.is_ok());
    assert!(open.check_destination("http://localhost/").await.is_ok());
    assert!(open.check_destination("ftp://x").await.is_err());
    assert!(open
        .check_destination("https://a:b@example.com/")
        .await
        .is_err());
}
