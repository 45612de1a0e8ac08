//! API tests: the user stories of the contract through real HTTP, against a server on
//! port 0 over its own SQLite file. Every assertion is about a JSON response.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------
// Documents and small helpers
// ---------------------------------------------------------------------------------------

const DEPLOYMENT: &str = r#"
query One($id: ID!) {
  deployment(id: $id) {
    id service environment version requester workRefs risk rollbackPlan status
    reviewedBy reviewedAt createdAt updatedAt
    events { id kind actor note fromStatus toStatus occurredAt cursor deploymentId }
  }
}"#;

const PAGE: &str = r#"
query Page($filter: DeploymentFilter, $first: Int, $after: String) {
  deployments(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { id service environment status createdAt } }
    nodes { id service environment status createdAt }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"#;

const FEED: &str = r#"
query Feed($filter: DeploymentEventFilter, $first: Int, $after: String) {
  deploymentEvents(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id cursor deploymentId kind actor note fromStatus toStatus occurredAt } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"#;

/// Runs a lifecycle mutation and returns the whole response, errors included.
async fn try_act(
    app: &TestApp,
    mutation: &str,
    id: &str,
    actor: &str,
    note: Option<&str>,
) -> Value {
    app.graphql(
        &action(mutation),
        json!({ "input": { "id": id, "actor": actor, "note": note } }),
    )
    .await
}

/// The deployment with every field and its events, as `deployment(id:)` answers.
async fn fetch(app: &TestApp, id: &str) -> Value {
    app.ok(DEPLOYMENT, json!({ "id": id })).await["deployment"].clone()
}

/// A production deployment requested by alice, in status PENDING_APPROVAL.
async fn pending(app: &TestApp) -> String {
    app.create("payments", "production").await
}

/// A deployment moved along `steps` (mutation, actor, note), each of which must succeed.
async fn moved(app: &TestApp, steps: &[Step]) -> String {
    let id = pending(app).await;
    for (mutation, actor, note) in steps {
        app.act(mutation, &id, actor, *note).await;
    }
    id
}

/// A lifecycle step: mutation, actor and note.
type Step = (&'static str, &'static str, Option<&'static str>);

const APPROVE: Step = ("approveDeployment", "bob", None);
const START: Step = ("startDeployment", "carol", None);
const SUCCEED: Step = ("succeedDeployment", "carol", None);
const FAIL: Step = ("failDeployment", "carol", Some("health checks failed"));
const REJECT: Step = ("rejectDeployment", "bob", Some("no change window"));
const ROLL_BACK: Step = ("rollBackDeployment", "dave", Some("error rate went up"));

/// Every lifecycle mutation and the action name its CONFLICT errors carry.
const EVERY_ACTION: [(&str, &str); 6] = [
    ("approveDeployment", "approve"),
    ("rejectDeployment", "reject"),
    ("startDeployment", "start"),
    ("succeedDeployment", "succeed"),
    ("failDeployment", "fail"),
    ("rollBackDeployment", "rollBack"),
];

/// The `field` of every entry of `extensions.fields` of the single error of `body`.
fn bad_fields(body: &Value) -> Vec<String> {
    let (code, error) = single_error(body);
    assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
    error["extensions"]["fields"]
        .as_array()
        .expect("BAD_USER_INPUT carries extensions.fields")
        .iter()
        .map(|f| {
            assert!(
                f["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every field problem has a message: {f}"
            );
            f["field"].as_str().expect("a field path").to_owned()
        })
        .collect()
}

/// Asserts that `body` is a CONFLICT about `action` from `status`.
fn assert_conflict(body: &Value, status: &str, action: &str) {
    let (code, error) = single_error(body);
    assert_eq!(code, "CONFLICT", "{body:#}");
    assert_eq!(error["extensions"]["status"], status, "{body:#}");
    assert_eq!(error["extensions"]["action"], action, "{body:#}");
}

/// A timestamp such as 2026-11-25T06:35:39.123Z: RFC 3339, UTC as `Z`, milliseconds.
fn assert_timestamp(value: &Value) {
    let s = value.as_str().expect("a timestamp string");
    let shape = s.len() == 24
        && s.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "{s:?} is not like 2026-11-25T06:35:39.123Z");
    chrono::DateTime::parse_from_rfc3339(s).expect("an RFC 3339 timestamp");
}

/// A lowercase hyphenated UUID of version 7.
fn assert_uuid_v7(value: &Value) {
    let s = value.as_str().expect("an id string");
    let uuid = Uuid::parse_str(s).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 7, "{s} is a UUIDv7");
    assert_eq!(
        s,
        uuid.hyphenated().to_string(),
        "{s} is lowercase hyphenated"
    );
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn edge_node_ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Creates `n` deployments of `service` in staging; their ids oldest first.
async fn create_many(app: &TestApp, service: &str, n: usize) -> Vec<String> {
    let mut created = Vec::new();
    for _ in 0..n {
        created.push(app.create(service, "staging").await);
    }
    created
}

/// Walks `deployments` with pages of `first`, calling `between` after every page;
/// returns the ids in the order seen.
async fn walk<F, Fut>(app: &TestApp, first: i64, mut between: F) -> Vec<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for _ in 0..1000 {
        let data = app
            .ok(PAGE, json!({ "first": first, "after": after }))
            .await;
        let page = &data["deployments"];
        let edges = page["edges"].as_array().expect("edges");
        assert!(edges.len() <= first as usize, "at most `first` edges");
        seen.extend(edge_node_ids(page));
        between().await;
        if page["pageInfo"]["hasNextPage"] == json!(false) {
            return seen;
        }
        assert!(!edges.is_empty(), "a page with a next page is not empty");
        after = page["pageInfo"]["endCursor"].clone();
    }
    panic!("the walk never ended");
}

// ---------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_production_deployment_without_risk_is_refused_naming_input_risk() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    for risk in [Value::Null, json!(""), json!("   \n ")] {
        let mut input = create_input("payments", "production");
        input["risk"] = risk.clone();
        let body = app.graphql(CREATE, json!({ "input": input })).await;
        assert_eq!(bad_fields(&body), ["input.risk"], "risk {risk}: {body:#}");
        assert_eq!(body["data"], Value::Null, "no payload: {body:#}");
    }
    let mut input = create_input("payments", "production");
    input.as_object_mut().expect("an object").remove("risk");
    let body = app.graphql(CREATE, json!({ "input": input })).await;
    assert_eq!(bad_fields(&body), ["input.risk"], "risk omitted: {body:#}");

    let data = app.ok(PAGE, json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 0, "nothing was stored");
    app.stop().await;
}

#[tokio::test]
async fn creation_with_several_problems_reports_all_of_them_at_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    let mut input = create_input("payments", "production");
    input["service"] = json!("   ");
    input["workRefs"] = json!(["JIRA-1", "  "]);
    input["risk"] = Value::Null;
    input["rollbackPlan"] = json!("");
    let body = app.graphql(CREATE, json!({ "input": input })).await;
    let mut fields = bad_fields(&body);
    fields.sort();
    assert_eq!(
        fields,
        [
            "input.risk",
            "input.rollbackPlan",
            "input.service",
            "input.workRefs[1]"
        ],
        "{body:#}"
    );

    let mut input = create_input("payments", "staging");
    input["workRefs"] = json!([]);
    input["requester"] = json!("al\u{7}ice");
    input["version"] = json!("v".repeat(201));
    let body = app.graphql(CREATE, json!({ "input": input })).await;
    let mut fields = bad_fields(&body);
    fields.sort();
    assert_eq!(
        fields,
        ["input.requester", "input.version", "input.workRefs"],
        "{body:#}"
    );

    let data = app.ok(PAGE, json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 0, "nothing was stored");
    app.stop().await;
}

#[tokio::test]
async fn a_created_deployment_is_trimmed_pending_and_stamped_with_one_time() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    let input = json!({
        "service": "  payments ",
        "environment": " production\t",
        "version": " v2.3.4 ",
        "requester": "  alice  ",
        "workRefs": [" JIRA-1 ", "https://example.com/pr/7  "],
        "risk": "  low: config only \n",
        "rollbackPlan": "\n redeploy v2.3.3 ",
    });
    let data = app.ok(CREATE, json!({ "input": input })).await;
    let deployment = &data["createDeployment"]["deployment"];
    let event = &data["createDeployment"]["event"];

    assert_eq!(deployment["service"], "payments");
    assert_eq!(deployment["environment"], "production");
    assert_eq!(deployment["version"], "v2.3.4");
    assert_eq!(deployment["requester"], "alice");
    assert_eq!(
        deployment["workRefs"],
        json!(["JIRA-1", "https://example.com/pr/7"])
    );
    assert_eq!(deployment["risk"], "low: config only");
    assert_eq!(deployment["rollbackPlan"], "redeploy v2.3.3");
    assert_eq!(deployment["status"], "PENDING_APPROVAL");
    assert_eq!(deployment["reviewedBy"], Value::Null);
    assert_eq!(deployment["reviewedAt"], Value::Null);

    assert_uuid_v7(&deployment["id"]);
    assert_uuid_v7(&event["id"]);
    assert_ne!(deployment["id"], event["id"]);
    assert_timestamp(&deployment["createdAt"]);
    assert_eq!(deployment["createdAt"], deployment["updatedAt"]);
    assert_eq!(deployment["createdAt"], event["occurredAt"]);

    assert_eq!(event["deploymentId"], deployment["id"]);
    assert_eq!(event["kind"], "CREATED");
    assert_eq!(event["actor"], "alice");
    assert_eq!(event["note"], Value::Null);
    assert_eq!(event["fromStatus"], Value::Null);
    assert_eq!(event["toStatus"], "PENDING_APPROVAL");

    // What was stored is what the mutation answered.
    let id = deployment["id"].as_str().expect("an id");
    let stored = fetch(&app, id).await;
    for field in [
        "id",
        "service",
        "environment",
        "version",
        "requester",
        "workRefs",
        "risk",
        "rollbackPlan",
        "status",
        "reviewedBy",
        "reviewedAt",
        "createdAt",
        "updatedAt",
    ] {
        assert_eq!(stored[field], deployment[field], "stored {field}");
    }
    assert_eq!(stored["events"].as_array().expect("events").len(), 1);
    assert_eq!(stored["events"][0]["id"], event["id"]);
    assert_eq!(stored["events"][0]["cursor"], event["cursor"]);
    app.stop().await;
}

#[tokio::test]
async fn a_non_production_deployment_may_omit_its_risk() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    for risk in [Value::Null, json!("  ")] {
        let mut input = create_input("payments", "staging");
        input["risk"] = risk;
        let data = app.ok(CREATE, json!({ "input": input })).await;
        let deployment = &data["createDeployment"]["deployment"];
        assert_eq!(deployment["risk"], Value::Null);
        assert_eq!(deployment["status"], "PENDING_APPROVAL");
    }
    app.stop().await;
}

#[tokio::test]
async fn production_environments_are_the_configured_ones_compared_trimmed_and_case_insensitively() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["prod-eu"]).await;

    for environment in ["prod-eu", " PROD-EU "] {
        let mut input = create_input("payments", environment);
        input["risk"] = Value::Null;
        let body = app.graphql(CREATE, json!({ "input": input })).await;
        assert_eq!(
            bad_fields(&body),
            ["input.risk"],
            "{environment:?}: {body:#}"
        );
    }

    let mut input = create_input("payments", "production");
    input["risk"] = Value::Null;
    let data = app.ok(CREATE, json!({ "input": input })).await;
    assert_eq!(data["createDeployment"]["deployment"]["risk"], Value::Null);
    assert_eq!(
        data["createDeployment"]["deployment"]["environment"],
        "production"
    );
    app.stop().await;
}

#[tokio::test]
async fn retrying_a_creation_with_the_same_idempotency_key_returns_the_original_deployment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    let mut input = create_input("payments", "production");
    input["idempotencyKey"] = json!("req-42");
    let first = app.ok(CREATE, json!({ "input": input.clone() })).await;
    let again = app.ok(CREATE, json!({ "input": input.clone() })).await;
    assert_eq!(
        again["createDeployment"]["deployment"], first["createDeployment"]["deployment"],
        "the retry answers the original deployment"
    );
    let data = app.ok(PAGE, json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 1, "one deployment only");

    input["version"] = json!("v9.9.9");
    let body = app.graphql(CREATE, json!({ "input": input })).await;
    let (code, _) = single_error(&body);
    assert_eq!(code, "CONFLICT", "same key, other input: {body:#}");
    let data = app.ok(PAGE, json!({})).await;
    assert_eq!(data["deployments"]["totalCount"], 1, "still one deployment");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Review
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn someone_other_than_the_requester_approves_a_pending_deployment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = pending(&app).await;

    let payload = app
        .act("approveDeployment", &id, " bob ", Some(" looks fine "))
        .await;
    let deployment = &payload["deployment"];
    let event = &payload["event"];
    assert_eq!(deployment["id"], id.as_str());
    assert_eq!(deployment["status"], "APPROVED");
    assert_eq!(deployment["reviewedBy"], "bob");
    assert_timestamp(&deployment["reviewedAt"]);
    assert_eq!(deployment["reviewedAt"], event["occurredAt"]);
    assert_eq!(deployment["updatedAt"], event["occurredAt"]);
    assert_eq!(event["kind"], "APPROVED");
    assert_eq!(event["actor"], "bob");
    assert_eq!(event["note"], "looks fine");
    assert_eq!(event["fromStatus"], "PENDING_APPROVAL");
    assert_eq!(event["toStatus"], "APPROVED");

    let stored = fetch(&app, &id).await;
    assert_eq!(stored["status"], "APPROVED");
    assert_eq!(stored["reviewedBy"], "bob");
    assert_eq!(stored["reviewedAt"], event["occurredAt"]);
    assert_eq!(stored["updatedAt"], event["occurredAt"]);
    assert_eq!(stored["events"].as_array().expect("events").len(), 2);
    assert_eq!(stored["events"][1]["id"], event["id"]);
    app.stop().await;
}

#[tokio::test]
async fn a_blank_optional_note_is_stored_as_null() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = pending(&app).await;

    let payload = app.act("approveDeployment", &id, "bob", Some("  ")).await;
    assert_eq!(payload["event"]["note"], Value::Null);
    let payload = app.act("startDeployment", &id, "bob", None).await;
    assert_eq!(payload["event"]["note"], Value::Null);
    let stored = fetch(&app, &id).await;
    assert_eq!(stored["events"][1]["note"], Value::Null);
    assert_eq!(stored["events"][2]["note"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_requester_cannot_approve_their_own_deployment_whatever_the_case_or_spacing() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = pending(&app).await;
    let before = fetch(&app, &id).await;

    for actor in ["alice", " ALICE ", "Alice"] {
        let body = try_act(&app, "approveDeployment", &id, actor, None).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "FORBIDDEN", "{actor:?}: {body:#}");
        assert_eq!(error["extensions"]["reason"], "SELF_APPROVAL", "{body:#}");
        assert_eq!(body["data"], Value::Null, "{body:#}");
    }

    let after = fetch(&app, &id).await;
    assert_eq!(after, before, "nothing changed");
    assert_eq!(after["status"], "PENDING_APPROVAL");
    assert_eq!(after["events"].as_array().expect("events").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn rejecting_requires_a_note_and_records_the_reviewer() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = pending(&app).await;

    for note in ["", "   "] {
        let body = try_act(&app, "rejectDeployment", &id, "bob", Some(note)).await;
        assert_eq!(bad_fields(&body), ["input.note"], "note {note:?}: {body:#}");
    }
    let body = try_act(&app, "rejectDeployment", &id, " ", Some(" ")).await;
    let mut fields = bad_fields(&body);
    fields.sort();
    assert_eq!(fields, ["input.actor", "input.note"], "{body:#}");
    assert_eq!(
        fetch(&app, &id).await["events"]
            .as_array()
            .expect("events")
            .len(),
        1,
        "refused input appends nothing"
    );

    // The requester may reject their own request.
    let payload = app
        .act("rejectDeployment", &id, "alice", Some(" no change window "))
        .await;
    assert_eq!(payload["deployment"]["status"], "REJECTED");
    assert_eq!(payload["deployment"]["reviewedBy"], "alice");
    assert_eq!(
        payload["deployment"]["reviewedAt"],
        payload["event"]["occurredAt"]
    );
    assert_eq!(
        payload["deployment"]["updatedAt"],
        payload["event"]["occurredAt"]
    );
    assert_eq!(payload["event"]["kind"], "REJECTED");
    assert_eq!(payload["event"]["note"], "no change window");
    assert_eq!(payload["event"]["fromStatus"], "PENDING_APPROVAL");
    assert_eq!(payload["event"]["toStatus"], "REJECTED");
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_deployment_refuses_every_further_action() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = moved(&app, &[REJECT]).await;
    let before = fetch(&app, &id).await;

    for (mutation, name) in EVERY_ACTION {
        let body = try_act(&app, mutation, &id, "erin", Some("because")).await;
        assert_conflict(&body, "REJECTED", name);
    }
    assert_eq!(fetch(&app, &id).await, before, "nothing changed");
    app.stop().await;
}

#[tokio::test]
async fn a_second_review_is_a_conflict() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = moved(&app, &[APPROVE]).await;

    let body = try_act(&app, "approveDeployment", &id, "carol", None).await;
    assert_conflict(&body, "APPROVED", "approve");
    let body = try_act(
        &app,
        "rejectDeployment",
        &id,
        "carol",
        Some("changed my mind"),
    )
    .await;
    assert_conflict(&body, "APPROVED", "reject");
    let stored = fetch(&app, &id).await;
    assert_eq!(stored["reviewedBy"], "bob");
    assert_eq!(stored["events"].as_array().expect("events").len(), 2);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_deployment_starts_only_once_approved() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = pending(&app).await;

    let body = try_act(&app, "startDeployment", &id, "carol", None).await;
    assert_conflict(&body, "PENDING_APPROVAL", "start");
    for mutation in ["succeedDeployment", "failDeployment", "rollBackDeployment"] {
        let body = try_act(&app, mutation, &id, "carol", Some("why")).await;
        let (code, _) = single_error(&body);
        assert_eq!(code, "CONFLICT", "{mutation}: {body:#}");
    }
    assert_eq!(
        fetch(&app, &id).await["events"]
            .as_array()
            .expect("events")
            .len(),
        1
    );

    app.act("approveDeployment", &id, "bob", None).await;
    let payload = app
        .act("startDeployment", &id, "carol", Some("rolling out"))
        .await;
    assert_eq!(payload["deployment"]["status"], "STARTED");
    assert_eq!(payload["deployment"]["reviewedBy"], "bob", "review kept");
    assert_eq!(payload["event"]["kind"], "STARTED");
    assert_eq!(payload["event"]["fromStatus"], "APPROVED");
    assert_eq!(payload["event"]["toStatus"], "STARTED");
    assert_eq!(payload["event"]["note"], "rolling out");
    assert_eq!(
        payload["deployment"]["updatedAt"],
        payload["event"]["occurredAt"]
    );

    let body = try_act(&app, "startDeployment", &id, "carol", None).await;
    assert_conflict(&body, "STARTED", "start");
    app.stop().await;
}

#[tokio::test]
async fn a_started_deployment_succeeds() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = moved(&app, &[APPROVE, START]).await;

    let payload = app.act("succeedDeployment", &id, "carol", None).await;
    assert_eq!(payload["deployment"]["status"], "SUCCEEDED");
    assert_eq!(payload["event"]["kind"], "SUCCEEDED");
    assert_eq!(payload["event"]["fromStatus"], "STARTED");
    assert_eq!(payload["event"]["toStatus"], "SUCCEEDED");
    assert_eq!(
        payload["deployment"]["updatedAt"],
        payload["event"]["occurredAt"]
    );

    for (mutation, name) in [
        ("succeedDeployment", "succeed"),
        ("failDeployment", "fail"),
        ("startDeployment", "start"),
        ("approveDeployment", "approve"),
    ] {
        let body = try_act(&app, mutation, &id, "carol", Some("again")).await;
        assert_conflict(&body, "SUCCEEDED", name);
    }
    app.stop().await;
}

#[tokio::test]
async fn failing_a_started_deployment_requires_a_note() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = moved(&app, &[APPROVE, START]).await;

    let body = try_act(&app, "failDeployment", &id, "carol", Some(" ")).await;
    assert_eq!(bad_fields(&body), ["input.note"], "{body:#}");
    assert_eq!(fetch(&app, &id).await["status"], "STARTED");

    let payload = app
        .act("failDeployment", &id, "carol", Some("health checks failed"))
        .await;
    assert_eq!(payload["deployment"]["status"], "FAILED");
    assert_eq!(payload["event"]["kind"], "FAILED");
    assert_eq!(payload["event"]["note"], "health checks failed");
    assert_eq!(payload["event"]["fromStatus"], "STARTED");
    assert_eq!(payload["event"]["toStatus"], "FAILED");

    let body = try_act(&app, "succeedDeployment", &id, "carol", None).await;
    assert_conflict(&body, "FAILED", "succeed");
    app.stop().await;
}

#[tokio::test]
async fn roll_back_works_from_started_succeeded_and_failed_and_requires_a_note() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    for (steps, from) in [
        (vec![APPROVE, START], "STARTED"),
        (vec![APPROVE, START, SUCCEED], "SUCCEEDED"),
        (vec![APPROVE, START, FAIL], "FAILED"),
    ] {
        let id = moved(&app, &steps).await;
        let body = try_act(&app, "rollBackDeployment", &id, "dave", Some("")).await;
        assert_eq!(bad_fields(&body), ["input.note"], "{body:#}");

        let payload = app
            .act(
                "rollBackDeployment",
                &id,
                "dave",
                Some("error rate went up"),
            )
            .await;
        assert_eq!(
            payload["deployment"]["status"], "ROLLED_BACK",
            "from {from}"
        );
        assert_eq!(payload["event"]["kind"], "ROLLED_BACK");
        assert_eq!(payload["event"]["fromStatus"], from);
        assert_eq!(payload["event"]["toStatus"], "ROLLED_BACK");
        assert_eq!(payload["event"]["note"], "error rate went up");
        assert_eq!(
            payload["deployment"]["updatedAt"],
            payload["event"]["occurredAt"]
        );
        assert_eq!(
            fetch(&app, &id).await["events"]
                .as_array()
                .expect("events")
                .len(),
            steps.len() + 2
        );
    }

    let id = moved(&app, &[APPROVE]).await;
    let body = try_act(&app, "rollBackDeployment", &id, "dave", Some("nothing ran")).await;
    assert_conflict(&body, "APPROVED", "rollBack");
    app.stop().await;
}

#[tokio::test]
async fn a_rolled_back_deployment_refuses_every_further_action() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = moved(&app, &[APPROVE, START, ROLL_BACK]).await;
    let before = fetch(&app, &id).await;

    for (mutation, name) in EVERY_ACTION {
        let body = try_act(&app, mutation, &id, "erin", Some("because")).await;
        assert_conflict(&body, "ROLLED_BACK", name);
    }
    assert_eq!(fetch(&app, &id).await, before, "nothing changed");
    app.stop().await;
}

#[tokio::test]
async fn the_full_story_is_recorded_one_event_per_action_in_history_and_feed() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    // Another deployment's events must not leak into this one's history or filtered feed.
    let other = app.create("search", "staging").await;

    let created = app
        .ok(
            CREATE,
            json!({ "input": create_input("payments", "production") }),
        )
        .await;
    let id = created["createDeployment"]["deployment"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let mut payload_events = vec![created["createDeployment"]["event"].clone()];

    let steps = [
        ("approveDeployment", "bob", Some("ok")),
        ("startDeployment", "carol", None),
        ("succeedDeployment", "carol", Some("all green")),
        ("rollBackDeployment", "dave", Some("error rate went up")),
    ];
    for (i, (mutation, actor, note)) in steps.into_iter().enumerate() {
        let payload = app.act(mutation, &id, actor, note).await;
        if i == 0 {
            // Interleave another deployment's event between this one's.
            app.act("approveDeployment", &other, "bob", None).await;
        }
        let events = fetch(&app, &id).await["events"].clone();
        let events = events.as_array().expect("events");
        assert_eq!(events.len(), i + 2, "{mutation} appended exactly one event");
        assert_eq!(events[i + 1]["id"], payload["event"]["id"]);
        assert_eq!(events[i + 1]["cursor"], payload["event"]["cursor"]);
        assert_eq!(
            payload["deployment"]["updatedAt"],
            payload["event"]["occurredAt"]
        );
        payload_events.push(payload["event"].clone());
    }

    let query = r#"
    query History($id: ID!) {
      deployment(id: $id) {
        status reviewedBy reviewedAt updatedAt
        events { id kind actor note fromStatus toStatus occurredAt cursor deploymentId }
      }
    }"#;
    let data = app.ok(query, json!({ "id": id })).await;
    let deployment = &data["deployment"];
    assert_eq!(deployment["status"], "ROLLED_BACK");
    assert_eq!(deployment["reviewedBy"], "bob");
    let events = deployment["events"].as_array().expect("events");
    let expected = [
        ("CREATED", "alice", None, None, "PENDING_APPROVAL"),
        (
            "APPROVED",
            "bob",
            Some("ok"),
            Some("PENDING_APPROVAL"),
            "APPROVED",
        ),
        ("STARTED", "carol", None, Some("APPROVED"), "STARTED"),
        (
            "SUCCEEDED",
            "carol",
            Some("all green"),
            Some("STARTED"),
            "SUCCEEDED",
        ),
        (
            "ROLLED_BACK",
            "dave",
            Some("error rate went up"),
            Some("SUCCEEDED"),
            "ROLLED_BACK",
        ),
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (event, (kind, actor, note, from, to)) in events.iter().zip(expected) {
        assert_eq!(event["kind"], kind);
        assert_eq!(event["actor"], actor, "{kind}");
        assert_eq!(event["note"], json!(note), "{kind}");
        assert_eq!(event["fromStatus"], json!(from), "{kind}");
        assert_eq!(event["toStatus"], to, "{kind}");
        assert_eq!(event["deploymentId"], id.as_str());
        assert_uuid_v7(&event["id"]);
        assert_timestamp(&event["occurredAt"]);
    }
    for (event, from_payload) in events.iter().zip(&payload_events) {
        assert_eq!(event["id"], from_payload["id"]);
        assert_eq!(event["cursor"], from_payload["cursor"]);
        assert_eq!(event["occurredAt"], from_payload["occurredAt"]);
    }
    for pair in events.windows(2) {
        let (a, b) = (
            pair[0]["occurredAt"].as_str().expect("a time"),
            pair[1]["occurredAt"].as_str().expect("a time"),
        );
        assert!(a <= b, "oldest first: {a} then {b}");
    }
    assert_eq!(deployment["reviewedAt"], events[1]["occurredAt"]);
    assert_eq!(deployment["updatedAt"], events[4]["occurredAt"]);

    // The feed of this deployment: the same events, edge cursors equal to event cursors.
    let data = app
        .ok(
            FEED,
            json!({ "filter": { "deploymentId": id }, "first": 100 }),
        )
        .await;
    let feed = &data["deploymentEvents"];
    let edges = feed["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 5, "{feed:#}");
    for (edge, event) in edges.iter().zip(events) {
        assert_eq!(edge["cursor"], edge["node"]["cursor"]);
        assert_eq!(edge["cursor"], event["cursor"]);
        for field in [
            "id",
            "kind",
            "actor",
            "note",
            "fromStatus",
            "toStatus",
            "occurredAt",
            "deploymentId",
        ] {
            assert_eq!(edge["node"][field], event[field], "feed {field}");
        }
    }
    assert_eq!(ids(&feed["nodes"]), ids(&deployment["events"]));
    assert_eq!(feed["pageInfo"]["hasNextPage"], false);

    // The other deployment kept its own two events.
    let other_events = fetch(&app, &other).await["events"].clone();
    assert_eq!(other_events.as_array().expect("events").len(), 2);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Ids: unknown, malformed, node
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_deployment_id_answers_null_and_not_found() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("payments", "production").await;
    let unknown = Uuid::now_v7().to_string();

    let body = app.graphql(DEPLOYMENT, json!({ "id": unknown })).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "NOT_FOUND", "{body:#}");
    assert_eq!(error["extensions"]["id"], unknown.as_str());
    assert_eq!(error["path"], json!(["deployment"]));
    assert_eq!(body["data"], json!({ "deployment": null }), "{body:#}");

    // Beside other fields, the missing deployment is still there as null.
    let body = app
        .graphql(
            "query($id: ID!) { deployment(id: $id) { id } deployments { totalCount } }",
            json!({ "id": unknown }),
        )
        .await;
    let (code, _) = single_error(&body);
    assert_eq!(code, "NOT_FOUND", "{body:#}");
    assert_eq!(
        body["data"],
        json!({ "deployment": null, "deployments": { "totalCount": 1 } }),
        "{body:#}"
    );
    app.stop().await;
}

#[tokio::test]
async fn actions_on_an_unknown_deployment_are_not_found() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let unknown = Uuid::now_v7().to_string();

    for (mutation, _) in EVERY_ACTION {
        let body = try_act(&app, mutation, &unknown, "bob", Some("why")).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "NOT_FOUND", "{mutation}: {body:#}");
        assert_eq!(error["extensions"]["id"], unknown.as_str(), "{body:#}");
    }
    let data = app.ok(FEED, json!({})).await;
    assert_eq!(
        data["deploymentEvents"]["edges"],
        json!([]),
        "nothing written"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_id_is_bad_user_input_naming_the_argument() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    for bad in ["not-a-uuid", "", "12345"] {
        let body = app.graphql(DEPLOYMENT, json!({ "id": bad })).await;
        assert_eq!(bad_fields(&body), ["id"], "deployment({bad:?}): {body:#}");

        let body = app
            .graphql(
                "query($id: ID!) { node(id: $id) { id } }",
                json!({ "id": bad }),
            )
            .await;
        assert_eq!(bad_fields(&body), ["id"], "node({bad:?}): {body:#}");

        for (mutation, _) in EVERY_ACTION {
            let body = try_act(&app, mutation, bad, "bob", Some("why")).await;
            assert_eq!(bad_fields(&body), ["input.id"], "{mutation}: {body:#}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn node_resolves_deployments_and_events_and_null_for_an_unknown_id() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let created = app
        .ok(
            CREATE,
            json!({ "input": create_input("payments", "production") }),
        )
        .await;
    let deployment_id = created["createDeployment"]["deployment"]["id"].clone();
    let event_id = created["createDeployment"]["event"]["id"].clone();

    let query = r#"
    query Node($id: ID!) {
      node(id: $id) {
        __typename id
        ... on Deployment { service }
        ... on DeploymentEvent { kind deploymentId }
      }
    }"#;
    let data = app.ok(query, json!({ "id": deployment_id })).await;
    assert_eq!(
        data["node"],
        json!({ "__typename": "Deployment", "id": deployment_id, "service": "payments" })
    );

    let data = app.ok(query, json!({ "id": event_id })).await;
    assert_eq!(
        data["node"],
        json!({
            "__typename": "DeploymentEvent",
            "id": event_id,
            "kind": "CREATED",
            "deploymentId": deployment_id,
        })
    );

    let data = app
        .ok(query, json!({ "id": Uuid::now_v7().to_string() }))
        .await;
    assert_eq!(data["node"], Value::Null);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deployments_filter_by_service_environment_and_status_newest_first() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    // (service, environment, steps), created in this order.
    let plan: [(&str, &str, &[Step]); 8] = [
        ("payments", "production", &[]),
        ("payments", "staging", &[APPROVE]),
        ("search", "production", &[APPROVE, START]),
        ("payments", "production", &[APPROVE, START, SUCCEED]),
        ("search", "staging", &[REJECT]),
        ("payments", "production", &[APPROVE, START, FAIL]),
        ("search", "production", &[]),
        ("payments", "production", &[APPROVE]),
    ];
    let mut all = Vec::new();
    for (service, environment, steps) in plan {
        let id = app.create(service, environment).await;
        for (mutation, actor, note) in steps {
            app.act(mutation, &id, actor, *note).await;
        }
        let status = fetch(&app, &id).await["status"]
            .as_str()
            .expect("a status")
            .to_owned();
        all.push((id, service, environment, status));
    }
    all.reverse(); // newest first

    let cases = [
        json!({}),
        json!({ "service": "payments" }),
        json!({ "environment": "production" }),
        json!({ "service": "payments", "environment": "production" }),
        json!({ "status": ["APPROVED"] }),
        json!({ "status": ["APPROVED", "PENDING_APPROVAL"] }),
        json!({ "service": "payments", "status": ["APPROVED", "FAILED", "REJECTED"] }),
        json!({ "service": "search", "environment": "production", "status": ["STARTED"] }),
        json!({ "service": "nobody" }),
    ];
    for filter in cases {
        let expected: Vec<String> = all
            .iter()
            .filter(|(_, service, environment, status)| {
                filter["service"].as_str().is_none_or(|s| s == *service)
                    && filter["environment"]
                        .as_str()
                        .is_none_or(|e| e == *environment)
                    && filter["status"]
                        .as_array()
                        .is_none_or(|list| list.iter().any(|s| s == status.as_str()))
            })
            .map(|(id, ..)| id.clone())
            .collect();
        let data = app
            .ok(PAGE, json!({ "filter": filter, "first": 100 }))
            .await;
        let page = &data["deployments"];
        assert_eq!(edge_node_ids(page), expected, "filter {filter}");
        assert_eq!(page["totalCount"], expected.len(), "filter {filter}");
        for node in page["nodes"].as_array().expect("nodes") {
            if let Some(s) = filter["service"].as_str() {
                assert_eq!(node["service"], s);
            }
            if let Some(e) = filter["environment"].as_str() {
                assert_eq!(node["environment"], e);
            }
        }

        // A small page still counts the whole filtered set.
        let data = app.ok(PAGE, json!({ "filter": filter, "first": 1 })).await;
        assert_eq!(
            data["deployments"]["totalCount"],
            expected.len(),
            "filter {filter}, first 1"
        );
        assert_eq!(
            data["deployments"]["pageInfo"]["hasNextPage"],
            expected.len() > 1,
            "filter {filter}, first 1"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_empty_status_filter_matches_nothing() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("payments", "production").await;
    app.create("search", "staging").await;

    let data = app.ok(PAGE, json!({ "filter": { "status": [] } })).await;
    assert_eq!(data["deployments"]["edges"], json!([]));
    assert_eq!(data["deployments"]["nodes"], json!([]));
    assert_eq!(data["deployments"]["totalCount"], 0);
    assert_eq!(data["deployments"]["pageInfo"]["hasNextPage"], false);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_page_size_defaults_to_20_and_must_be_between_0_and_100() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let created = create_many(&app, "payments", 21).await;

    let data = app.ok(PAGE, json!({})).await;
    let page = &data["deployments"];
    assert_eq!(page["edges"].as_array().expect("edges").len(), 20);
    assert_eq!(page["totalCount"], 21);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], false);
    let newest_twenty: Vec<String> = created.iter().rev().take(20).cloned().collect();
    assert_eq!(edge_node_ids(page), newest_twenty);

    let data = app.ok(PAGE, json!({ "first": 0 })).await;
    assert_eq!(data["deployments"]["edges"], json!([]));
    assert_eq!(data["deployments"]["nodes"], json!([]));
    assert_eq!(data["deployments"]["totalCount"], 21);

    let data = app.ok(PAGE, json!({ "first": 100 })).await;
    assert_eq!(
        data["deployments"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        21
    );
    assert_eq!(data["deployments"]["pageInfo"]["hasNextPage"], false);

    for first in [101, -1, 1000] {
        let body = app.graphql(PAGE, json!({ "first": first })).await;
        assert_eq!(bad_fields(&body), ["first"], "first {first}: {body:#}");
        let body = app.graphql(FEED, json!({ "first": first })).await;
        assert_eq!(bad_fields(&body), ["first"], "feed first {first}: {body:#}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_after_cursor_is_bad_user_input() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("payments", "production").await;
    let data = app.ok(FEED, json!({})).await;
    let event_cursor = data["deploymentEvents"]["edges"][0]["cursor"].clone();
    let data = app.ok(PAGE, json!({})).await;
    let deployment_cursor = data["deployments"]["edges"][0]["cursor"].clone();

    for bad in [json!("garbage!"), json!(""), json!("bm9wZQ"), event_cursor] {
        let body = app.graphql(PAGE, json!({ "after": bad })).await;
        assert_eq!(bad_fields(&body), ["after"], "after {bad}: {body:#}");
    }
    for bad in [json!("garbage!"), json!(""), deployment_cursor] {
        let body = app.graphql(FEED, json!({ "after": bad })).await;
        assert_eq!(bad_fields(&body), ["after"], "feed after {bad}: {body:#}");
    }
    app.stop().await;
}

#[tokio::test]
async fn walking_every_page_visits_each_deployment_once_newest_first() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut created = create_many(&app, "payments", 10).await;
    created.reverse();

    let seen = walk(&app, 3, || async {}).await;
    assert_eq!(seen, created);

    // Exact multiples end cleanly too.
    let seen = walk(&app, 5, || async {}).await;
    assert_eq!(seen, created);
    let seen = walk(&app, 10, || async {}).await;
    assert_eq!(seen, created);
    app.stop().await;
}

#[tokio::test]
async fn deployments_created_during_a_walk_neither_shift_it_nor_join_it() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut older = create_many(&app, "payments", 8).await;
    older.reverse();

    let newer = std::sync::Mutex::new(Vec::new());
    let seen = walk(&app, 3, || async {
        let id = app.create("payments", "staging").await;
        newer.lock().expect("lock").push(id);
    })
    .await;
    assert_eq!(seen, older, "the walk saw exactly the older deployments");
    let mut newer = newer.into_inner().expect("lock");
    assert_eq!(newer.len(), 3, "one creation after each page");

    // A new walk sees everything, newest first.
    newer.reverse();
    let everything: Vec<String> = newer.into_iter().chain(older).collect();
    let seen = walk(&app, 3, || async {}).await;
    assert_eq!(seen, everything);
    app.stop().await;
}

#[tokio::test]
async fn page_info_cursors_match_the_edges_and_nodes_match_the_edge_nodes() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    create_many(&app, "payments", 5).await;

    let data = app.ok(PAGE, json!({ "first": 2 })).await;
    let first_page = &data["deployments"];
    let edges = first_page["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    assert_eq!(first_page["pageInfo"]["startCursor"], edges[0]["cursor"]);
    assert_eq!(first_page["pageInfo"]["endCursor"], edges[1]["cursor"]);
    assert_eq!(first_page["pageInfo"]["hasNextPage"], true);
    assert_eq!(first_page["pageInfo"]["hasPreviousPage"], false);
    let edge_nodes: Vec<Value> = edges.iter().map(|e| e["node"].clone()).collect();
    assert_eq!(first_page["nodes"], json!(edge_nodes));
    let cursors: Vec<&str> = edges
        .iter()
        .map(|e| e["cursor"].as_str().expect("a cursor"))
        .collect();
    assert_ne!(cursors[0], cursors[1], "cursors differ");

    let data = app
        .ok(
            PAGE,
            json!({ "first": 2, "after": first_page["pageInfo"]["endCursor"] }),
        )
        .await;
    let second_page = &data["deployments"];
    let edges = second_page["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    assert_eq!(second_page["pageInfo"]["startCursor"], edges[0]["cursor"]);
    assert_eq!(second_page["pageInfo"]["endCursor"], edges[1]["cursor"]);
    assert_eq!(second_page["pageInfo"]["hasPreviousPage"], true);
    let edge_nodes: Vec<Value> = edges.iter().map(|e| e["node"].clone()).collect();
    assert_eq!(second_page["nodes"], json!(edge_nodes));

    // Past the end: no edges, no cursors.
    let data = app
        .ok(PAGE, json!({ "first": 100, "after": edges[1]["cursor"] }))
        .await;
    let last = &data["deployments"];
    assert_eq!(last["edges"].as_array().expect("edges").len(), 1);
    let data = app
        .ok(PAGE, json!({ "after": last["pageInfo"]["endCursor"] }))
        .await;
    let empty = &data["deployments"];
    assert_eq!(empty["edges"], json!([]));
    assert_eq!(empty["pageInfo"]["startCursor"], Value::Null);
    assert_eq!(empty["pageInfo"]["endCursor"], Value::Null);
    assert_eq!(empty["pageInfo"]["hasNextPage"], false);
    app.stop().await;
}

#[tokio::test]
async fn the_event_feed_pages_through_every_event_oldest_first() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut expected = Vec::new();
    for service in ["payments", "search", "billing"] {
        let id = app.create(service, "production").await;
        expected.push((id.clone(), "CREATED"));
        app.act("approveDeployment", &id, "bob", None).await;
        expected.push((id.clone(), "APPROVED"));
        app.act("startDeployment", &id, "carol", None).await;
        expected.push((id, "STARTED"));
    }

    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.ok(FEED, json!({ "first": 4, "after": after })).await;
        let page = &data["deploymentEvents"];
        let edges = page["edges"].as_array().expect("edges");
        assert!(edges.len() <= 4);
        if let (Some(first), Some(last)) = (edges.first(), edges.last()) {
            assert_eq!(page["pageInfo"]["startCursor"], first["cursor"]);
            assert_eq!(page["pageInfo"]["endCursor"], last["cursor"]);
        }
        assert_eq!(ids(&page["nodes"]), edge_node_ids(page));
        for edge in edges {
            assert_eq!(edge["cursor"], edge["node"]["cursor"]);
            cursors.push(edge["cursor"].clone());
            seen.push((
                edge["node"]["deploymentId"]
                    .as_str()
                    .expect("an id")
                    .to_owned(),
                edge["node"]["kind"].as_str().expect("a kind").to_owned(),
            ));
        }
        if page["pageInfo"]["hasNextPage"] == json!(false) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
        assert!(seen.len() <= expected.len(), "the walk ends");
    }
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(id, kind)| (id, kind.to_owned()))
        .collect();
    assert_eq!(seen, expected, "every event once, oldest first");
    let distinct: std::collections::BTreeSet<String> =
        cursors.iter().map(|c| c.to_string()).collect();
    assert_eq!(distinct.len(), cursors.len(), "cursors are distinct");

    // Resuming after any cursor gives exactly the events after it.
    let data = app
        .ok(FEED, json!({ "first": 100, "after": cursors[4] }))
        .await;
    assert_eq!(
        data["deploymentEvents"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        expected.len() - 5
    );
    assert_eq!(data["deploymentEvents"]["edges"][0]["cursor"], cursors[5]);

    // Feed filters combine.
    let data = app
        .ok(
            FEED,
            json!({ "filter": { "service": "search", "kind": ["APPROVED", "STARTED"] }, "first": 100 }),
        )
        .await;
    let kinds: Vec<&str> = data["deploymentEvents"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["kind"].as_str().expect("a kind"))
        .collect();
    assert_eq!(kinds, ["APPROVED", "STARTED"]);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_document_that_does_not_parse_is_graphql_parse_failed() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    for document in [
        "query {",
        "{ deployments { ",
        "mutation { createDeployment(input: ) }",
    ] {
        let body = app.graphql(document, json!({})).await;
        let (code, _) = single_error(&body);
        assert_eq!(code, "GRAPHQL_PARSE_FAILED", "{document:?}: {body:#}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_field_is_graphql_validation_failed() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let body = app
        .graphql("{ deployments { nodes { id colour } } }", json!({}))
        .await;
    let (code, _) = single_error(&body);
    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body:#}");

    let body = app.graphql("{ nope }", json!({})).await;
    let (code, _) = single_error(&body);
    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_http_400_with_an_error_code() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    for raw in ["this is not json", "{\"query\": ", ""] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("send the request");
        assert_eq!(response.status(), 400, "{raw:?}");
        let body: Value = response.json().await.expect("a JSON body");
        let code = body["errors"][0]["extensions"]["code"].as_str();
        assert!(code.is_some_and(|c| !c.is_empty()), "{raw:?}: {body:#}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_query_nested_past_the_depth_limit_is_graphql_validation_failed() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("payments", "production").await;

    let deep = "{ deployments { nodes { events { deployment { events { deployment { events \
                { deployment { events { deployment { events { deployment { id } } } } } } } } \
                } } } } }";
    let body = app.graphql(deep, json!({})).await;
    let (code, _) = single_error(&body);
    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body:#}");

    // A useful nesting is fine.
    let data = app
        .ok(
            "{ deployments { nodes { events { deployment { id events { kind } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["deployments"]["nodes"][0]["events"][0]["deployment"]["id"],
        id.as_str()
    );
    app.stop().await;
}

#[tokio::test]
async fn error_messages_never_leak_sql_or_file_paths() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = moved(&app, &[REJECT]).await;
    let mut bodies = Vec::new();

    let mut input = create_input(" ", "production");
    input["risk"] = Value::Null;
    input["workRefs"] = json!([]);
    bodies.push(app.graphql(CREATE, json!({ "input": input })).await);
    bodies.push(try_act(&app, "startDeployment", &id, "bob", None).await);
    bodies.push(
        try_act(
            &app,
            "startDeployment",
            &Uuid::now_v7().to_string(),
            "bob",
            None,
        )
        .await,
    );
    bodies.push(try_act(&app, "startDeployment", "x'; DROP TABLE x; --", "bob", None).await);
    bodies.push(
        app.graphql(DEPLOYMENT, json!({ "id": Uuid::now_v7().to_string() }))
            .await,
    );
    bodies.push(app.graphql(PAGE, json!({ "after": "' OR 1=1 --" })).await);
    bodies.push(app.graphql("query {", json!({})).await);
    bodies.push(app.graphql("{ nope }", json!({})).await);
    let fresh = moved(&app, &[]).await;
    bodies.push(try_act(&app, "approveDeployment", &fresh, "alice", None).await);
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .expect("send the request");
    bodies.push(response.json().await.expect("a JSON body"));

    let db_path = db.url();
    let db_dir = db.dir.path().to_string_lossy().into_owned();
    for body in &bodies {
        let errors = body["errors"].as_array().expect("errors");
        assert!(!errors.is_empty(), "{body:#}");
        for error in errors {
            assert!(
                error["extensions"]["code"].as_str().is_some(),
                "every error has a code: {body:#}"
            );
            let message = error["message"].as_str().expect("a message");
            let lower = message.to_lowercase();
            assert!(!message.is_empty());
            assert!(!message.contains("SELECT"), "{message}");
            assert!(!lower.contains("sqlite"), "{message}");
            assert!(!lower.contains("postgres"), "{message}");
            assert!(!lower.contains("sqlx"), "{message}");
            assert!(
                !lower.contains("sea_orm") && !lower.contains("sea-orm"),
                "{message}"
            );
            assert!(!message.contains(&db_path), "{message}");
            assert!(!message.contains(&db_dir), "{message}");
            assert!(!message.contains(".rs:"), "{message}");
            assert!(!message.contains("src/"), "{message}");
            assert!(!message.contains("/tmp"), "{message}");
            assert!(!message.contains("shiplog.db"), "{message}");
        }
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Durability and transport
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_restart_over_the_same_database_keeps_everything() {
    let db = TestDb::new();
    let everything = r#"
    {
      deployments(first: 100) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges {
          cursor
          node {
            id service environment version requester workRefs risk rollbackPlan status
            reviewedBy reviewedAt createdAt updatedAt
            events { id cursor deploymentId kind actor note fromStatus toStatus occurredAt }
          }
        }
      }
      deploymentEvents(first: 100) { edges { cursor node { id kind } } }
    }"#;

    let app = TestApp::start(&db, &["production"]).await;
    moved(&app, &[]).await;
    moved(&app, &[APPROVE]).await;
    moved(&app, &[REJECT]).await;
    moved(&app, &[APPROVE, START, SUCCEED]).await;
    moved(&app, &[APPROVE, START, FAIL, ROLL_BACK]).await;
    // Last: while it is STARTED, no other deployment of its place can start.
    let unfinished = moved(&app, &[APPROVE, START]).await;
    let before = app.ok(everything, json!({})).await;
    app.stop().await;

    let app = TestApp::start(&db, &["production"]).await;
    let after = app.ok(everything, json!({})).await;
    assert_eq!(after, before, "identical answers across the restart");
    assert_eq!(after["deployments"]["totalCount"], 6);

    // And the lifecycle continues where it stopped.
    let payload = app
        .act("succeedDeployment", &unfinished, "carol", None)
        .await;
    assert_eq!(payload["event"]["fromStatus"], "STARTED");
    let events = fetch(&app, &unfinished).await["events"].clone();
    assert_eq!(events.as_array().expect("events").len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn healthz_answers_200() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("send the request");
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_browser_getting_graphql_receives_graphiql_wired_to_the_websocket_endpoint() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("send the request");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("a body");
    assert!(
        page.to_lowercase().contains("graphiql"),
        "mentions GraphiQL"
    );
    assert!(page.contains("/graphql/ws"), "wired to /graphql/ws");
    app.stop().await;
}

/// `nodes` and `events` answer their fields one after another (graphql/inline.rs) while
/// `edges { node }` goes through async-graphql's own resolution: the same selection,
/// with aliases, a field selected twice, named and inline fragments on the type and on an
/// interface it implements, and `__typename`, answers the same.
#[tokio::test]
async fn nodes_answer_every_selection_exactly_as_edges_do() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let first = app.create("inline", "staging").await;
    app.act(
        "approveDeployment",
        &first,
        "reviewer@example.com",
        Some("fine"),
    )
    .await;
    app.create("inline", "qa").await;

    let selection = r#"
        __typename
        key: id
        service
        ...Facts
        ... on Node { nodeId: id }
        ... { status }
        events { id kind }
        events { kind actor __typename ... on Node { id } }
        approvals { actor }
        theSame: events { note }
    "#;
    let body = app
        .ok(
            &format!(
                "fragment Facts on Deployment {{ environment requiredApprovals reviewedBy }}
                 {{ deployments(first: 10) {{
                      nodes {{ {selection} }}
                      edges {{ node {{ {selection} }} }}
                 }} }}"
            ),
            json!({}),
        )
        .await;
    let page = &body["deployments"];
    let nodes = page["nodes"].as_array().expect("nodes");
    let edges: Vec<&Value> = page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes.iter().collect::<Vec<_>>(), edges);

    let approved = &nodes[1];
    assert_eq!(approved["__typename"], "Deployment");
    assert_eq!(approved["key"], json!(first));
    assert_eq!(approved["nodeId"], json!(first));
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["environment"], "staging");
    let events = approved["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["kind"], "APPROVED");
    assert_eq!(events[1]["actor"], "reviewer@example.com");
    assert_eq!(events[1]["__typename"], "DeploymentEvent");
    assert!(events[1]["id"].is_string());
    assert_eq!(
        approved["approvals"],
        json!([{ "actor": "reviewer@example.com" }])
    );
    assert_eq!(approved["theSame"][1]["note"], "fine");
}

/// A document sent again is answered from its first parse: the same text with other
/// variables and another operation answers for those, and a text that failed to parse
/// or broke a limit fails the same way every time.
#[tokio::test]
async fn a_document_sent_again_answers_for_its_own_variables_and_failures_repeat() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let a = app.create("cached-a", "staging").await;
    let b = app.create("cached-b", "staging").await;
    let document = r#"
        query ById($id: ID!) { deployment(id: $id) { id service } }
        query Services { deployments(first: 5) { nodes { service } } }"#;
    for (id, service) in [(&a, "cached-a"), (&b, "cached-b"), (&a, "cached-a")] {
        let body = app.graphql(document, json!({ "id": id })).await;
        // Two operations and no name: the request names none, so it fails alike.
        assert_eq!(single_error(&body).0, "GRAPHQL_VALIDATION_FAILED", "{body}");
        let response = named(&app, document, "ById", json!({ "id": id })).await;
        assert_eq!(
            response["data"]["deployment"],
            json!({ "id": id, "service": service })
        );
    }
    let services = named(&app, document, "Services", json!({})).await;
    assert_eq!(
        services["data"]["deployments"]["nodes"],
        json!([{ "service": "cached-b" }, { "service": "cached-a" }])
    );

    for _ in 0..2 {
        let body = app.graphql("{ deployments { nodes { id }", json!({})).await;
        assert_eq!(single_error(&body).0, "GRAPHQL_PARSE_FAILED");
        let deep = format!(
            "{{ deployments {{ nodes {} }} }}",
            "{ promotedFrom ".repeat(30) + "id" + &" }".repeat(30)
        );
        let body = app.graphql(&deep, json!({})).await;
        assert_eq!(single_error(&body).0, "GRAPHQL_VALIDATION_FAILED", "{body}");
    }
    app.stop().await;
}

/// The response to `operation` of `document`, posted with its name.
async fn named(app: &TestApp, document: &str, operation: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(app.url("/graphql"))
        .json(&json!({ "query": document, "operationName": operation, "variables": variables }))
        .send()
        .await
        .expect("sent")
        .json::<Value>()
        .await
        .expect("JSON")
}
