//! The release train: the store against real SQLite files, its cost in SQL statements,
//! the API over HTTP, and random action sequences against an independent model of the
//! train (written from contract.md, not from the domain module).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::{Request, Variables};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use shiplog::domain::{
    Action, ActionCommand, Deployment, DeploymentRequest, NewDeployment, ProductionEnvironments,
    Refusal, ReleaseTrain,
};
use shiplog::store::{Store, StoreError};
use uuid::Uuid;

use crate::helpers::{create_input, single_error, TestApp, TestDb, CREATE};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn create(store: &Store, service: &str, environment: &str, version: &str) -> Deployment {
    let request = DeploymentRequest {
        service: service.to_owned(),
        environment: environment.to_owned(),
        version: version.to_owned(),
        requester: "alice".to_owned(),
        work_refs: vec!["JIRA-1".to_owned()],
        risk: Some("low".to_owned()),
        rollback_plan: "redeploy the previous version".to_owned(),
        idempotency_key: None,
        release_notes: None,
    };
    let new = NewDeployment::validate(&request, &ProductionEnvironments::default())
        .expect("a valid request");
    store.create(new).await.expect("created").deployment
}

fn command(action: Action) -> ActionCommand {
    let note = matches!(
        action,
        Action::Reject | Action::Fail | Action::RollBack | Action::Cancel
    )
    .then_some("because");
    ActionCommand::validate(action, "bob", note).expect("a valid command")
}

async fn act(store: &Store, id: Uuid, action: Action) -> Deployment {
    store
        .transition(id, &command(action))
        .await
        .unwrap_or_else(|e| panic!("{action} {id}: {e}"))
        .deployment
}

/// Creates, approves, starts and succeeds a deployment.
async fn live(store: &Store, service: &str, environment: &str, version: &str) -> Uuid {
    let id = create(store, service, environment, version).await.id;
    for action in [Action::Approve, Action::Start, Action::Succeed] {
        act(store, id, action).await;
    }
    id
}

/// The train as (environment, live, in flight, pending, promotable), ids as strings.
type Stop = (String, Option<Uuid>, Vec<Uuid>, Vec<Uuid>, Option<Uuid>);

fn stops(train: &ReleaseTrain) -> Vec<Stop> {
    train
        .stops
        .iter()
        .map(|s| {
            (
                s.environment.name.clone(),
                s.live.as_ref().map(|d| d.id),
                s.in_flight.iter().map(|d| d.id).collect(),
                s.pending.iter().map(|d| d.id).collect(),
                s.promotable.as_ref().map(|d| d.id),
            )
        })
        .collect()
}

fn names(train: &ReleaseTrain) -> Vec<&str> {
    train
        .stops
        .iter()
        .map(|s| s.environment.name.as_str())
        .collect()
}

fn stop<'a>(train: &'a ReleaseTrain, environment: &str) -> &'a shiplog::domain::TrainStop {
    train
        .stops
        .iter()
        .find(|s| s.environment.name == environment)
        .unwrap_or_else(|| panic!("a stop for {environment}"))
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn dev_testing_staging_and_production_form_the_train_with_no_configuration() {
    let db = TestDb::new();
    let store = db.open().await;
    for environment in ["production", "staging", "dev", "testing"] {
        create(&store, "billing", environment, "v1").await;
    }
    let train = store.release_train("  billing ").await.expect("the train");
    assert_eq!(train.service, "billing");
    assert_eq!(names(&train), ["dev", "testing", "staging", "production"]);
    assert!(train.stops.iter().all(|s| s.pending.len() == 1));
}

#[tokio::test]
async fn a_service_with_nothing_anywhere_still_has_a_stop_per_known_environment() {
    let db = TestDb::new();
    let store = db.open().await;
    create(&store, "payroll", "staging", "v1").await;
    create(&store, "payroll", "qa", "v1").await;
    live(&store, "payroll", "dev", "v1").await;

    let train = store.release_train("billing").await.expect("the train");
    // `qa` matches no tier's names: OTHER, position 50.
    assert_eq!(names(&train), ["dev", "staging", "qa"]);
    assert!(train.stops.iter().all(|s| s.live.is_none()
        && s.in_flight.is_empty()
        && s.pending.is_empty()
        && s.promotable.is_none()));
}

#[tokio::test]
async fn a_stop_for_an_environment_the_service_never_used() {
    let db = TestDb::new();
    let store = db.open().await;
    let dev = live(&store, "billing", "dev", "v1").await;
    live(&store, "payroll", "staging", "v9").await;
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(
        stops(&train),
        vec![
            ("dev".to_owned(), Some(dev), vec![], vec![], None),
            ("staging".to_owned(), None, vec![], vec![], Some(dev)),
        ]
    );
}

#[tokio::test]
async fn a_success_is_live_and_a_later_one_replaces_it() {
    let db = TestDb::new();
    let store = db.open().await;
    let first = live(&store, "billing", "staging", "v1").await;
    let train = store.release_train("billing").await.expect("the train");
    let live_one = stop(&train, "staging").live.as_ref().expect("live");
    assert_eq!(live_one.id, first);
    assert_eq!(live_one.version, "v1");

    // Created before the second success, it can no longer start (OUTDATED): the later
    // success stays live.
    let older = create(&store, "billing", "staging", "v2").await.id;
    let newer = live(&store, "billing", "staging", "v3").await;
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(
        stop(&train, "staging").live.as_ref().map(|d| d.id),
        Some(newer)
    );
    act(&store, older, Action::Approve).await;
    let refused = store.transition(older, &command(Action::Start)).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::Outdated { blocked_by })) if blocked_by == newer),
        "{refused:?}"
    );
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(
        stop(&train, "staging").live.as_ref().map(|d| d.id),
        Some(newer)
    );
}

#[tokio::test]
async fn after_a_rollback_the_previous_success_is_live_again() {
    let db = TestDb::new();
    let store = db.open().await;
    let v1 = live(&store, "billing", "production", "v1").await;
    let v2 = live(&store, "billing", "production", "v2").await;
    let v3 = live(&store, "billing", "production", "v3").await;
    let live_id = |train: ReleaseTrain| stop(&train, "production").live.as_ref().map(|d| d.id);
    assert_eq!(
        live_id(store.release_train("billing").await.unwrap()),
        Some(v3)
    );

    act(&store, v3, Action::RollBack).await;
    assert_eq!(
        live_id(store.release_train("billing").await.unwrap()),
        Some(v2)
    );
    act(&store, v2, Action::RollBack).await;
    assert_eq!(
        live_id(store.release_train("billing").await.unwrap()),
        Some(v1)
    );
    act(&store, v1, Action::RollBack).await;
    assert_eq!(live_id(store.release_train("billing").await.unwrap()), None);
}

#[tokio::test]
async fn in_flight_and_pending_are_listed_oldest_first() {
    let db = TestDb::new();
    let store = db.open().await;
    let a = create(&store, "billing", "staging", "v1").await.id;
    let b = create(&store, "billing", "staging", "v2").await.id;
    let c = create(&store, "billing", "staging", "v3").await.id;
    let d = create(&store, "billing", "staging", "v4").await.id;
    let e = create(&store, "billing", "staging", "v5").await.id;
    let f = create(&store, "billing", "staging", "v6").await.id;
    // Changed newest first: the order stays by creation.
    act(&store, e, Action::Approve).await;
    act(&store, c, Action::Approve).await;
    act(&store, c, Action::Start).await;
    act(&store, a, Action::Approve).await;
    act(&store, f, Action::Reject).await;
    let train = store.release_train("billing").await.expect("the train");
    let staging = stop(&train, "staging");
    let ids = |ds: &[Deployment]| ds.iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(&staging.in_flight), [a, c, e]);
    assert_eq!(ids(&staging.pending), [b, d]);
    assert!(staging.live.is_none());
}

#[tokio::test]
async fn promotable_is_the_nearest_earlier_live_version_when_it_differs() {
    let db = TestDb::new();
    let store = db.open().await;
    let dev = live(&store, "billing", "dev", "v3").await;
    let testing = live(&store, "billing", "testing", "v3").await;
    let staging = live(&store, "billing", "staging", "v2").await;
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(
        stops(&train),
        vec![
            ("dev".to_owned(), Some(dev), vec![], vec![], None),
            // The same version as the stop before: nothing to promote.
            ("testing".to_owned(), Some(testing), vec![], vec![], None),
            (
                "staging".to_owned(),
                Some(staging),
                vec![],
                vec![],
                Some(testing)
            ),
        ]
    );

    // Production is new: staging's live version may go there. After it does, nothing.
    let pending = create(&store, "billing", "production", "v2").await.id;
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(
        stops(&train)[3],
        (
            "production".to_owned(),
            None,
            vec![],
            vec![pending],
            Some(staging)
        )
    );
    for action in [Action::Approve, Action::Start, Action::Succeed] {
        act(&store, pending, action).await;
    }
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(
        stops(&train)[3],
        ("production".to_owned(), Some(pending), vec![], vec![], None)
    );

    // Staging rolled back to nothing: production looks past it, to testing.
    act(&store, staging, Action::RollBack).await;
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(stops(&train)[2].4, Some(testing));
    assert_eq!(stops(&train)[3].4, Some(testing));
}

#[tokio::test]
async fn the_train_reads_environments_in_their_configured_order() {
    let db = TestDb::new();
    let store = db.open().await;
    live(&store, "billing", "dev", "v1").await;
    live(&store, "billing", "production", "v1").await;
    let request = shiplog::domain::EnvironmentRequest {
        name: "canary".to_owned(),
        actor: "ops".to_owned(),
        position: shiplog::domain::Setting::Value(35),
        tier: shiplog::domain::Setting::Absent,
        required_approvals: shiplog::domain::Setting::Absent,
        start_timeout_seconds: shiplog::domain::Setting::Absent,
    };
    let config = shiplog::domain::EnvironmentConfig::validate(&request).expect("valid");
    store
        .configure_environment(config)
        .await
        .expect("configured");
    let train = store.release_train("billing").await.expect("the train");
    assert_eq!(names(&train), ["dev", "canary", "production"]);
    // Canary has nothing live: dev's v1 may go there; production already runs v1.
    assert!(stop(&train, "canary").promotable.is_some());
    assert!(stop(&train, "production").promotable.is_none());
}

// ---------------------------------------------------------------------------------------
// The cost of a train
// ---------------------------------------------------------------------------------------

const TRAIN: &str = r#"
query Train($service: String!) {
  releaseTrain(service: $service) {
    service
    stops {
      environment { id name position tier }
      live { id version status events { kind actor } }
      inFlight { id status events { kind } }
      pending { id approvals { actor } }
      promotable { id version events { kind } }
    }
  }
}"#;

async fn execute(schema: &shiplog::graphql::ShiplogSchema, query: &str, variables: Value) -> Value {
    let response = schema
        .execute(Request::new(query).variables(Variables::from_json(variables)))
        .await;
    serde_json::to_value(&response).expect("serialize the response")
}

#[tokio::test]
async fn a_train_costs_the_same_statements_whatever_the_number_of_environments_and_deployments() {
    let db = TestDb::new();
    let (schema, store) = db.schema().await;
    let mut costs = BTreeMap::new();
    let mut round = 0;
    let mut started_in = BTreeMap::new();
    for environments in [2, 4, 9] {
        // Each round adds environments and deployments in every state.
        for e in 0..environments {
            let environment = format!("env-{e}");
            // The previous round's STARTED one fails, so that this round's can start.
            if let Some(previous) = started_in.remove(&environment) {
                act(&store, previous, Action::Fail).await;
            }
            for _ in 0..3 {
                round += 1;
                let version = format!("v{round}");
                live(&store, "billing", &environment, &version).await;
                // In flight without starting: one STARTED per place is all the guards allow.
                let approved = create(&store, "billing", &environment, &version).await.id;
                act(&store, approved, Action::Approve).await;
                create(&store, "billing", &environment, &version).await;
                live(&store, "payroll", &environment, &version).await;
            }
            // One STARTED deployment per place: the guards on start allow no more.
            let started = create(&store, "billing", &environment, "v-started")
                .await
                .id;
            act(&store, started, Action::Approve).await;
            act(&store, started, Action::Start).await;
            started_in.insert(environment, started);
        }
        let before = store.read_statements();
        let body = execute(&schema, TRAIN, json!({ "service": "billing" })).await;
        assert!(body.get("errors").is_none(), "{body:#}");
        let stops = body["data"]["releaseTrain"]["stops"]
            .as_array()
            .expect("stops");
        assert_eq!(stops.len(), environments);
        assert!(stops
            .iter()
            .all(|s| s["live"]["events"][3]["kind"] == "SUCCEEDED"
                && s["inFlight"].as_array().is_some_and(|l| l.len() >= 3)
                && s["pending"].as_array().is_some_and(|l| l.len() >= 3)));
        costs.insert(environments, store.read_statements() - before);
    }
    // The environments, the deployments, and the events of all of them.
    assert!(
        costs.values().all(|&c| c == 3),
        "statements by number of environments: {costs:?}"
    );
}

/// Every lookup of the train's statement goes down an index: only the environments are
/// scanned, so its cost does not grow with the deployments or the events stored.
#[tokio::test]
async fn the_train_statement_searches_indexes_and_scans_only_the_environments() {
    use sqlx::{Connection, Row};
    let db = TestDb::sqlite();
    let store = db.open().await;
    live(&store, "billing", "staging", "v1").await;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db.path());
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("a plain connection");
    // The statement is the store's own constant, with nothing interpolated into it.
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        shiplog::store::TRAIN_DEPLOYMENTS
    )))
    .bind("billing")
    .bind("billing")
    .fetch_all(&mut conn)
    .await
    .expect("a plan")
    .iter()
    .map(|row| row.get::<String, _>("detail"))
    .collect();
    let steps: Vec<&str> = plan
        .iter()
        .map(String::as_str)
        .filter(|d| d.starts_with("SCAN") || d.starts_with("SEARCH"))
        .collect();
    assert!(
        steps
            .iter()
            .all(|d| d.starts_with("SEARCH") || d.starts_with("SCAN e ")),
        "{plan:#?}"
    );
    for index in [
        "deployments_in_release_train",
        "deployment_events_by_deployment",
    ] {
        assert!(steps.iter().any(|d| d.contains(index)), "{plan:#?}");
    }
    assert!(!steps.iter().any(|d| d.contains("by_kind")), "{plan:#?}");
    conn.close().await.expect("close");
    store.close().await.expect("close");
}

// ---------------------------------------------------------------------------------------
// Over HTTP
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_release_train_over_http() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut testing_input = create_input("billing", "testing");
    testing_input["version"] = json!("v1");
    let data = app.ok(CREATE, json!({ "input": testing_input })).await;
    let v1 = data["createDeployment"]["deployment"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    app.act("approveDeployment", &v1, "bob", None).await;
    app.act("startDeployment", &v1, "deploybot", None).await;
    app.act("succeedDeployment", &v1, "deploybot", None).await;
    let pending = app.create("billing", "production").await;
    app.create("payroll", "staging").await;

    let query = r#"
      query Train($service: String!) {
        releaseTrain(service: $service) {
          service
          stops {
            environment { name tier position }
            live { id version status reviewedBy updatedAt }
            inFlight { id }
            pending { id status events { kind actor } }
            promotable { id version }
          }
        }
      }"#;
    let data = app.ok(query, json!({ "service": "  billing  " })).await;
    let train = &data["releaseTrain"];
    assert_eq!(train["service"], "billing");
    let stops = train["stops"].as_array().expect("stops");
    let names: Vec<_> = stops
        .iter()
        .map(|s| s["environment"]["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("testing"), json!("staging"), json!("production")]
    );
    assert_eq!(stops[0]["environment"]["tier"], "TESTING");
    assert_eq!(stops[0]["live"]["id"], json!(v1));
    assert_eq!(stops[0]["live"]["status"], "SUCCEEDED");
    assert_eq!(stops[0]["live"]["reviewedBy"], "bob");
    assert_eq!(stops[0]["promotable"], Value::Null);
    assert_eq!(stops[1]["live"], Value::Null);
    assert_eq!(stops[1]["pending"], json!([]));
    assert_eq!(stops[1]["promotable"]["version"], "v1");
    assert_eq!(stops[2]["inFlight"], json!([]));
    assert_eq!(stops[2]["pending"][0]["id"], json!(pending));
    assert_eq!(stops[2]["pending"][0]["events"][0]["kind"], "CREATED");
    assert_eq!(stops[2]["promotable"]["id"], json!(v1));

    // A rollback: nothing is live in testing, so nothing is promotable anywhere.
    app.act("rollBackDeployment", &v1, "carol", Some("p99 doubled"))
        .await;
    let data = app.ok(query, json!({ "service": "billing" })).await;
    let stops = data["releaseTrain"]["stops"].as_array().expect("stops");
    assert!(stops
        .iter()
        .all(|s| s["live"].is_null() && s["promotable"].is_null()));

    // A service nobody deployed: every stop, all empty.
    let data = app.ok(query, json!({ "service": "nobody" })).await;
    assert_eq!(
        data["releaseTrain"]["stops"].as_array().map(Vec::len),
        Some(3)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_service_name_that_breaks_the_naming_rule_is_bad_user_input() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let query = "query T($service: String!) { releaseTrain(service: $service) { service } }";
    for (service, message) in [
        ("   ".to_owned(), "must not be blank"),
        ("s".repeat(101), "must be at most 100 characters"),
        (
            "bill\ning".to_owned(),
            "must not contain control characters",
        ),
    ] {
        let body = app.graphql(query, json!({ "service": service })).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        assert_eq!(
            error["extensions"]["fields"],
            json!([{ "field": "service", "message": message }]),
            "{body:#}"
        );
        assert_eq!(body["data"], Value::Null);
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Random action sequences against a model of the train
// ---------------------------------------------------------------------------------------

/// The model's environments, with the positions contract.md gives their names.
const ENVIRONMENTS: [(&str, i32); 4] = [
    ("production", 40),
    ("dev", 10),
    ("staging", 30),
    ("testing", 20),
];
const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];

#[derive(Debug, Clone)]
enum Step {
    /// Create a deployment of the service (or, `other`, of another service).
    Create {
        environment: usize,
        version: usize,
        other: bool,
    },
    /// An action on the `target`th deployment created so far (modulo their number);
    /// with no action, the one that takes it a step towards success as the model sees
    /// it (approve, start, succeed), or a rollback once it has succeeded.
    Act {
        target: usize,
        action: Option<Action>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let actions = prop::sample::select(vec![
        Action::Approve,
        Action::Reject,
        Action::Start,
        Action::Succeed,
        Action::Fail,
        Action::RollBack,
        Action::Cancel,
    ]);
    prop_oneof![
        2 => (0..ENVIRONMENTS.len(), 0..VERSIONS.len(), prop::bool::weighted(0.2)).prop_map(
            |(environment, version, other)| Step::Create { environment, version, other }
        ),
        6 => any::<usize>().prop_map(|target| Step::Act { target, action: None }),
        3 => (any::<usize>(), actions).prop_map(|(target, action)| Step::Act {
            target,
            action: Some(action)
        }),
    ]
}

/// What the model knows of one deployment.
struct Modelled {
    id: Uuid,
    service: &'static str,
    environment: &'static str,
    version: &'static str,
    status: &'static str,
    /// When (in steps) its success committed.
    succeeded_at: Option<usize>,
}

/// contract.md's lifecycle table: where an action leads from a status, if anywhere.
fn next_status(action: Action, from: &str) -> Option<&'static str> {
    match (action, from) {
        (Action::Approve, "PENDING_APPROVAL") => Some("APPROVED"),
        (Action::Reject, "PENDING_APPROVAL") => Some("REJECTED"),
        (Action::Start, "APPROVED") => Some("STARTED"),
        (Action::Succeed, "STARTED") => Some("SUCCEEDED"),
        (Action::Fail, "STARTED") => Some("FAILED"),
        (Action::RollBack, "STARTED" | "SUCCEEDED" | "FAILED") => Some("ROLLED_BACK"),
        (Action::Cancel, "PENDING_APPROVAL" | "APPROVED") => Some("CANCELLED"),
        _ => None,
    }
}

/// contract.md's release train of `billing`, from the model's deployments.
fn model_train(deployments: &[Modelled]) -> Vec<Stop> {
    let mut known: Vec<(&str, i32)> = ENVIRONMENTS
        .iter()
        .copied()
        .filter(|(name, _)| deployments.iter().any(|d| d.environment == *name))
        .collect();
    known.sort_by_key(|&(name, position)| (position, name));
    let mut out: Vec<Stop> = Vec::new();
    let mut earlier: Option<&Modelled> = None;
    for (name, _) in known {
        let here = || {
            deployments
                .iter()
                .filter(move |d| d.service == "billing" && d.environment == name)
        };
        let live = here()
            .filter(|d| d.status == "SUCCEEDED")
            .max_by_key(|d| d.succeeded_at);
        // The model's list is in creation order already.
        let with = |statuses: &[&str]| -> Vec<Uuid> {
            here()
                .filter(|d| statuses.contains(&d.status))
                .map(|d| d.id)
                .collect()
        };
        let promotable = earlier
            .filter(|e| live.is_none_or(|l| l.version != e.version))
            .map(|e| e.id);
        out.push((
            name.to_owned(),
            live.map(|d| d.id),
            with(&["APPROVED", "STARTED"]),
            with(&["PENDING_APPROVAL"]),
            promotable,
        ));
        if live.is_some() {
            earlier = live;
        }
    }
    out
}

/// How often the model's trains had a live, in-flight, pending and promotable deployment:
/// the random sequences must reach every part of the rule.
static SEEN: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

async fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let db = TestDb::new();
    let store = db.open().await;
    let mut deployments: Vec<Modelled> = Vec::new();
    for (n, step) in steps.into_iter().enumerate() {
        match step {
            Step::Create {
                environment,
                version,
                other,
            } => {
                let (environment, _) = ENVIRONMENTS[environment];
                let service = if other { "payroll" } else { "billing" };
                let d = create(&store, service, environment, VERSIONS[version]).await;
                deployments.push(Modelled {
                    id: d.id,
                    service,
                    environment,
                    version: VERSIONS[version],
                    status: "PENDING_APPROVAL",
                    succeeded_at: None,
                });
            }
            Step::Act { target, action } => {
                if deployments.is_empty() {
                    continue;
                }
                let target = target % deployments.len();
                let action = action.unwrap_or(match deployments[target].status {
                    "PENDING_APPROVAL" => Action::Approve,
                    "APPROVED" => Action::Start,
                    "STARTED" => Action::Succeed,
                    _ => Action::RollBack,
                });
                // The guards on start: another STARTED deployment of the place, or one
                // created later (later in the list) that SUCCEEDED there.
                let blocked = {
                    let d = &deployments[target];
                    deployments.iter().enumerate().any(|(i, o)| {
                        o.service == d.service
                            && o.environment == d.environment
                            && ((i != target && o.status == "STARTED")
                                || (i > target && o.status == "SUCCEEDED"))
                    })
                };
                let d = &mut deployments[target];
                let expected =
                    next_status(action, d.status).filter(|to| !(blocked && *to == "STARTED"));
                let outcome = store.transition(d.id, &command(action)).await;
                match (expected, outcome) {
                    (Some(to), Ok(written)) => {
                        prop_assert_eq!(written.deployment.status.as_str(), to);
                        d.status = to;
                        if to == "SUCCEEDED" {
                            d.succeeded_at = Some(n);
                        }
                    }
                    (None, Err(StoreError::Refused(_))) => {}
                    (expected, outcome) => {
                        return Err(TestCaseError::fail(format!(
                            "{action} from {}: expected {expected:?}, got {outcome:?}",
                            d.status
                        )));
                    }
                }
            }
        }
        let train = store
            .release_train("billing")
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = model_train(&deployments);
        prop_assert_eq!(stops(&train), expected.clone(), "after step {}", n);
        for (_, live, in_flight, pending, promotable) in &expected {
            let seen = [
                live.is_some(),
                !in_flight.is_empty(),
                !pending.is_empty(),
                promotable.is_some(),
            ];
            for (count, seen) in SEEN.iter().zip(seen) {
                count.fetch_add(usize::from(seen), Ordering::Relaxed);
            }
        }
    }
    store
        .close()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

#[test]
fn random_action_sequences_keep_the_train_as_the_model_says() {
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runner
        .run(&prop::collection::vec(step(), 1..60), |steps| {
            runtime.block_on(run_steps(steps))
        })
        .expect("the train follows the model");
    let seen: Vec<usize> = SEEN.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert!(
        seen.iter().all(|&n| n >= 50),
        "live, in flight, pending, promotable seen: {seen:?}"
    );
}
