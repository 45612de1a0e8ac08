//! Version 2, guards on start: ENVIRONMENT_BUSY and OUTDATED, decided in the start's write
//! transaction; the database's one-STARTED rule; `Deployment.blockers` and
//! `DeploymentEvent.overrides`. Store tests against real SQLite files, schema tests
//! through `Schema::execute` (statement counts), API tests over HTTP.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::{Request, Variables};
use serde_json::{json, Value};
use shiplog::domain::{
    Action, ActionCommand, DeploymentRequest, NewDeployment, ProductionEnvironments, Refusal,
    Status,
};
use shiplog::store::{Store, StoreError};
use uuid::Uuid;

use crate::helpers::{action, create_input, single_error, TestApp, TestDb, CREATE};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn new_deployment(service: &str, environment: &str) -> NewDeployment {
    let request = DeploymentRequest {
        service: service.into(),
        environment: environment.into(),
        version: "v1.0.0".into(),
        requester: "alice".into(),
        work_refs: vec!["JIRA-1".into()],
        risk: Some("low".into()),
        rollback_plan: "redeploy".into(),
        ..DeploymentRequest::default()
    };
    NewDeployment::validate(&request, &ProductionEnvironments::default()).expect("valid")
}

fn command(action: Action) -> ActionCommand {
    let note = action.requires_note().then_some("because");
    ActionCommand::validate(action, "bob", note).expect("a valid command")
}

/// Creates and approves a deployment through the store; returns its id.
async fn approved(store: &Store, service: &str, environment: &str) -> Uuid {
    let id = store
        .create(new_deployment(service, environment))
        .await
        .expect("created")
        .deployment
        .id;
    store
        .transition(id, &command(Action::Approve))
        .await
        .expect("approved");
    id
}

async fn act(store: &Store, id: Uuid, action: Action) -> Result<Status, StoreError> {
    store
        .transition(id, &command(action))
        .await
        .map(|w| w.deployment.status)
}

/// Creates and approves a deployment over HTTP; returns its id.
async fn approved_over_http(app: &TestApp, service: &str, environment: &str) -> String {
    let id = app.create(service, environment).await;
    app.act("approveDeployment", &id, "bob", None).await;
    id
}

async fn start_over_http(app: &TestApp, id: &str) -> Value {
    app.graphql(
        &action("startDeployment"),
        json!({ "input": { "id": id, "actor": "deploybot" } }),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_start_while_another_deployment_of_the_place_is_started_is_refused_environment_busy() {
    let db = TestDb::new();
    let store = db.open().await;
    let first = approved(&store, "billing", "staging").await;
    let second = approved(&store, "billing", "staging").await;
    assert_eq!(
        act(&store, first, Action::Start).await.unwrap(),
        Status::Started
    );

    let refused = act(&store, second, Action::Start).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::EnvironmentBusy { blocked_by })) if blocked_by == first),
        "{refused:?}"
    );
    let second_now = store.deployment(second).await.unwrap().unwrap();
    assert_eq!(second_now.status, Status::Approved, "nothing was written");
    assert_eq!(store.events_of(&[second]).await.unwrap()[&second].len(), 2);

    // Once the first has an outcome, the second may start.
    assert_eq!(
        act(&store, first, Action::Fail).await.unwrap(),
        Status::Failed
    );
    assert_eq!(
        act(&store, second, Action::Start).await.unwrap(),
        Status::Started
    );
}

#[tokio::test]
async fn a_start_of_a_deployment_older_than_a_succeeded_one_is_refused_outdated_naming_the_newest()
{
    let db = TestDb::new();
    let store = db.open().await;
    let old = approved(&store, "billing", "staging").await;
    let newer = approved(&store, "billing", "staging").await;
    let newest = approved(&store, "billing", "staging").await;
    for id in [newer, newest] {
        assert_eq!(
            act(&store, id, Action::Start).await.unwrap(),
            Status::Started
        );
        assert_eq!(
            act(&store, id, Action::Succeed).await.unwrap(),
            Status::Succeeded
        );
    }
    let refused = act(&store, old, Action::Start).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::Outdated { blocked_by })) if blocked_by == newest),
        "{refused:?}"
    );
    // A success created earlier does not make a later deployment outdated.
    let later = approved(&store, "billing", "staging").await;
    assert_eq!(
        act(&store, later, Action::Start).await.unwrap(),
        Status::Started
    );
}

#[tokio::test]
async fn busy_is_checked_before_outdated() {
    let db = TestDb::new();
    let store = db.open().await;
    let old = approved(&store, "billing", "staging").await;
    let succeeded = approved(&store, "billing", "staging").await;
    let running = approved(&store, "billing", "staging").await;
    act(&store, succeeded, Action::Start).await.unwrap();
    act(&store, succeeded, Action::Succeed).await.unwrap();
    act(&store, running, Action::Start).await.unwrap();
    let refused = act(&store, old, Action::Start).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::EnvironmentBusy { blocked_by })) if blocked_by == running),
        "{refused:?}"
    );
}

#[tokio::test]
async fn other_services_and_environments_never_block_a_start() {
    let db = TestDb::new();
    let store = db.open().await;
    let places = [
        ("billing", "staging"),
        ("billing", "production"),
        ("search", "staging"),
        ("Billing", "staging"),
    ];
    let mut ids = Vec::new();
    for (service, environment) in places {
        ids.push(approved(&store, service, environment).await);
    }
    for id in ids {
        assert_eq!(
            act(&store, id, Action::Start).await.unwrap(),
            Status::Started
        );
    }
}

#[tokio::test]
async fn the_status_is_checked_before_the_guards() {
    let db = TestDb::new();
    let store = db.open().await;
    let running = approved(&store, "billing", "staging").await;
    act(&store, running, Action::Start).await.unwrap();
    let pending = store
        .create(new_deployment("billing", "staging"))
        .await
        .unwrap()
        .deployment
        .id;
    let refused = act(&store, pending, Action::Start).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Refused(Refusal::Conflict {
                status: Status::PendingApproval,
                action: Action::Start
            }))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn every_event_written_has_no_overrides() {
    let db = TestDb::new();
    let store = db.open().await;
    let id = approved(&store, "billing", "staging").await;
    let started = store.transition(id, &command(Action::Start)).await.unwrap();
    assert!(started.event.event.overrides.is_empty());
    act(&store, id, Action::Succeed).await.unwrap();
    let events = store.events_of(&[id]).await.unwrap().remove(&id).unwrap();
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.event.overrides.is_empty()));
}

#[tokio::test]
async fn the_database_itself_refuses_a_second_started_deployment_of_a_place() {
    let db = TestDb::new();
    let store = db.open().await;
    let first = approved(&store, "billing", "staging").await;
    let second = approved(&store, "billing", "staging").await;
    let elsewhere = approved(&store, "billing", "production").await;
    act(&store, first, Action::Start).await.unwrap();

    let started = "UPDATE deployments SET status = 'STARTED' WHERE id = ?";
    let err = db
        .execute(started, vec![second.to_string().into()])
        .await
        .expect_err("the unique index refuses a second STARTED row");
    let message = err.to_string();
    assert!(
        message.contains("UNIQUE constraint failed")
            || message.contains("duplicate key value violates unique constraint"),
        "{message}"
    );
    // Another environment is another place.
    let updated = db
        .execute(started, vec![elsewhere.to_string().into()])
        .await
        .expect("one STARTED per place");
    assert_eq!(updated, 1);
    assert_eq!(
        store.deployment(second).await.unwrap().unwrap().status,
        Status::Approved
    );
}

#[tokio::test]
async fn the_append_only_triggers_still_hold_for_the_overrides_column() {
    let db = TestDb::new();
    let store = db.open().await;
    let id = approved(&store, "billing", "staging").await;
    let refused = db
        .execute(
            "UPDATE deployment_events SET overrides = '[\"FROZEN\"]'",
            vec![],
        )
        .await;
    assert!(refused.is_err(), "events stay append-only");
    let events = store.events_of(&[id]).await.unwrap().remove(&id).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.event.overrides.is_empty()));
}

// ---------------------------------------------------------------------------------------
// API over HTTP
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn environment_busy_is_a_conflict_with_its_reason_and_the_started_deployment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let first = approved_over_http(&app, "billing", "staging").await;
    let second = approved_over_http(&app, "billing", "staging").await;
    app.act("startDeployment", &first, "deploybot", None).await;

    let body = start_over_http(&app, &second).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "CONFLICT", "{body:#}");
    let ext = &error["extensions"];
    assert_eq!(ext["reason"], "ENVIRONMENT_BUSY", "{body:#}");
    assert_eq!(ext["blockedBy"], first.as_str(), "{body:#}");
    assert_eq!(ext["status"], "APPROVED", "{body:#}");
    assert_eq!(ext["action"], "start", "{body:#}");
    assert!(
        error["message"].as_str().unwrap().contains(&first),
        "{body:#}"
    );
    assert!(body["data"].is_null(), "{body:#}");
    app.stop().await;
}

#[tokio::test]
async fn outdated_is_a_conflict_with_its_reason_and_the_newest_later_success() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let old = approved_over_http(&app, "billing", "staging").await;
    let newer = approved_over_http(&app, "billing", "staging").await;
    let newest = approved_over_http(&app, "billing", "staging").await;
    for id in [&newer, &newest] {
        app.act("startDeployment", id, "deploybot", None).await;
        app.act("succeedDeployment", id, "deploybot", None).await;
    }
    let body = start_over_http(&app, &old).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "CONFLICT", "{body:#}");
    let ext = &error["extensions"];
    assert_eq!(ext["reason"], "OUTDATED", "{body:#}");
    assert_eq!(ext["blockedBy"], newest.as_str(), "{body:#}");
    assert_eq!(ext["status"], "APPROVED", "{body:#}");
    assert_eq!(ext["action"], "start", "{body:#}");
    app.stop().await;
}

#[tokio::test]
async fn a_started_event_over_http_lists_no_overrides() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let id = approved_over_http(&app, "billing", "staging").await;
    let data = app
        .ok(
            "mutation($id: ID!) { startDeployment(input: { id: $id, actor: \"bot\" }) { event { kind overrides } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["startDeployment"]["event"],
        json!({ "kind": "STARTED", "overrides": [] })
    );
    let data = app
        .ok(
            "query($id: ID!) { deployment(id: $id) { events { overrides } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["deployment"]["events"],
        json!([{ "overrides": [] }, { "overrides": [] }, { "overrides": [] }])
    );
    app.stop().await;
}

#[tokio::test]
async fn of_30_concurrent_starts_in_one_place_exactly_one_succeeds_every_trial() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    for trial in 0..5 {
        let service = format!("svc-{trial}");
        let mut ids = Vec::new();
        for _ in 0..30 {
            ids.push(approved_over_http(&app, &service, "production-like").await);
        }
        let starts = ids.iter().map(|id| start_over_http(&app, id));
        let answers = futures_util::future::join_all(starts).await;
        let mut started = Vec::new();
        for (id, body) in ids.iter().zip(&answers) {
            if body.get("errors").is_none() {
                assert_eq!(
                    body["data"]["startDeployment"]["deployment"]["status"], "STARTED",
                    "{body:#}"
                );
                started.push(id.clone());
            }
        }
        assert_eq!(started.len(), 1, "trial {trial}: exactly one starts");
        for (id, body) in ids.iter().zip(&answers) {
            if *id == started[0] {
                continue;
            }
            let (code, error) = single_error(body);
            assert_eq!(code, "CONFLICT", "trial {trial}: {body:#}");
            assert_eq!(
                error["extensions"]["reason"], "ENVIRONMENT_BUSY",
                "trial {trial}: {body:#}"
            );
            assert_eq!(
                error["extensions"]["blockedBy"],
                started[0].as_str(),
                "trial {trial}: {body:#}"
            );
        }
        let data = app
            .ok(
                "query($s: String) { deployments(first: 100, filter: { service: $s, status: [STARTED] }) { nodes { id } } }",
                json!({ "s": service }),
            )
            .await;
        assert_eq!(
            data["deployments"]["nodes"],
            json!([{ "id": started[0] }]),
            "trial {trial}"
        );
    }
    app.stop().await;
}

const BLOCKERS: &str = r#"
query($id: ID!) {
  deployment(id: $id) {
    status
    blockers { kind message overridable deployment { id status } }
  }
}"#;

async fn blockers_over_http(app: &TestApp, id: &str) -> Value {
    app.ok(BLOCKERS, json!({ "id": id })).await["deployment"]["blockers"].clone()
}

#[tokio::test]
async fn a_pending_deployment_is_blocked_awaiting_approval_with_how_many_more() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let id = app.create("billing", "staging").await;
    assert_eq!(
        blockers_over_http(&app, &id).await,
        json!([{
            "kind": "AWAITING_APPROVAL",
            "message": "waiting for 1 more approval",
            "overridable": false,
            "deployment": null,
        }])
    );

    app.ok(
        r#"mutation { configureEnvironment(input: { name: "qa-two", actor: "ops", requiredApprovals: 3 }) { name } }"#,
        json!({}),
    )
    .await;
    let two = app.create("billing", "qa-two").await;
    app.act("approveDeployment", &two, "bob", None).await;
    let blockers = blockers_over_http(&app, &two).await;
    assert_eq!(
        blockers[0]["message"], "waiting for 2 more approvals",
        "{blockers:#}"
    );
    app.stop().await;
}

#[tokio::test]
async fn blockers_list_awaiting_approval_first_then_busy_then_outdated() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let pending = app.create("billing", "staging").await;
    let old_approved = approved_over_http(&app, "billing", "staging").await;
    let succeeded = approved_over_http(&app, "billing", "staging").await;
    let running = approved_over_http(&app, "billing", "staging").await;
    app.act("startDeployment", &succeeded, "bot", None).await;
    app.act("succeedDeployment", &succeeded, "bot", None).await;
    app.act("startDeployment", &running, "bot", None).await;

    let kinds = |blockers: &Value| -> Vec<String> {
        blockers
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let blockers = blockers_over_http(&app, &pending).await;
    assert_eq!(
        kinds(&blockers),
        ["AWAITING_APPROVAL", "ENVIRONMENT_BUSY", "OUTDATED"],
        "{blockers:#}"
    );
    let blockers = blockers_over_http(&app, &old_approved).await;
    assert_eq!(
        kinds(&blockers),
        ["ENVIRONMENT_BUSY", "OUTDATED"],
        "{blockers:#}"
    );
    assert_eq!(
        blockers[0]["deployment"],
        json!({ "id": running, "status": "STARTED" })
    );
    assert_eq!(
        blockers[1]["deployment"],
        json!({ "id": succeeded, "status": "SUCCEEDED" })
    );
    assert!(blockers[0]["message"].as_str().unwrap().contains(&running));
    assert!(blockers
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["overridable"] == false));

    // What blocks a start is what refuses it.
    let body = start_over_http(&app, &old_approved).await;
    assert_eq!(
        single_error(&body).1["extensions"]["reason"],
        "ENVIRONMENT_BUSY"
    );

    // A deployment that is not pending or approved has none, whatever its place.
    for id in [&running, &succeeded] {
        assert_eq!(blockers_over_http(&app, id).await, json!([]));
    }
    // Once the running one has an outcome, only the older success is left for old ones.
    app.act("failDeployment", &running, "bot", Some("broken"))
        .await;
    let blockers = blockers_over_http(&app, &old_approved).await;
    assert_eq!(kinds(&blockers), ["OUTDATED"], "{blockers:#}");
    // A deployment created after the success is not blocked at all.
    let fresh = approved_over_http(&app, "billing", "staging").await;
    assert_eq!(blockers_over_http(&app, &fresh).await, json!([]));
    let cancelled = approved_over_http(&app, "billing", "staging").await;
    app.act("cancelDeployment", &cancelled, "bob", Some("not needed"))
        .await;
    assert_eq!(blockers_over_http(&app, &cancelled).await, json!([]));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Statement counts
// ---------------------------------------------------------------------------------------

async fn execute(schema: &shiplog::graphql::ShiplogSchema, query: &str, variables: Value) -> Value {
    let response = schema
        .execute(Request::new(query).variables(Variables::from_json(variables)))
        .await;
    serde_json::to_value(&response).expect("serialize the response")
}

const PAGE_WITH_BLOCKERS: &str = r#"
query Page($first: Int) {
  deployments(first: $first) {
    nodes { id status blockers { kind message overridable deployment { id } } }
  }
}"#;

#[tokio::test]
async fn a_page_with_blockers_costs_the_same_statements_whatever_its_size() {
    let db = TestDb::new();
    let (schema, store) = db.schema().await;
    // 120 deployments over 12 places: pending, approved, started and succeeded ones.
    for i in 0..120 {
        let input = create_input(&format!("svc-{}", i % 6), ["staging", "qa"][i % 2]);
        let body = execute(&schema, CREATE, json!({ "input": input })).await;
        assert!(body.get("errors").is_none(), "{body:#}");
        let id = body["data"]["createDeployment"]["deployment"]["id"]
            .as_str()
            .unwrap()
            .parse::<Uuid>()
            .unwrap();
        if i % 3 != 0 {
            store
                .transition(id, &command(Action::Approve))
                .await
                .unwrap();
        }
        if i % 12 == 1 && i <= 61 {
            store.transition(id, &command(Action::Start)).await.unwrap();
            if i < 60 {
                store
                    .transition(id, &command(Action::Succeed))
                    .await
                    .unwrap();
            }
        }
    }

    let mut costs = BTreeMap::new();
    let mut kinds = BTreeSet::new();
    for first in [1, 10, 50, 100] {
        let before = store.read_statements();
        let body = execute(&schema, PAGE_WITH_BLOCKERS, json!({ "first": first })).await;
        assert!(body.get("errors").is_none(), "{body:#}");
        let nodes = body["data"]["deployments"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), first);
        for node in nodes {
            for b in node["blockers"].as_array().unwrap() {
                kinds.insert(b["kind"].as_str().unwrap().to_owned());
            }
        }
        costs.insert(first, store.read_statements() - before);
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["AWAITING_APPROVAL", "ENVIRONMENT_BUSY", "OUTDATED"].map(str::to_owned)),
        "the page shows every kind"
    );
    // The page, the events of its deployments and the guard facts of its places (with the
    // blocking deployments) are read with the page: three statements whatever its size.
    // The freeze windows of its environments come through a DataLoader, whose batch can
    // split when resolving a large page outlasts the batch delay on a loaded machine: a
    // few statements more at most, never one per row.
    assert!(
        costs.values().all(|&c| c <= 7),
        "statements by page size: {costs:?}"
    );
}
