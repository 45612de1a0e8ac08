//! The HTTP response cache (`--response-cache-mb`), over real HTTP on port 0: a query's
//! answer is kept until the next write, with an ETag that makes an unchanged answer a
//! 304; what may answer otherwise on the same data is never kept.

use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shiplog::server::ServerOptions;

use crate::helpers::{TestApp, TestDb};

const PAGE: &str = "query Page { deployments(first: 5) { totalCount nodes { id service } } }";

async fn cached_app(db: &TestDb) -> TestApp {
    let options = ServerOptions {
        response_cache_bytes: 1 << 20,
        ..Default::default()
    };
    TestApp::start_with(db, &["production"], options).await
}

/// POSTs `query`, sending `tag` as If-None-Match: the status, the ETag, the body.
async fn post(
    app: &TestApp,
    query: &str,
    tag: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query }));
    if let Some(tag) = tag {
        request = request.header(IF_NONE_MATCH, tag);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let etag = response
        .headers()
        .get(ETAG)
        .map(|v| v.to_str().expect("ASCII").to_owned());
    if etag.is_some() {
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    }
    (status, etag, response.text().await.expect("a body"))
}

#[tokio::test]
async fn an_answer_is_kept_until_the_next_write_and_a_held_one_is_not_sent_again() {
    let db = TestDb::new();
    let app = cached_app(&db).await;
    app.create("billing", "staging").await;

    let (status, tag, first) = post(&app, PAGE, None).await;
    assert_eq!(status, 200);
    let tag = tag.expect("an ETag");
    let (_, again, second) = post(&app, PAGE, None).await;
    assert_eq!(
        (again.as_deref(), second.as_str()),
        (Some(tag.as_str()), first.as_str())
    );

    // The client holds it: 304, no body; over GET too (the same request).
    let (status, same, body) = post(&app, PAGE, Some(&tag)).await;
    assert_eq!(
        (status, same.as_deref(), body.as_str()),
        (StatusCode::NOT_MODIFIED, Some(tag.as_str()), "")
    );
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", PAGE)])
        .header("accept", "application/json")
        .header(IF_NONE_MATCH, format!("\"other\", {tag}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    // A write: the next answer is fresh, with a new tag, whatever the client holds.
    app.create("payments", "staging").await;
    let (status, fresh, body) = post(&app, PAGE, Some(&tag)).await;
    assert_eq!(status, 200);
    assert_ne!(fresh.as_deref(), Some(tag.as_str()));
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["data"]["deployments"]["totalCount"], 2);
    // Other variables or another operation are other requests, with other tags.
    let (_, other, _) = post(&app, "{ deployments(first: 1) { totalCount } }", None).await;
    assert!(other.is_some());
    assert_ne!(other, fresh);
    app.stop().await;
}

#[tokio::test]
async fn mutations_errors_and_answers_that_read_the_clock_are_never_kept() {
    let db = TestDb::new();
    let app = cached_app(&db).await;
    let id = app.create("billing", "staging").await;
    // A window far in the future: nothing is frozen now, but `period` reads the clock.
    app.ok(
        "mutation { createFreezeWindow(input: { environment: \"staging\", reason: \"audit\", \
         actor: \"carol\", startsAt: \"2099-01-01T00:00:00Z\", endsAt: \"2099-01-02T00:00:00Z\" }) { id } }",
        json!({}),
    )
    .await;

    let approve = format!(
        "mutation {{ approveDeployment(input: {{ id: \"{id}\", actor: \"bob\" }}) {{ deployment {{ status }} }} }}"
    );
    let (status, tag, _) = post(&app, &approve, None).await;
    assert_eq!((status, tag), (StatusCode::OK, None), "a mutation");

    let missing = "{ deployment(id: \"nope\") { id } }";
    let (_, tag, body) = post(&app, missing, None).await;
    assert!(body.contains("errors"), "{body}");
    assert_eq!(tag, None, "an answer with an error");

    // `activeFreeze` and `blockers` are about now; `period` without `at` too.
    for query in [
        "{ environment(name: \"staging\") { activeFreeze { startsAt } } }",
        "{ deployments(first: 1) { nodes { blockers { kind } } } }",
        "{ freezeWindows { period { startsAt } } }",
    ] {
        let (status, tag, body) = post(&app, query, None).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("errors"), "{body}");
        assert_eq!(tag, None, "{query}");
    }
    // The same fields about a given time may be kept.
    let (_, tag, body) = post(
        &app,
        "{ freezeWindows { period(at: \"2026-01-01T00:00:00Z\") { startsAt } } }",
        None,
    )
    .await;
    assert!(!body.contains("errors"), "{body}");
    assert!(tag.is_some());
    app.stop().await;
}

#[tokio::test]
async fn without_the_flag_nothing_is_kept_and_no_tag_is_sent() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let (status, tag, _) = post(&app, PAGE, None).await;
    assert_eq!((status, tag), (StatusCode::OK, None));
    app.stop().await;
}
