//! Promotion: `promoteDeployment` and `Deployment.promotedFrom`, over HTTP against a server
//! on port 0 (the store decides inside one write transaction; these tests see what a
//! client sees), plus the store's answer to racing retries.

use serde_json::{json, Value};
use shiplog::domain::{Promotion, PromotionRequest};
use uuid::Uuid;

use crate::helpers::{create_input, single_error, TestApp, TestDb, CREATE};

const PROMOTE: &str = r#"
mutation Promote($input: PromoteDeploymentInput!) {
  promoteDeployment(input: $input) {
    deployment { id service environment version requester workRefs risk rollbackPlan
                 releaseNotes status requiredApprovals
                 promotedFrom { id environment version status } }
    event { id kind actor fromStatus toStatus }
  }
}"#;

const ENVIRONMENT: &str =
    "query Env($name: String!) { environment(name: $name) { name tier position } }";

/// Creates a deployment of `billing` v1.0.0 in `environment` (with a risk and release
/// notes, which a promotion never copies) and takes it to SUCCEEDED. Returns its id.
async fn succeeded(app: &TestApp, environment: &str) -> String {
    let mut input = create_input("billing", environment);
    input["workRefs"] = json!(["JIRA-1", "JIRA-2"]);
    input["releaseNotes"] = json!("the source's notes");
    let data = app.ok(CREATE, json!({ "input": input })).await;
    let id = data["createDeployment"]["deployment"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    app.act("approveDeployment", &id, "bob", None).await;
    app.act("startDeployment", &id, "deploybot", None).await;
    app.act("succeedDeployment", &id, "deploybot", None).await;
    id
}

async fn promote(app: &TestApp, input: Value) -> Value {
    app.ok(PROMOTE, json!({ "input": input })).await["promoteDeployment"].clone()
}

/// The one error of a refused promotion: its code and its `extensions`.
async fn refused(app: &TestApp, input: Value) -> (String, Value) {
    let body = app.graphql(PROMOTE, json!({ "input": input })).await;
    assert!(body["data"].is_null(), "nothing answered: {body:#}");
    let (code, error) = single_error(&body);
    (code.to_owned(), error["extensions"].clone())
}

fn fields(extensions: &Value) -> Vec<&str> {
    extensions["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("a field path"))
        .collect()
}

async fn environment(app: &TestApp, name: &str) -> Value {
    app.ok(ENVIRONMENT, json!({ "name": name })).await["environment"].clone()
}

#[tokio::test]
async fn a_promotion_goes_from_testing_to_staging_by_default() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await; // staging is known
    let source = succeeded(&app, "testing").await;

    let payload = promote(&app, json!({ "id": source, "requester": " carol " })).await;
    let d = &payload["deployment"];
    assert_eq!(d["environment"], "staging");
    assert_eq!(d["service"], "billing");
    assert_eq!(d["version"], "v1.0.0");
    assert_eq!(d["requester"], "carol");
    assert_eq!(d["status"], "PENDING_APPROVAL");
    assert_eq!(d["promotedFrom"]["id"], source.as_str());
    assert_eq!(d["promotedFrom"]["environment"], "testing");
    assert_eq!(d["promotedFrom"]["status"], "SUCCEEDED");
    let e = &payload["event"];
    assert_eq!(e["kind"], "CREATED");
    assert_eq!(e["actor"], "carol");
    assert_eq!(e["fromStatus"], Value::Null);
    assert_eq!(e["toStatus"], "PENDING_APPROVAL");

    // The source is untouched, and the new deployment is an ordinary one: it goes on
    // through the lifecycle.
    let id = d["id"].as_str().expect("an id");
    assert_ne!(id, source);
    let approved = app.act("approveDeployment", id, "bob", None).await;
    assert_eq!(approved["deployment"]["status"], "APPROVED");
    app.stop().await;
}

#[tokio::test]
async fn with_nothing_known_between_testing_and_production_the_default_is_production() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    // Nothing is known between testing and production.
    let source = succeeded(&app, "testing").await;
    app.create("billing", "production").await;
    let body = app
        .graphql(
            PROMOTE,
            json!({ "input": { "id": source, "requester": "carol" } }),
        )
        .await;
    // The next is production, which needs a risk of its own.
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(fields(&error["extensions"]), ["input.risk"]);

    let payload = promote(
        &app,
        json!({ "id": source, "requester": "carol", "risk": "canary first" }),
    )
    .await;
    assert_eq!(payload["deployment"]["environment"], "production");
    app.stop().await;
}

#[tokio::test]
async fn a_promotion_goes_to_a_named_later_environment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "testing").await;
    let payload = promote(
        &app,
        json!({ "id": source, "requester": "carol", "environment": " production ",
                "risk": "skips staging; canary first" }),
    )
    .await;
    assert_eq!(payload["deployment"]["environment"], "production");
    assert_eq!(payload["deployment"]["risk"], "skips staging; canary first");
    app.stop().await;
}

#[tokio::test]
async fn a_promotion_to_an_unknown_later_environment_registers_it_by_the_naming_rule() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let source = succeeded(&app, "testing").await;
    assert_eq!(environment(&app, "customer-demo").await, Value::Null);

    let payload = promote(
        &app,
        json!({ "id": source, "requester": "carol", "environment": "customer-demo" }),
    )
    .await;
    assert_eq!(payload["deployment"]["environment"], "customer-demo");
    assert_eq!(
        environment(&app, "customer-demo").await,
        json!({ "name": "customer-demo", "tier": "STAGING", "position": 30 })
    );
    app.stop().await;
}

#[tokio::test]
async fn a_promotion_to_an_earlier_environment_or_the_same_one_is_refused_and_registers_nothing() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "testing").await;
    let source = succeeded(&app, "staging").await;

    for target in ["testing", "staging", "dev-sandbox"] {
        let (code, extensions) = refused(
            &app,
            json!({ "id": source, "requester": "carol", "environment": target }),
        )
        .await;
        assert_eq!(code, "BAD_USER_INPUT", "{target}");
        assert_eq!(fields(&extensions), ["input.environment"], "{target}");
    }
    // dev-sandbox would come before staging: the refusal left nothing registered.
    assert_eq!(environment(&app, "dev-sandbox").await, Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_promotion_from_the_last_environment_is_refused() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "production").await;
    let (code, extensions) = refused(&app, json!({ "id": source, "requester": "carol" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(fields(&extensions), ["input.environment"]);
    app.stop().await;
}

#[tokio::test]
async fn a_promotion_of_a_deployment_that_has_not_succeeded_is_a_conflict() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;

    let pending = app.create("billing", "testing").await;
    let rolled_back = succeeded(&app, "testing").await;
    app.act(
        "rollBackDeployment",
        &rolled_back,
        "carol",
        Some("p99 doubled"),
    )
    .await;
    for (source, status) in [(pending, "PENDING_APPROVAL"), (rolled_back, "ROLLED_BACK")] {
        let (code, extensions) = refused(&app, json!({ "id": source, "requester": "carol" })).await;
        assert_eq!(code, "CONFLICT", "{status}");
        assert_eq!(extensions["action"], "PROMOTE", "{status}");
        assert_eq!(extensions["status"], status);
    }

    let unknown = Uuid::now_v7().to_string();
    let (code, extensions) = refused(&app, json!({ "id": unknown, "requester": "carol" })).await;
    assert_eq!(code, "NOT_FOUND");
    assert_eq!(extensions["id"], unknown.as_str());
    app.stop().await;
}

#[tokio::test]
async fn work_refs_and_rollback_plan_default_to_the_sources_and_risk_and_release_notes_are_never_copied(
) {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "testing").await;

    // Left out and explicit nulls alike take the source's.
    for input in [
        json!({ "id": source, "requester": "carol" }),
        json!({ "id": source, "requester": "carol", "workRefs": null, "rollbackPlan": null,
                "risk": null, "releaseNotes": null, "environment": null }),
    ] {
        let d = promote(&app, input).await["deployment"].clone();
        assert_eq!(d["workRefs"], json!(["JIRA-1", "JIRA-2"]));
        assert_eq!(d["rollbackPlan"], "redeploy the previous version");
        assert_eq!(d["risk"], Value::Null);
        assert_eq!(d["releaseNotes"], Value::Null);
    }

    let d = promote(
        &app,
        json!({ "id": source, "requester": "carol", "workRefs": [" PAY-7 "],
                "rollbackPlan": " flip the flag ", "risk": " low ", "releaseNotes": " notes " }),
    )
    .await["deployment"]
        .clone();
    assert_eq!(d["workRefs"], json!(["PAY-7"]));
    assert_eq!(d["rollbackPlan"], "flip the flag");
    assert_eq!(d["risk"], "low");
    assert_eq!(d["releaseNotes"], "notes");
    app.stop().await;
}

#[tokio::test]
async fn creation_rules_apply_to_a_promotion_with_every_problem_at_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "testing").await;

    let (code, extensions) = refused(
        &app,
        json!({ "id": source, "requester": " ", "workRefs": [], "rollbackPlan": "  " }),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(
        fields(&extensions),
        ["input.requester", "input.workRefs", "input.rollbackPlan"]
    );

    let (code, extensions) = refused(
        &app,
        json!({ "id": "not-an-id", "requester": "carol", "workRefs": ["ok", ""] }),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(fields(&extensions), ["input.id", "input.workRefs[1]"]);

    // A named production target: the risk is checked with the rest.
    let (code, extensions) = refused(
        &app,
        json!({ "id": source, "requester": "carol", "environment": "production",
                "rollbackPlan": "" }),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(fields(&extensions), ["input.risk", "input.rollbackPlan"]);
    app.stop().await;
}

#[tokio::test]
async fn a_promotion_with_an_idempotency_key_is_created_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "testing").await;

    let input = json!({ "id": source, "requester": "carol", "idempotencyKey": "promo-1" });
    let first = promote(&app, input.clone()).await;
    // The same input again, and with the defaults it got spelt out: the original.
    for retry in [
        input.clone(),
        json!({ "id": source, "requester": " carol ", "idempotencyKey": "promo-1",
                "environment": "staging", "workRefs": ["JIRA-1", "JIRA-2"] }),
    ] {
        let again = promote(&app, retry).await;
        assert_eq!(again["deployment"]["id"], first["deployment"]["id"]);
        assert_eq!(again["event"]["id"], first["event"]["id"]);
    }
    // Still the original once the source is no longer SUCCEEDED.
    app.act("rollBackDeployment", &source, "carol", Some("bad"))
        .await;
    let again = promote(&app, input).await;
    assert_eq!(again["deployment"]["id"], first["deployment"]["id"]);

    // The same key with other input, or a key a createDeployment used: CONFLICT.
    let mut create = create_input("billing", "testing");
    create["idempotencyKey"] = json!("create-1");
    app.ok(CREATE, json!({ "input": create })).await;
    for (input, what) in [
        (
            json!({ "id": source, "requester": "dave", "idempotencyKey": "promo-1" }),
            "another requester",
        ),
        (
            json!({ "id": source, "requester": "carol", "idempotencyKey": "promo-1",
                    "releaseNotes": "more" }),
            "release notes",
        ),
        (
            json!({ "id": source, "requester": "alice", "idempotencyKey": "create-1" }),
            "a creation's key",
        ),
    ] {
        let (code, extensions) = refused(&app, input).await;
        assert_eq!(code, "CONFLICT", "{what}");
        assert_eq!(extensions["action"], "PROMOTE", "{what}");
    }

    let listed = app
        .ok(
            "{ deployments(filter: { environment: \"staging\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["deployments"]["totalCount"], 2,
        "the promotion and the first staging deployment"
    );
    app.stop().await;
}

#[tokio::test]
async fn promoted_from_resolves_and_a_page_loads_every_source_at_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "testing").await;
    let promoted = promote(&app, json!({ "id": source, "requester": "carol" })).await["deployment"]
        ["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    let data = app
        .ok(
            "query($a: ID!, $b: ID!) { a: deployment(id: $a) { promotedFrom { id version } } \
             b: deployment(id: $b) { promotedFrom { id } } }",
            json!({ "a": promoted, "b": source }),
        )
        .await;
    assert_eq!(data["a"]["promotedFrom"]["id"], source.as_str());
    assert_eq!(data["a"]["promotedFrom"]["version"], "v1.0.0");
    assert_eq!(data["b"]["promotedFrom"], Value::Null);

    // A page of promoted deployments costs the same statements whatever its size.
    const PAGE: &str = "{ deployments(filter: { environment: \"staging\" }, first: 100) \
                        { nodes { id promotedFrom { id environment } } } }";
    let mut costs = Vec::new();
    for more in [2, 8] {
        for _ in 0..more {
            promote(&app, json!({ "id": source, "requester": "carol" })).await;
        }
        let before = app.store.read_statements();
        let data = app.ok(PAGE, json!({})).await;
        costs.push(app.store.read_statements() - before);
        let nodes = data["deployments"]["nodes"].as_array().expect("nodes");
        assert!(nodes
            .iter()
            .filter(|n| !n["promotedFrom"].is_null())
            .all(|n| n["promotedFrom"]["id"] == source.as_str()));
    }
    assert_eq!(costs[0], costs[1], "statements for 3 and for 11 promotions");
    app.stop().await;
}

#[tokio::test]
async fn racing_retries_of_one_promotion_create_one_deployment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;
    let source = succeeded(&app, "testing").await;
    let request = PromotionRequest {
        source: source.parse().expect("a uuid"),
        environment: None,
        requester: "carol".into(),
        work_refs: None,
        risk: None,
        rollback_plan: None,
        release_notes: None,
        idempotency_key: Some("race".into()),
    };
    let promotion = Promotion::validate(&request, None).expect("valid");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let store = app.store.clone();
            let promotion = promotion.clone();
            tokio::spawn(async move { store.promote(promotion).await })
        })
        .collect();
    let mut ids = Vec::new();
    for attempt in attempts {
        let written = attempt.await.expect("joined").expect("promoted");
        assert_eq!(written.deployment.promoted_from, Some(request.source));
        ids.push(written.deployment.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one deployment for every retry");
    app.stop().await;
}

/// As a release manager I promote the version live in staging to production with one
/// call; it needs its own risk note and two approvals from two people, neither of them me.
#[tokio::test]
async fn story_a_release_manager_promotes_staging_to_production_with_two_approvals() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.ok(
        "mutation { configureEnvironment(input: { name: \"production\", actor: \"carol\", \
         requiredApprovals: 2 }) { requiredApprovals } }",
        json!({}),
    )
    .await;
    let staging = succeeded(&app, "staging").await;

    // Without a risk of its own (the staging deployment's is not copied): refused.
    let (code, extensions) = refused(&app, json!({ "id": staging, "requester": "rm" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(fields(&extensions), ["input.risk"]);

    let d = promote(
        &app,
        json!({ "id": staging, "requester": "rm", "risk": "new card processor; canary first" }),
    )
    .await["deployment"]
        .clone();
    assert_eq!(d["environment"], "production");
    assert_eq!(d["requiredApprovals"], 2);
    assert_eq!(d["status"], "PENDING_APPROVAL");
    let id = d["id"].as_str().expect("an id");

    let approve = crate::helpers::action("approveDeployment");
    let body = app
        .graphql(&approve, json!({ "input": { "id": id, "actor": " RM " } }))
        .await;
    let (code, error) = single_error(&body);
    assert_eq!(
        (code, &error["extensions"]["reason"]),
        ("FORBIDDEN", &json!("SELF_APPROVAL"))
    );

    let first = app.act("approveDeployment", id, "bob", None).await;
    assert_eq!(first["deployment"]["status"], "PENDING_APPROVAL");
    let body = app
        .graphql(&approve, json!({ "input": { "id": id, "actor": "Bob" } }))
        .await;
    let (code, error) = single_error(&body);
    assert_eq!(
        (code, &error["extensions"]["reason"]),
        ("FORBIDDEN", &json!("ALREADY_APPROVED"))
    );

    let second = app.act("approveDeployment", id, "dana", None).await;
    assert_eq!(second["deployment"]["status"], "APPROVED");
    app.stop().await;
}
