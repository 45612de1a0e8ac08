//! Environments: registration on first use, the release-train order, configuration, the
//! tier's say over the risk rule and the snapshot of requiredApprovals. Store tests
//! against real SQLite files, then API tests over HTTP.

use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use shiplog::domain::{
    DeploymentRequest, EnvironmentConfig, EnvironmentRequest, NewDeployment,
    ProductionEnvironments, Setting, Tier,
};
use shiplog::store::{Store, StoreError};

use crate::helpers::{create_input, single_error, TestApp, TestDb, CREATE};

fn request(environment: &str, risk: Option<&str>) -> DeploymentRequest {
    DeploymentRequest {
        service: "billing".into(),
        environment: environment.into(),
        version: "v1.0.0".into(),
        requester: "alice".into(),
        work_refs: vec!["JIRA-1".into()],
        risk: risk.map(str::to_owned),
        rollback_plan: "redeploy v0.9.0".into(),
        ..Default::default()
    }
}

/// A deployment to `environment` with its risk stated, validated for a new environment.
fn new_deployment(environment: &str) -> NewDeployment {
    NewDeployment::validate(
        &request(environment, Some("low")),
        &ProductionEnvironments::default(),
    )
    .expect("a valid request")
}

fn configuration(name: &str, tweak: impl FnOnce(&mut EnvironmentRequest)) -> EnvironmentConfig {
    let mut r = EnvironmentRequest {
        name: name.into(),
        actor: "carol".into(),
        ..Default::default()
    };
    tweak(&mut r);
    EnvironmentConfig::validate(&r).expect("a valid configuration")
}

async fn train(store: &Store) -> Vec<(String, i32, Tier)> {
    store
        .environments()
        .await
        .expect("environments")
        .into_iter()
        .map(|e| (e.name, e.position, e.tier))
        .collect()
}

fn owned(train: &[(&str, i32, Tier)]) -> Vec<(String, i32, Tier)> {
    train
        .iter()
        .map(|(name, position, tier)| (name.to_string(), *position, *tier))
        .collect()
}

// -------------------------------------------------------------------------- store

#[tokio::test]
async fn an_environment_is_registered_the_first_time_a_deployment_names_it() {
    let db = TestDb::new();
    let store = db.open().await;
    assert!(store.environments().await.expect("environments").is_empty());

    store
        .create(new_deployment("staging"))
        .await
        .expect("create");
    let registered = store
        .environment("staging")
        .await
        .expect("read")
        .expect("registered by use");
    assert_eq!(registered.name, "staging");
    assert_eq!((registered.position, registered.tier), (30, Tier::Staging));
    assert_eq!(registered.required_approvals, 1);
    assert_eq!(registered.start_timeout_seconds, None);
    assert_eq!(registered.updated_by, None);

    // A second deployment there registers nothing new.
    store
        .create(new_deployment(" staging "))
        .await
        .expect("create");
    let all = store.environments().await.expect("environments");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0], registered);
    assert_eq!(
        store.environment_by_id(registered.id).await.expect("read"),
        Some(registered)
    );
}

#[tokio::test]
async fn dev_testing_staging_and_production_form_a_train_with_no_configuration() {
    let db = TestDb::new();
    let store = db.open().await;
    for environment in ["sandbox", "production", "staging", "dev", "testing", "demo"] {
        store
            .create(new_deployment(environment))
            .await
            .expect("create");
    }
    assert_eq!(
        train(&store).await,
        owned(&[
            ("dev", 10, Tier::Development),
            ("testing", 20, Tier::Testing),
            ("demo", 30, Tier::Staging),
            ("staging", 30, Tier::Staging),
            ("production", 40, Tier::Production),
            ("sandbox", 50, Tier::Other),
        ])
    );
}

#[tokio::test]
async fn a_deployment_keeps_the_required_approvals_of_its_environment_at_its_creation() {
    let db = TestDb::new();
    let store = db.open().await;
    let before = store
        .create(new_deployment("production"))
        .await
        .expect("create")
        .deployment;
    assert_eq!(before.required_approvals, 1);

    store
        .configure_environment(configuration("production", |r| {
            r.required_approvals = Setting::Value(2)
        }))
        .await
        .expect("configure");
    let two = store
        .create(new_deployment("production"))
        .await
        .expect("create")
        .deployment;
    assert_eq!(two.required_approvals, 2);

    store
        .configure_environment(configuration("production", |r| {
            r.required_approvals = Setting::Value(3)
        }))
        .await
        .expect("configure");
    // Later configuration changes no existing deployment.
    for (id, expected) in [(before.id, 1), (two.id, 2)] {
        let stored = store.deployment(id).await.expect("read").expect("exists");
        assert_eq!(stored.required_approvals, expected);
    }
}

#[tokio::test]
async fn configuring_a_new_environment_registers_it_and_records_who_changed_it() {
    let db = TestDb::new();
    let store = db.open().await;
    let configured = store
        .configure_environment(configuration(" qa-eu ", |r| {
            r.tier = Setting::Value(Tier::Production);
            r.start_timeout_seconds = Setting::Value(900);
        }))
        .await
        .expect("configure");
    assert_eq!(configured.name, "qa-eu");
    // Registered by the naming rule (OTHER, 50); setting the tier does not move it.
    assert_eq!(
        (configured.tier, configured.position),
        (Tier::Production, 50)
    );
    assert_eq!(configured.start_timeout_seconds, Some(900));
    assert_eq!(configured.updated_by.as_deref(), Some("carol"));
    assert_eq!(
        store.environment("qa-eu").await.expect("read"),
        Some(configured)
    );
}

#[tokio::test]
async fn the_store_refuses_a_deployment_without_risk_to_a_production_tier_and_registers_nothing() {
    let db = TestDb::new();
    let store = db.open().await;
    // Validated as if the environment were not production (as a request that raced a
    // configuration would be); the store decides with the environment's tier.
    let new = NewDeployment::validate_in(&request("production", None), Tier::Staging)
        .expect("valid for a staging tier");
    match store.create(new).await {
        Err(StoreError::Invalid(errors)) => {
            let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["risk"]);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(store.environments().await.expect("read").is_empty());

    // Once configured as STAGING, the same request is accepted.
    store
        .configure_environment(configuration("production", |r| {
            r.tier = Setting::Value(Tier::Staging)
        }))
        .await
        .expect("configure");
    let new = NewDeployment::validate_in(&request("production", None), Tier::Staging)
        .expect("valid for a staging tier");
    let written = store.create(new).await.expect("accepted");
    assert_eq!(written.deployment.risk, None);
}

/// A database at the v1 schema holding deployments to these environments.
async fn v1_database(db: &TestDb, environments: &[&str]) {
    let conn = db.connect().await;
    Migrator::up(&conn, Some(1))
        .await
        .expect("the v1 migration");
    for (i, environment) in environments.iter().enumerate() {
        conn.execute_unprepared(&format!(
            r#"INSERT INTO deployments (id, service, environment, version, requester, work_refs,
                   risk, rollback_plan, status, created_at, updated_at)
               VALUES ('0193a1b2-0000-7000-8000-00000000000{i}', 'billing', '{environment}',
                   'v{i}', 'alice', '["JIRA-1"]', 'low', 'redeploy', 'PENDING_APPROVAL',
                   170000000{i}000, 170000000{i}000)"#
        ))
        .await
        .expect("a v1 deployment");
    }
    conn.close().await.expect("close");
}

#[tokio::test]
async fn opening_an_upgraded_database_registers_the_environments_of_its_deployments() {
    let db = TestDb::new();
    v1_database(&db, &["prod-eu", "staging", "qc", "staging", "canary"]).await;

    let store = db.open_with(&["prod-eu"]).await;
    let expected = owned(&[
        ("qc", 20, Tier::Testing),
        ("staging", 30, Tier::Staging),
        ("prod-eu", 40, Tier::Production),
        ("canary", 50, Tier::Other),
    ]);
    assert_eq!(train(&store).await, expected);
    let first = store.environments().await.expect("read");
    store.close().await.expect("close");

    // Opening again registers nothing twice and changes nothing.
    let store = db.open_with(&["prod-eu"]).await;
    assert_eq!(store.environments().await.expect("read"), first);
    store.close().await.expect("close");
}

// ---------------------------------------------------------------------------- API

const CONFIGURE: &str = r#"
mutation Configure($input: ConfigureEnvironmentInput!) {
  configureEnvironment(input: $input) {
    id name position tier requiresRisk requiredApprovals startTimeoutSeconds updatedBy updatedAt
  }
}"#;

const ENVIRONMENTS: &str = r#"
{ environments { name position tier requiresRisk requiredApprovals startTimeoutSeconds updatedBy } }"#;

async fn configure(app: &TestApp, input: Value) -> Value {
    app.ok(CONFIGURE, json!({ "input": input })).await["configureEnvironment"].clone()
}

fn bad_fields(body: &Value) -> Vec<String> {
    let (code, error) = single_error(body);
    assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
    error["extensions"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("a field path").to_owned())
        .collect()
}

#[tokio::test]
async fn environments_used_by_deployments_form_the_train_over_http() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    for environment in ["production", "staging", "dev", "testing"] {
        app.create("billing", environment).await;
    }
    let data = app.ok(ENVIRONMENTS, json!({})).await;
    assert_eq!(
        data["environments"],
        json!([
            { "name": "dev", "position": 10, "tier": "DEVELOPMENT", "requiresRisk": false,
              "requiredApprovals": 1, "startTimeoutSeconds": null, "updatedBy": null },
            { "name": "testing", "position": 20, "tier": "TESTING", "requiresRisk": false,
              "requiredApprovals": 1, "startTimeoutSeconds": null, "updatedBy": null },
            { "name": "staging", "position": 30, "tier": "STAGING", "requiresRisk": false,
              "requiredApprovals": 1, "startTimeoutSeconds": null, "updatedBy": null },
            { "name": "production", "position": 40, "tier": "PRODUCTION", "requiresRisk": true,
              "requiredApprovals": 1, "startTimeoutSeconds": null, "updatedBy": null },
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn configure_environment_leaves_absent_fields_alone_and_clears_the_timeout_on_null() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    let first = configure(
        &app,
        json!({ "name": "staging", "actor": "carol", "requiredApprovals": 2,
                "startTimeoutSeconds": 600 }),
    )
    .await;
    assert_eq!(first["name"], "staging");
    assert_eq!(first["position"], 30);
    assert_eq!(first["tier"], "STAGING");
    assert_eq!(first["requiredApprovals"], 2);
    assert_eq!(first["startTimeoutSeconds"], 600);
    assert_eq!(first["updatedBy"], "carol");
    assert!(first["updatedAt"].is_string());

    // Absent: left as they are. The tier does not move the position.
    let second = configure(
        &app,
        json!({ "name": "staging", "actor": "dave", "tier": "PRODUCTION" }),
    )
    .await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["tier"], "PRODUCTION");
    assert_eq!(second["requiresRisk"], true);
    assert_eq!(second["position"], 30);
    assert_eq!(second["requiredApprovals"], 2);
    assert_eq!(second["startTimeoutSeconds"], 600);
    assert_eq!(second["updatedBy"], "dave");

    // An explicit null clears the timeout, also written inline in the document.
    let inline = app
        .ok(
            r#"mutation { configureEnvironment(input: {
                 name: "staging", actor: "erin", startTimeoutSeconds: null, position: -5
               }) { position startTimeoutSeconds requiredApprovals updatedBy } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        inline["configureEnvironment"],
        json!({ "position": -5, "startTimeoutSeconds": null, "requiredApprovals": 2,
                "updatedBy": "erin" })
    );
    app.stop().await;
}

#[tokio::test]
async fn configure_environment_reports_every_problem_at_once_and_changes_nothing() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    let body = app
        .graphql(
            CONFIGURE,
            json!({ "input": { "name": "  ", "actor": "", "position": null, "tier": null,
                               "requiredApprovals": 11, "startTimeoutSeconds": 0 } }),
        )
        .await;
    assert_eq!(body["data"], Value::Null, "{body:#}");
    assert_eq!(
        bad_fields(&body),
        [
            "input.name",
            "input.actor",
            "input.position",
            "input.tier",
            "input.requiredApprovals",
            "input.startTimeoutSeconds"
        ]
    );

    for (input, field) in [
        (
            json!({ "requiredApprovals": null }),
            "input.requiredApprovals",
        ),
        (json!({ "requiredApprovals": 0 }), "input.requiredApprovals"),
        (
            json!({ "startTimeoutSeconds": 2_592_001 }),
            "input.startTimeoutSeconds",
        ),
        (
            json!({ "startTimeoutSeconds": -1 }),
            "input.startTimeoutSeconds",
        ),
    ] {
        let mut input = input;
        input["name"] = json!("staging");
        input["actor"] = json!("carol");
        let body = app.graphql(CONFIGURE, json!({ "input": input })).await;
        assert_eq!(bad_fields(&body), [field], "{body:#}");
    }

    // Nothing was registered.
    let data = app.ok(ENVIRONMENTS, json!({})).await;
    assert_eq!(data["environments"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn the_configured_tier_decides_whether_a_deployment_must_state_its_risk() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;

    // Not in the production set, but configured PRODUCTION: risk required.
    configure(
        &app,
        json!({ "name": "live-eu", "actor": "carol", "tier": "PRODUCTION" }),
    )
    .await;
    let mut input = create_input("billing", "live-eu");
    input["risk"] = Value::Null;
    let body = app.graphql(CREATE, json!({ "input": input.clone() })).await;
    assert_eq!(bad_fields(&body), ["input.risk"]);
    // Reported with every other problem at once.
    let mut also_bad = input.clone();
    also_bad["version"] = json!(" ");
    let body = app.graphql(CREATE, json!({ "input": also_bad })).await;
    assert_eq!(bad_fields(&body), ["input.version", "input.risk"]);
    input["risk"] = json!("canary first");
    app.ok(CREATE, json!({ "input": input })).await;

    // In the production set, but configured STAGING: risk optional.
    configure(
        &app,
        json!({ "name": "production", "actor": "carol", "tier": "STAGING" }),
    )
    .await;
    let mut input = create_input("billing", "production");
    input["risk"] = Value::Null;
    let data = app.ok(CREATE, json!({ "input": input })).await;
    assert_eq!(data["createDeployment"]["deployment"]["risk"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_deployment_created_over_http_keeps_its_environments_required_approvals() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    configure(
        &app,
        json!({ "name": "production", "actor": "carol", "requiredApprovals": 3 }),
    )
    .await;
    let id = app.create("billing", "production").await;
    configure(
        &app,
        json!({ "name": "production", "actor": "carol", "requiredApprovals": 1 }),
    )
    .await;
    let data = app
        .ok(
            "query($id: ID!) { deployment(id: $id) { requiredApprovals } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["deployment"]["requiredApprovals"], 3);
    app.stop().await;
}

#[tokio::test]
async fn environment_by_name_trims_and_answers_null_without_error_when_unknown() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    app.create("billing", "staging").await;

    let query = "query($name: String!) { environment(name: $name) { name tier position } }";
    let data = app.ok(query, json!({ "name": "  staging  " })).await;
    assert_eq!(
        data["environment"],
        json!({ "name": "staging", "tier": "STAGING", "position": 30 })
    );
    // Names are compared exactly after trimming.
    for unknown in ["nowhere", "STAGING"] {
        let data = app.ok(query, json!({ "name": unknown })).await;
        assert_eq!(data["environment"], Value::Null, "{unknown}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_environment_is_a_node() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let configured = configure(&app, json!({ "name": "qa", "actor": "carol" })).await;
    let id = configured["id"].as_str().expect("an id");

    let data = app
        .ok(
            "query($id: ID!) { node(id: $id) { __typename id ... on Environment { name tier } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["node"],
        json!({ "__typename": "Environment", "id": id, "name": "qa", "tier": "OTHER" })
    );
    app.stop().await;
}

/// Creates read an environment's tier from memory once they have seen it: a change of
/// tier is seen by the very next create, both ways, and reported with every other
/// problem at once as before.
#[tokio::test]
async fn a_changed_tier_is_seen_by_the_next_create_after_creates_have_read_the_old_one() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut input = create_input("billing", "eu-edge");
    input["risk"] = Value::Null;
    for _ in 0..3 {
        app.ok(CREATE, json!({ "input": input.clone() })).await;
    }

    configure(
        &app,
        json!({ "name": "eu-edge", "actor": "carol", "tier": "PRODUCTION" }),
    )
    .await;
    let body = app.graphql(CREATE, json!({ "input": input.clone() })).await;
    assert_eq!(bad_fields(&body), ["input.risk"]);

    configure(
        &app,
        json!({ "name": "eu-edge", "actor": "carol", "tier": "STAGING" }),
    )
    .await;
    let data = app.ok(CREATE, json!({ "input": input })).await;
    assert_eq!(data["createDeployment"]["deployment"]["risk"], Value::Null);
    let environment = app
        .ok(
            r#"{ environment(name: "eu-edge") { tier updatedBy } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        environment["environment"],
        json!({ "tier": "STAGING", "updatedBy": "carol" })
    );
    app.stop().await;
}
