//! GraphQL over HTTP through a real server: media types and status codes, GET, CSRF
//! prevention, CORS, batches, the response size bound, and introspection within the
//! document limits.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shiplog::server::ServerOptions;

use crate::helpers::{create_input, single_error, TestApp, TestDb, CREATE};
use crate::process::Server;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The introspection query graphql-js 16 `getIntrospectionQuery()` builds with every
/// option on (descriptions, specifiedByUrl, directiveIsRepeatable, schemaDescription,
/// inputValueDeprecation), and with descriptions off.
const INTROSPECTION: &str = include_str!("introspection.graphql");
const INTROSPECTION_MINIMAL: &str = include_str!("introspection-minimal.graphql");

/// A page of 100 deployments with every field and their events.
const BIG_PAGE: &str = "{ deployments(first: 100) { totalCount edges { cursor node { id service environment version requester workRefs risk rollbackPlan status reviewedBy reviewedAt createdAt updatedAt events { id cursor kind actor note fromStatus toStatus occurredAt } } } } }";

struct Answer {
    status: StatusCode,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("send the request");
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

fn post_json(app: &TestApp, body: Value) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/graphql"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_response_media_type_follows_the_accept_header() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let query = json!({ "query": "{ __typename }" });
    for (accept, expected) in [
        (None, "application/json"),
        (Some("application/json"), "application/json"),
        (Some("*/*"), "application/json"),
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
        (
            Some("application/graphql-response+json;q=0.5, application/json"),
            "application/json",
        ),
    ] {
        let mut request = post_json(&app, query.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let answer = send(request).await;
        assert_eq!(answer.status, 200, "{accept:?}");
        assert!(
            answer.content_type.starts_with(expected) && answer.content_type.contains("utf-8"),
            "{accept:?}: {}",
            answer.content_type
        );
        assert_eq!(answer.body, json!({ "data": { "__typename": "Query" } }));
    }
    let answer = send(post_json(&app, query).header(ACCEPT, "text/csv")).await;
    assert_eq!(answer.status, 406);
    assert_eq!(code(&answer.body), "NOT_ACCEPTABLE");
    app.stop().await;
}

#[tokio::test]
async fn a_request_that_fails_before_execution_has_no_data_and_is_400_under_graphql_response_json()
{
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let cases = [
        (json!({ "query": "{" }), "GRAPHQL_PARSE_FAILED"),
        (json!({ "query": "{ nope }" }), "GRAPHQL_VALIDATION_FAILED"),
        (
            json!({ "query": "query Q($id: ID!) { deployment(id: $id) { id } }", "variables": { "id": null } }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ];
    for (body, expected) in cases {
        let strict = send(post_json(&app, body.clone()).header(ACCEPT, GRAPHQL_RESPONSE)).await;
        assert_eq!(strict.status, 400, "{body}");
        assert!(strict.body.get("data").is_none(), "{:#}", strict.body);
        assert_eq!(code(&strict.body), expected, "{:#}", strict.body);

        let legacy = send(post_json(&app, body.clone()).header(ACCEPT, "application/json")).await;
        assert_eq!(legacy.status, 200, "{body}");
        assert!(legacy.body.get("data").is_none(), "{:#}", legacy.body);
        assert_eq!(code(&legacy.body), expected);
    }
    // A failure during execution keeps `data` (null here: a non-null root field failed)
    // and is 200 under both media types.
    let executed = send(
        post_json(
            &app,
            json!({ "query": "{ deployments(first: 1000) { totalCount } }" }),
        )
        .header(ACCEPT, GRAPHQL_RESPONSE),
    )
    .await;
    assert_eq!(executed.status, 200);
    assert_eq!(executed.body["data"], Value::Null);
    assert!(executed.body.get("data").is_some());
    assert_eq!(code(&executed.body), "BAD_USER_INPUT");
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_code() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    for body in [
        "",
        "not json",
        "42",
        r#"{"notquery": "{ __typename }"}"#,
        r#"{"query": {"obj": "ect"}}"#,
        r#"{"query": "{ __typename }", "variables": "string"}"#,
        r#"{"query": "{ __typename }", "operationName": 0}"#,
        r#"{"query": "{ __typename }", "extensions": ["array"]}"#,
        "[]",
        r#"[{"query": "{ __typename }"}, 7]"#,
    ] {
        for accept in ["application/json", GRAPHQL_RESPONSE] {
            let answer = send(
                app.client
                    .post(app.url("/graphql"))
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, accept)
                    .body(body),
            )
            .await;
            assert_eq!(answer.status, 400, "{body:?} {accept}: {:#}", answer.body);
            assert_eq!(code(&answer.body), "BAD_REQUEST", "{body:?}");
            assert!(answer.body.get("data").is_none());
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn get_runs_queries_but_never_mutations() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    app.create("billing", "staging").await;

    let answer = send(app.client.get(app.url("/graphql")).query(&[
        (
            "query",
            "query Count($f: DeploymentFilter) { deployments(filter: $f) { totalCount } }",
        ),
        ("variables", r#"{"f": {"service": "billing"}}"#),
        ("operationName", "Count"),
    ]))
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["data"]["deployments"]["totalCount"], 1);

    let create = format!(
        "mutation {{ createDeployment(input: {}) {{ deployment {{ id }} }} }}",
        "{service: \"x\", environment: \"dev\", version: \"1\", requester: \"a\", workRefs: [\"J-1\"], rollbackPlan: \"r\"}"
    );
    for accept in [GRAPHQL_RESPONSE, "application/json"] {
        let answer = send(
            app.client
                .get(app.url("/graphql"))
                .header(ACCEPT, accept)
                .query(&[("query", create.as_str())]),
        )
        .await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.headers["allow"], "POST");
        assert_eq!(code(&answer.body), "METHOD_NOT_ALLOWED");
    }
    // A document with a query and a mutation, asking for the mutation by name.
    let named = format!(
        "query Q {{ __typename }} {}",
        create.replacen("mutation", "mutation M", 1)
    );
    let answer = send(
        app.client
            .get(app.url("/graphql"))
            .query(&[("query", named.as_str()), ("operationName", "M")]),
    )
    .await;
    assert_eq!(answer.status, 405);
    let subscription = send(
        app.client
            .get(app.url("/graphql"))
            .query(&[("query", "subscription { deploymentEvents { kind } }")]),
    )
    .await;
    assert_eq!(subscription.status, 405);

    let data = app.ok("{ deployments { totalCount } }", json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 1, "nothing was created");

    let put = send(app.client.request(Method::PUT, app.url("/graphql"))).await;
    assert_eq!(put.status, 405);
    assert_eq!(put.headers["allow"], "GET, POST");
    app.stop().await;
}

#[tokio::test]
async fn a_browser_gets_graphiql_and_the_root_redirects_to_it() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let page = send(app.client.get(app.url("/graphql")).header(
        ACCEPT,
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ))
    .await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let root = no_redirects.get(app.url("/")).send().await.expect("GET /");
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/graphql");

    // A GET without a query from a client that is not a browser is told what is missing.
    let bare = send(app.client.get(app.url("/graphql"))).await;
    assert_eq!(bare.status, 400);
    assert_eq!(code(&bare.body), "BAD_REQUEST");
    app.stop().await;
}

/// Content types a page of another site can POST without a CORS preflight.
const SIMPLE_TYPES: [&str; 4] = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
];

#[tokio::test]
async fn a_post_a_browser_could_forge_is_refused_unless_it_carries_a_preflight_header() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let create =
        json!({ "query": CREATE, "variables": { "input": create_input("billing", "staging") } })
            .to_string();
    for content_type in SIMPLE_TYPES {
        let answer = send(
            app.client
                .post(app.url("/graphql"))
                .header(CONTENT_TYPE, content_type)
                .body(create.clone()),
        )
        .await;
        assert_eq!(answer.status, 400, "{content_type}");
        assert_eq!(code(&answer.body), "CSRF_PREVENTED", "{content_type}");
    }
    let none = send(app.client.post(app.url("/graphql")).body(create.clone())).await;
    assert_eq!(none.status, 415);
    assert_eq!(code(&none.body), "UNSUPPORTED_MEDIA_TYPE");
    let other = send(
        app.client
            .post(app.url("/graphql"))
            .header(CONTENT_TYPE, "application/xml")
            .body(create.clone()),
    )
    .await;
    assert_eq!(other.status, 415);
    let data = app.ok("{ deployments { totalCount } }", json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 0, "nothing was created");

    // A script allowed through CORS may set the header; then text/plain JSON runs.
    let answer = send(
        app.client
            .post(app.url("/graphql"))
            .header(CONTENT_TYPE, "text/plain")
            .header("apollo-require-preflight", "true")
            .body(create),
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(
        answer.body["data"]["createDeployment"]["deployment"]["status"],
        "PENDING_APPROVAL"
    );
    app.stop().await;
}

#[tokio::test]
async fn cors_is_off_by_default_and_on_for_configured_origins() {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
    };
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let answer = send(preflight(&app, "https://dash.example.com")).await;
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    let answer = send(
        post_json(&app, json!({ "query": "{ __typename }" }))
            .header("origin", "https://dash.example.com"),
    )
    .await;
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    app.stop().await;

    let db = TestDb::new();
    let options = ServerOptions {
        cors_origins: vec!["https://dash.example.com".into()],
        ..ServerOptions::default()
    };
    let app = TestApp::start_with(&db, &[], options).await;
    let allowed = send(preflight(&app, "https://dash.example.com")).await;
    assert!(allowed.status.is_success(), "{}", allowed.status);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://dash.example.com"
    );
    let methods = allowed.headers["access-control-allow-methods"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let other = send(preflight(&app, "https://evil.example.net")).await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
    let answer = send(
        post_json(&app, json!({ "query": "{ __typename }" }))
            .header("origin", "https://dash.example.com"),
    )
    .await;
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://dash.example.com"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_runs_in_order_up_to_its_size_limit() {
    let db = TestDb::new();
    let options = ServerOptions {
        max_batch: 3,
        ..ServerOptions::default()
    };
    let app = TestApp::start_with(&db, &[], options).await;
    let create =
        json!({ "query": CREATE, "variables": { "input": create_input("billing", "staging") } });
    let count = json!({ "query": "{ deployments { totalCount } }" });
    let answer = send(post_json(&app, json!([create, count, { "query": "{" }]))).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let items = answer.body.as_array().expect("an array");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0]["data"]["createDeployment"]["deployment"]["status"],
        "PENDING_APPROVAL"
    );
    // Run after the creation: it sees it.
    assert_eq!(items[1]["data"]["deployments"]["totalCount"], 1);
    assert!(items[2].get("data").is_none());
    assert_eq!(code(&items[2]), "GRAPHQL_PARSE_FAILED");

    let four = json!([count, count, count, count]);
    let answer = send(post_json(&app, four)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(code(&answer.body), "BATCH_TOO_LARGE");
    app.stop().await;
}

#[tokio::test]
async fn the_complexity_limit_applies_to_a_batch_as_a_whole() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    app.create("billing", "staging").await;
    // Each copy is within the limit alone; four together are not.
    let one = json!({ "query": BIG_PAGE });
    let alone = send(post_json(&app, json!([one]))).await;
    assert_eq!(alone.status, 200);
    assert!(alone.body[0].get("errors").is_none(), "{:#}", alone.body);

    let answer = send(post_json(&app, json!([one, one, one, one]))).await;
    let items = answer.body.as_array().expect("an array");
    assert_eq!(items.len(), 4);
    for item in items {
        assert!(item.get("data").is_none());
        let (code, error) = single_error(item);
        assert_eq!(code, "GRAPHQL_VALIDATION_FAILED");
        assert!(error["extensions"]["complexity"].as_u64() > Some(10_000));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_response_past_the_size_bound_is_cut_off_with_a_code() {
    let db = TestDb::new();
    let options = ServerOptions {
        max_response_bytes: 4 * 1024,
        ..ServerOptions::default()
    };
    let app = TestApp::start_with(&db, &[], options).await;
    for i in 0..10 {
        app.create(&format!("service-{i}"), "staging").await;
    }
    let answer = send(post_json(&app, json!({ "query": BIG_PAGE }))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["data"], Value::Null);
    let (first, error) = single_error(&answer.body);
    assert_eq!(first, "RESPONSE_TOO_LARGE");
    assert_eq!(error["extensions"]["limit"], 4096);

    // In a batch, the requests before the bound are answered, the rest are cut off and
    // not run.
    let small = json!({ "query": "{ deployments(first: 1) { totalCount } }" });
    let create =
        json!({ "query": CREATE, "variables": { "input": create_input("late", "staging") } });
    let answer = send(post_json(
        &app,
        json!([small, { "query": BIG_PAGE }, create]),
    ))
    .await;
    let items = answer.body.as_array().expect("an array");
    assert_eq!(items[0]["data"]["deployments"]["totalCount"], 10);
    assert_eq!(code(&items[1]), "RESPONSE_TOO_LARGE");
    assert_eq!(code(&items[2]), "RESPONSE_TOO_LARGE");
    let data = app.ok("{ deployments { totalCount } }", json!({})).await;
    assert_eq!(
        data["deployments"]["totalCount"], 10,
        "the creation did not run"
    );
    app.stop().await;
}

#[test]
fn a_thousand_copy_batch_is_refused_and_the_servers_memory_stays_flat() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = Server::start(dir.path().join("shiplog.db"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        // Some data, so that each copy would build a real page.
        for i in 0..20 {
            let body = json!({ "query": CREATE, "variables": { "input": create_input(&format!("s{i}"), "staging") } });
            let response = client
                .post(server.graphql_url())
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("create");
            assert_eq!(response.status(), 200);
        }
        let batch = Value::Array(vec![json!({ "query": BIG_PAGE }); 1_000]).to_string();
        assert!(batch.len() > 200_000, "a large request: {} bytes", batch.len());
        // The first refusals warm the allocator's heaps of the server's two workers
        // (several MiB in a debug build, kept for reuse); the five after them must not
        // grow the server.
        let mut before = 0;
        for round in 0..7 {
            if round == 2 {
                server.reset_peak_memory();
                before = server.memory_kib().0;
            }
            let response = client
                .post(server.graphql_url())
                .header(CONTENT_TYPE, "application/json")
                .body(batch.clone())
                .send()
                .await
                .expect("send the batch");
            assert_eq!(response.status(), 400);
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(code(&body), "BATCH_TOO_LARGE");
        }
        let (_, peak) = server.memory_kib();
        assert!(
            peak < before + 20 * 1024,
            "memory grew from {before} KiB to a peak of {peak} KiB"
        );
        let health = client
            .get(server.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
    });
}

#[tokio::test]
async fn the_standard_introspection_query_succeeds() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    for query in [INTROSPECTION, INTROSPECTION_MINIMAL] {
        let answer = send(
            post_json(
                &app,
                json!({ "query": query, "operationName": "IntrospectionQuery" }),
            )
            .header(ACCEPT, GRAPHQL_RESPONSE),
        )
        .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        assert!(answer.body.get("errors").is_none(), "{:#}", answer.body);
        let schema = &answer.body["data"]["__schema"];
        assert_eq!(schema["queryType"]["name"], "Query");
        assert_eq!(schema["subscriptionType"]["name"], "Subscription");
        let types = schema["types"].as_array().expect("types");
        assert!(types.iter().any(|t| t["name"] == "Deployment"));
    }
    app.stop().await;
}

#[tokio::test]
async fn introspection_is_no_way_around_the_document_limits() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let chain = |levels: usize| {
        format!(
            "{{ __type(name: \"Query\") {{ {}name{} }} }}",
            "ofType { ".repeat(levels),
            " }".repeat(levels)
        )
    };
    // The standard query's chain (nine levels) passes; longer ones do not.
    let fine = app.graphql(&chain(9), json!({})).await;
    assert!(fine.get("errors").is_none(), "{fine:#}");
    for levels in [25, 200] {
        let body = app.graphql(&chain(levels), json!({})).await;
        let code = code(&body);
        assert!(
            code == "GRAPHQL_VALIDATION_FAILED" || code == "GRAPHQL_PARSE_FAILED",
            "{levels}: {body:#}"
        );
        assert!(body.get("data").is_none());
    }
    // Ordinary queries keep their depth limit of 12.
    let deep = "{ deployments { nodes { events { deployment { events { deployment { events { deployment { events { deployment { events { deployment { id } } } } } } } } } } } } }";
    let body = app.graphql(deep, json!({})).await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    // Aliases and root fields are limited under introspection too.
    let aliases: String = (0..101).map(|i| format!("a{i}: __typename ")).collect();
    let body = app
        .graphql(
            &format!("{{ __schema {{ queryType {{ {aliases} }} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    let roots: String = (0..21)
        .map(|i| format!("t{i}: __type(name: \"Query\") {{ name }} "))
        .collect();
    let body = app.graphql(&format!("{{ {roots} }}"), json!({})).await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    app.stop().await;
}
