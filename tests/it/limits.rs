//! Guarantees under load and bad input: exactly-once transitions, idempotent creation,
//! bounded inputs, and panics that never reach a client.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use serde_json::{json, Value};
use shiplog::graphql::{Hooks, MAX_ALIASES, MAX_ROOT_FIELDS};
use shiplog::server::MAX_BODY_BYTES;

use crate::helpers::{action, create_input, single_error, TestApp, TestDb, CREATE};

/// Sends every body at once, each from a client of its own (its own connection), and
/// returns the responses in order.
async fn post_all_at_once(app: &TestApp, bodies: Vec<Value>) -> Vec<Value> {
    let requests: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, url) = (reqwest::Client::new(), app.url("/graphql"));
            tokio::spawn(async move {
                let response = client.post(url).json(&body).send().await.expect("send");
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("json")
            })
        })
        .collect();
    let mut out = Vec::new();
    for request in requests {
        out.push(request.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn concurrent_identical_actions_from_many_connections_succeed_exactly_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("billing", "staging").await;

    let bodies = (0..16)
        .map(|i| {
            json!({ "query": action("approveDeployment"),
                    "variables": { "input": { "id": id, "actor": format!("reviewer-{i}") } } })
        })
        .collect();
    let mut ok = 0;
    for body in post_all_at_once(&app, bodies).await {
        if body.get("errors").is_none() {
            ok += 1;
        } else {
            let (code, error) = single_error(&body);
            assert_eq!(code, "CONFLICT", "{body}");
            assert_eq!(error["extensions"]["status"], "APPROVED");
        }
    }
    assert_eq!(ok, 1, "exactly one approval wins");
    let data = app
        .ok(
            "query($id: ID!) { deployment(id: $id) { events { kind } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["deployment"]["events"],
        json!([{ "kind": "CREATED" }, { "kind": "APPROVED" }])
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_writers_queue_instead_of_seeing_a_locked_database() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let bodies = (0..32)
        .map(|i| {
            json!({ "query": CREATE,
                    "variables": { "input": create_input(&format!("svc-{i}"), "staging") } })
        })
        .collect();
    for body in post_all_at_once(&app, bodies).await {
        assert!(body.get("errors").is_none(), "{body}");
    }
    let data = app.ok("{ deployments { totalCount } }", json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 32);
    app.stop().await;
}

#[tokio::test]
async fn racing_retries_with_one_idempotency_key_create_one_deployment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut input = create_input("billing", "production");
    input["idempotencyKey"] = json!("deploy-billing-42");

    let bodies = vec![json!({ "query": CREATE, "variables": { "input": input } }); 10];
    let mut answers = Vec::new();
    for body in post_all_at_once(&app, bodies).await {
        assert!(body.get("errors").is_none(), "{body}");
        let payload = &body["data"]["createDeployment"];
        answers.push((
            payload["deployment"]["id"].clone(),
            payload["event"]["id"].clone(),
        ));
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "every retry answers the same deployment and event"
    );

    let data = app
        .ok(
            "{ deployments { totalCount } deploymentEvents { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["deployments"]["totalCount"], 1);
    assert_eq!(
        data["deploymentEvents"]["nodes"].as_array().map(Vec::len),
        Some(1)
    );

    // Same key, other input: a conflict, and still one deployment.
    input["version"] = json!("v9.9.9");
    let body = app.graphql(CREATE, json!({ "input": input })).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "CONFLICT");
    assert_eq!(error["extensions"]["action"], "create");
    let data = app.ok("{ deployments { totalCount } }", json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_body_past_the_limit_is_refused_with_413_and_a_code() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let padding = "x".repeat(MAX_BODY_BYTES);
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"query":"{{ deployments {{ totalCount }} }}","extensions":{{"pad":"{padding}"}}}}"#
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
    // The server goes on serving.
    app.ok("{ deployments { totalCount } }", json!({})).await;
    app.stop().await;
}

#[tokio::test]
async fn too_many_root_fields_or_aliases_are_refused_before_running() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let roots = |n: usize| -> String {
        let fields: String = (0..n)
            .map(|i| format!("r{i}: deployments(first: 1) {{ totalCount }} "))
            .collect();
        format!("{{ {fields} }}")
    };
    app.ok(&roots(MAX_ROOT_FIELDS), json!({})).await;
    let body = app.graphql(&roots(MAX_ROOT_FIELDS + 1), json!({})).await;
    assert_eq!(single_error(&body).0, "GRAPHQL_VALIDATION_FAILED");

    // Aliases deep inside count too, fragments included.
    let aliased: String = (0..=MAX_ALIASES).map(|i| format!("a{i}: id ")).collect();
    let doc = format!("{{ deployments {{ ...F }} }} fragment F on DeploymentConnection {{ nodes {{ {aliased} }} }}");
    let body = app.graphql(&doc, json!({})).await;
    assert_eq!(single_error(&body).0, "GRAPHQL_VALIDATION_FAILED");

    // Mutations too: one document cannot carry a flood of writes.
    let writes: String = (0..=MAX_ROOT_FIELDS)
        .map(|i| format!("m{i}: createDeployment(input: $input) {{ deployment {{ id }} }} "))
        .collect();
    let body = app
        .graphql(
            &format!("mutation($input: CreateDeploymentInput!) {{ {writes} }}"),
            json!({ "input": create_input("billing", "staging") }),
        )
        .await;
    assert_eq!(single_error(&body).0, "GRAPHQL_VALIDATION_FAILED");
    let data = app.ok("{ deployments { totalCount } }", json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 0, "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn a_huge_any_of_list_is_answered_not_failed() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("billing", "staging").await;
    app.act("approveDeployment", &id, "bob", None).await;
    // Far more values than SQLite takes as parameters of one statement.
    let statuses = vec!["APPROVED"; 40_000];
    let kinds = vec!["CREATED"; 40_000];
    let data = app
        .ok(
            "query($s: [DeploymentStatus!], $k: [DeploymentEventKind!]) { \
             deployments(filter: { status: $s }) { totalCount } \
             deploymentEvents(filter: { kind: $k }) { nodes { kind } } }",
            json!({ "s": statuses, "k": kinds }),
        )
        .await;
    assert_eq!(data["deployments"]["totalCount"], 1);
    assert_eq!(
        data["deploymentEvents"]["nodes"],
        json!([{ "kind": "CREATED" }])
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_strings_and_lists_are_refused_with_their_field_paths() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut input = create_input("billing", "staging");
    input["service"] = json!("s".repeat(101));
    input["workRefs"] = json!(vec!["ref"; 51]);
    input["rollbackPlan"] = json!("p".repeat(10_001));
    let body = app.graphql(CREATE, json!({ "input": input })).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    let fields: Vec<&str> = error["extensions"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["input.service", "input.workRefs", "input.rollbackPlan"]
    );
    app.stop().await;
}

struct Panicky;

#[Object]
impl Panicky {
    async fn fine(&self) -> i32 {
        1
    }
    async fn boom(&self, divisor: Option<i32>) -> i32 {
        // Divides by zero unless told otherwise: a bug the compiler cannot see coming.
        let divisor = divisor.unwrap_or(0);
        if divisor == 0 {
            panic!("resolver bug");
        }
        100 / divisor
    }
}

#[tokio::test]
async fn a_panicking_resolver_becomes_an_internal_server_error_and_serving_goes_on() {
    let schema = Schema::build(Panicky, EmptyMutation, EmptySubscription)
        .extension(Hooks::default())
        .finish();
    let response = schema.execute("{ fine boom }").await;
    let body = serde_json::to_value(&response).expect("json");
    assert_eq!(single_error(&body).0, "INTERNAL_SERVER_ERROR");
    assert!(
        !body.to_string().contains("resolver bug"),
        "the panic stays in the log"
    );
    let again = schema.execute("{ fine }").await;
    assert!(again.errors.is_empty());
}
