//! Freeze windows: the store (create, list, remove, the limit, environments registered),
//! then the API over HTTP (audit fields, every problem at once, period(at) at chosen
//! instants, FROZEN on start with its extensions, overrides, global windows).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use shiplog::domain::freeze::{FreezeRemoval, FreezeWindowRequest, NewFreezeWindow};
use shiplog::store::{FreezeWindowError, StoreError};

use crate::helpers::{single_error, TestApp, TestDb};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn one_off(environment: Option<&str>, from: &str, to: &str) -> NewFreezeWindow {
    NewFreezeWindow::validate(&FreezeWindowRequest {
        environment: environment.map(str::to_owned),
        reason: "year end".into(),
        actor: "carol".into(),
        starts_at: Some(t(from)),
        ends_at: Some(t(to)),
        ..Default::default()
    })
    .expect("valid")
}

#[tokio::test]
async fn store_creates_lists_and_removes_windows() {
    let db = TestDb::new();
    let store = db.open().await;
    let global = store
        .create_freeze_window(one_off(
            None,
            "2026-12-24T00:00:00Z",
            "2027-01-02T00:00:00Z",
        ))
        .await
        .unwrap();
    let prod = store
        .create_freeze_window(one_off(
            Some(" production "),
            "2026-12-01T00:00:00Z",
            "2026-12-02T00:00:00Z",
        ))
        .await
        .unwrap();
    let staging = store
        .create_freeze_window(one_off(
            Some("staging"),
            "2026-12-01T00:00:00Z",
            "2026-12-02T00:00:00Z",
        ))
        .await
        .unwrap();
    assert_eq!(prod.environment.as_deref(), Some("production"));
    // Naming an environment registers it.
    assert!(store.environment("production").await.unwrap().is_some());
    assert!(store.environment("staging").await.unwrap().is_some());

    let ids = |ws: Vec<shiplog::domain::freeze::FreezeWindow>| {
        ws.into_iter().map(|w| w.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.freeze_windows(None).await.unwrap()),
        vec![global.id, prod.id, staging.id]
    );
    assert_eq!(
        ids(store.freeze_windows(Some("production")).await.unwrap()),
        vec![global.id, prod.id]
    );

    let removal = FreezeRemoval::validate("dave", "cancelled").unwrap();
    let removed = store
        .remove_freeze_window(prod.id, removal.clone())
        .await
        .unwrap();
    assert_eq!(removed.removed_by.as_deref(), Some("dave"));
    assert_eq!(removed.removal_note.as_deref(), Some("cancelled"));
    assert!(removed.removed_at.is_some());
    assert_eq!(
        ids(store.freeze_windows(Some("production")).await.unwrap()),
        vec![global.id]
    );
    // Still readable by id, with its audit fields.
    assert_eq!(store.freeze_window(prod.id).await.unwrap(), Some(removed));
    assert!(matches!(
        store.remove_freeze_window(prod.id, removal.clone()).await,
        Err(StoreError::FreezeWindow(FreezeWindowError::AlreadyRemoved(
            _
        )))
    ));
    assert!(matches!(
        store
            .remove_freeze_window(uuid::Uuid::now_v7(), removal)
            .await,
        Err(StoreError::FreezeWindow(FreezeWindowError::NotFound(_)))
    ));
    // Survives a reopen.
    drop(store);
    let store = db.open().await;
    assert_eq!(store.freeze_windows(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn store_refuses_more_than_1000_windows_not_removed() {
    let db = TestDb::new();
    let store = db.open().await;
    let new = one_off(None, "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z");
    let mut last = None;
    for _ in 0..1000 {
        last = Some(store.create_freeze_window(new.clone()).await.unwrap());
    }
    assert!(matches!(
        store.create_freeze_window(new.clone()).await,
        Err(StoreError::FreezeWindow(FreezeWindowError::TooMany))
    ));
    store
        .remove_freeze_window(last.unwrap().id, FreezeRemoval::validate("a", "b").unwrap())
        .await
        .unwrap();
    store.create_freeze_window(new).await.unwrap();
}

const CREATE_WINDOW: &str = r#"
mutation C($input: CreateFreezeWindowInput!) {
  createFreezeWindow(input: $input) {
    id environment reason startsAt endsAt cron durationMinutes timeZone createdBy createdAt
    removedBy removedAt removalNote
  }
}"#;

const REMOVE_WINDOW: &str = r#"
mutation R($input: RemoveFreezeWindowInput!) {
  removeFreezeWindow(input: $input) { id removedBy removedAt removalNote period { startsAt } }
}"#;

const PERIOD: &str = r#"
query P($env: String, $at: DateTime) {
  freezeWindows(environment: $env) { id period(at: $at) { startsAt endsAt active window { id } } }
}"#;

const START: &str = r#"
mutation S($input: StartDeploymentInput!) {
  startDeployment(input: $input) {
    deployment { id status }
    event { kind note overrides }
  }
}"#;

async fn create_window(app: &TestApp, input: Value) -> Value {
    app.ok(CREATE_WINDOW, json!({ "input": input })).await["createFreezeWindow"].clone()
}

async fn approved(app: &TestApp, service: &str, environment: &str) -> String {
    let id = app.create(service, environment).await;
    app.act("approveDeployment", &id, "bob", None).await;
    id
}

#[tokio::test]
async fn api_creates_lists_and_removes_with_audit_fields() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let w = create_window(
        &app,
        json!({ "environment": "production", "reason": "Weekend", "actor": "carol",
                "cron": "0 18 * * FRI", "durationMinutes": 3720, "timeZone": "Europe/Berlin" }),
    )
    .await;
    assert_eq!(w["environment"], "production");
    assert_eq!(w["cron"], "0 18 * * FRI");
    assert_eq!(w["durationMinutes"], 3720);
    assert_eq!(w["timeZone"], "Europe/Berlin");
    assert_eq!(w["createdBy"], "carol");
    assert_eq!(w["startsAt"], Value::Null);
    assert_eq!(w["removedBy"], Value::Null);
    let g = create_window(
        &app,
        json!({ "reason": "Year end", "actor": "carol",
                "startsAt": "2026-12-24T00:00:00Z", "endsAt": "2027-01-02T00:00:00Z" }),
    )
    .await;
    assert_eq!(g["environment"], Value::Null);
    assert_eq!(g["timeZone"], "UTC");
    assert_eq!(g["startsAt"], "2026-12-24T00:00:00.000Z");

    let list = app
        .ok("{ freezeWindows { id } staging: freezeWindows(environment: \"staging\") { id } environment(name: \"production\") { freezeWindows { id } } }", json!({}))
        .await;
    assert_eq!(
        list["freezeWindows"],
        json!([{ "id": w["id"] }, { "id": g["id"] }])
    );
    assert_eq!(list["staging"], json!([{ "id": g["id"] }]));
    assert_eq!(
        list["environment"]["freezeWindows"],
        json!([{ "id": w["id"] }, { "id": g["id"] }])
    );

    let node = app
        .ok(
            "query N($id: ID!) { node(id: $id) { __typename id } }",
            json!({ "id": w["id"] }),
        )
        .await;
    assert_eq!(node["node"]["__typename"], "FreezeWindow");

    // A note is required.
    let body = app
        .graphql(
            REMOVE_WINDOW,
            json!({ "input": { "id": w["id"], "actor": "dave", "note": "  " } }),
        )
        .await;
    let (code, err) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(err["extensions"]["fields"][0]["field"], "input.note");

    let removed = app
        .ok(
            REMOVE_WINDOW,
            json!({ "input": { "id": w["id"], "actor": "dave", "note": "not this year" } }),
        )
        .await["removeFreezeWindow"]
        .clone();
    assert_eq!(removed["removedBy"], "dave");
    assert_eq!(removed["removalNote"], "not this year");
    assert!(removed["removedAt"].is_string());
    assert_eq!(removed["period"], Value::Null);

    let body = app
        .graphql(
            REMOVE_WINDOW,
            json!({ "input": { "id": w["id"], "actor": "dave", "note": "again" } }),
        )
        .await;
    assert_eq!(single_error(&body).0, "CONFLICT");
    let body = app
        .graphql(REMOVE_WINDOW, json!({ "input": { "id": uuid::Uuid::now_v7().to_string(), "actor": "dave", "note": "x" } }))
        .await;
    assert_eq!(single_error(&body).0, "NOT_FOUND");

    let list = app.ok("{ freezeWindows { id } }", json!({})).await;
    assert_eq!(list["freezeWindows"], json!([{ "id": g["id"] }]));
    app.stop().await;
}

#[tokio::test]
async fn api_reports_every_problem_at_once() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let body = app
        .graphql(
            CREATE_WINDOW,
            json!({ "input": { "environment": "", "reason": " ", "actor": "",
                    "startsAt": "2026-12-24T00:00:00Z", "cron": "0 0 0 * * *",
                    "durationMinutes": 20000, "timeZone": "Mars/Olympus" } }),
        )
        .await;
    let (code, err) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    let fields: Vec<&str> = err["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "input.environment",
        "input.reason",
        "input.actor",
        "input.startsAt",
        "input.cron",
        "input.durationMinutes",
        "input.timeZone",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    for (input, field) in [
        (json!({ "reason": "r", "actor": "a" }), "input.startsAt"),
        (
            json!({ "reason": "r", "actor": "a", "startsAt": "2026-12-24T00:00:00Z", "endsAt": "2026-12-23T00:00:00Z" }),
            "input.endsAt",
        ),
        (
            json!({ "reason": "r", "actor": "a", "cron": "0 0 * * *" }),
            "input.durationMinutes",
        ),
        (
            json!({ "reason": "r", "actor": "a", "cron": "0 0 * *", "durationMinutes": 5 }),
            "input.cron",
        ),
        (
            json!({ "reason": "r", "actor": "a", "cron": "0 0 * * *", "durationMinutes": 5, "timeZone": "Nowhere/Town" }),
            "input.timeZone",
        ),
    ] {
        let body = app.graphql(CREATE_WINDOW, json!({ "input": input })).await;
        let (code, err) = single_error(&body);
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(err["extensions"]["fields"][0]["field"], field, "{body:#}");
    }
    // Nothing was created or registered.
    assert_eq!(
        app.ok("{ freezeWindows { id } }", json!({})).await["freezeWindows"],
        json!([])
    );
    app.stop().await;
}

#[tokio::test]
async fn api_period_at_chosen_instants() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let w = create_window(
        &app,
        json!({ "environment": "production", "reason": "Weekend", "actor": "carol",
                "cron": "0 18 * * FRI", "durationMinutes": 3720, "timeZone": "Europe/Berlin" }),
    )
    .await;
    let cases = [
        // Sunday noon in Berlin (CET): in force since Friday 18:00, until Monday 08:00.
        (
            "2026-11-29T11:00:00Z",
            json!({ "startsAt": "2026-11-27T17:00:00.000Z", "endsAt": "2026-11-30T07:00:00.000Z", "active": true }),
        ),
        // Tuesday: the next Friday.
        (
            "2026-12-01T12:00:00Z",
            json!({ "startsAt": "2026-12-04T17:00:00.000Z", "endsAt": "2026-12-07T07:00:00.000Z", "active": false }),
        ),
        // Summer time (CEST): 16:00Z.
        (
            "2026-07-01T00:00:00Z",
            json!({ "startsAt": "2026-07-03T16:00:00.000Z", "endsAt": "2026-07-06T06:00:00.000Z", "active": false }),
        ),
    ];
    for (at, expected) in cases {
        let data = app
            .ok(PERIOD, json!({ "env": "production", "at": at }))
            .await;
        let mut period = data["freezeWindows"][0]["period"].clone();
        assert_eq!(period["window"]["id"], w["id"]);
        period.as_object_mut().unwrap().remove("window");
        assert_eq!(period, expected, "at {at}");
    }
    app.stop().await;
}

#[tokio::test]
async fn start_is_refused_while_frozen_and_overridden_with_a_note() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let now = Utc::now();
    let short = create_window(
        &app,
        json!({ "environment": "production", "reason": "Incident", "actor": "carol",
                "startsAt": rfc(now - Duration::hours(1)), "endsAt": rfc(now + Duration::hours(1)) }),
    )
    .await;
    let long = create_window(
        &app,
        json!({ "environment": "production", "reason": "Audit", "actor": "carol",
                "startsAt": rfc(now - Duration::hours(2)), "endsAt": rfc(now + Duration::hours(3)) }),
    )
    .await;
    // A window of another environment and a removed one change nothing.
    create_window(
        &app,
        json!({ "environment": "staging", "reason": "x", "actor": "carol",
                "startsAt": rfc(now - Duration::hours(1)), "endsAt": rfc(now + Duration::hours(9)) }),
    )
    .await;

    let id = approved(&app, "billing", "production").await;
    let body = app
        .graphql(
            START,
            json!({ "input": { "id": id, "actor": "deploybot" } }),
        )
        .await;
    let (code, err) = single_error(&body);
    assert_eq!(code, "CONFLICT");
    assert_eq!(err["extensions"]["reason"], "FROZEN");
    // Of the periods in force, the one that ends last.
    assert_eq!(err["extensions"]["freezeWindowId"], long["id"]);
    assert_eq!(err["extensions"]["until"], long["endsAt"]);

    let env = app
        .ok("{ environment(name: \"production\") { activeFreeze { endsAt active window { id } } } }", json!({}))
        .await;
    assert_eq!(
        env["environment"]["activeFreeze"]["window"]["id"],
        long["id"]
    );
    assert_eq!(env["environment"]["activeFreeze"]["active"], true);

    // overrideFreeze needs a note, frozen or not.
    for note in [Value::Null, json!("  ")] {
        let body = app
            .graphql(START, json!({ "input": { "id": id, "actor": "deploybot", "note": note, "overrideFreeze": true } }))
            .await;
        let (code, err) = single_error(&body);
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(err["extensions"]["fields"][0]["field"], "input.note");
    }
    let started = app
        .ok(START, json!({ "input": { "id": id, "actor": "deploybot", "note": "hotfix for INC-7", "overrideFreeze": true } }))
        .await["startDeployment"]
        .clone();
    assert_eq!(started["deployment"]["status"], "STARTED");
    assert_eq!(started["event"]["overrides"], json!(["FROZEN"]));
    assert_eq!(started["event"]["note"], "hotfix for INC-7");

    // Unfrozen (both removed): a start with overrideFreeze still needs its note, and
    // records no override.
    for w in [&short, &long] {
        app.ok(
            REMOVE_WINDOW,
            json!({ "input": { "id": w["id"], "actor": "dave", "note": "over" } }),
        )
        .await;
    }
    let other = approved(&app, "payments", "production").await;
    let body = app
        .graphql(
            START,
            json!({ "input": { "id": other, "actor": "deploybot", "overrideFreeze": true } }),
        )
        .await;
    assert_eq!(single_error(&body).0, "BAD_USER_INPUT");
    let started = app
        .ok(START, json!({ "input": { "id": other, "actor": "deploybot", "note": "just in case", "overrideFreeze": true } }))
        .await["startDeployment"]
        .clone();
    assert_eq!(started["event"]["overrides"], json!([]));
    let env = app
        .ok(
            "{ environment(name: \"production\") { activeFreeze { endsAt } } }",
            json!({}),
        )
        .await;
    assert_eq!(env["environment"]["activeFreeze"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_global_window_blocks_every_environment() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let now = Utc::now();
    let w = create_window(
        &app,
        json!({ "reason": "Everything", "actor": "carol",
                "startsAt": rfc(now - Duration::hours(1)), "endsAt": rfc(now + Duration::hours(1)) }),
    )
    .await;
    for environment in ["dev", "staging", "production", "brand-new"] {
        let id = approved(&app, "billing", environment).await;
        let body = app
            .graphql(
                START,
                json!({ "input": { "id": id, "actor": "deploybot" } }),
            )
            .await;
        let (code, err) = single_error(&body);
        assert_eq!(code, "CONFLICT", "{environment}");
        assert_eq!(err["extensions"]["reason"], "FROZEN");
        assert_eq!(err["extensions"]["freezeWindowId"], w["id"]);
        assert_eq!(err["extensions"]["until"], w["endsAt"]);
        // The refused start changed nothing, and the blocker says why.
        let data = app
            .ok(
                "query D($id: ID!) { deployment(id: $id) { status blockers { kind message freezeWindow { id } until overridable } } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(data["deployment"]["status"], "APPROVED");
        let blockers = data["deployment"]["blockers"].as_array().unwrap();
        assert_eq!(blockers.len(), 1, "{data:#}");
        assert_eq!(blockers[0]["kind"], "FROZEN");
        assert_eq!(blockers[0]["freezeWindow"]["id"], w["id"]);
        assert_eq!(blockers[0]["until"], w["endsAt"]);
        assert_eq!(blockers[0]["overridable"], true);
        assert!(blockers[0]["message"]
            .as_str()
            .unwrap()
            .contains("Everything"));
    }
    app.stop().await;
}

#[tokio::test]
async fn frozen_comes_after_busy_and_the_override_overrides_frozen_only() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let now = Utc::now();
    create_window(
        &app,
        json!({ "environment": "qa", "reason": "Release candidate soak", "actor": "carol",
                "cron": "* * * * *", "durationMinutes": 10080, "timeZone": "America/New_York" }),
    )
    .await;
    // The recurring window is in force now (every minute, for a week).
    let env = app
        .ok(
            "{ environment(name: \"qa\") { activeFreeze { startsAt endsAt active } } }",
            json!({}),
        )
        .await;
    let active = &env["environment"]["activeFreeze"];
    assert_eq!(active["active"], true);
    let ends: DateTime<Utc> = t(active["endsAt"].as_str().unwrap());
    assert!(ends > now + Duration::days(6), "{active}");

    let first = approved(&app, "billing", "qa").await;
    let second = approved(&app, "billing", "qa").await;
    app.ok(
        START,
        json!({ "input": { "id": first, "actor": "deploybot", "note": "soak blocker fix", "overrideFreeze": true } }),
    )
    .await;
    for override_freeze in [false, true] {
        let body = app
            .graphql(
                START,
                json!({ "input": { "id": second, "actor": "deploybot", "note": "again", "overrideFreeze": override_freeze } }),
            )
            .await;
        let (code, err) = single_error(&body);
        assert_eq!(code, "CONFLICT");
        assert_eq!(err["extensions"]["reason"], "ENVIRONMENT_BUSY");
        assert_eq!(err["extensions"]["blockedBy"], first.as_str());
    }
    app.stop().await;
}

/// README.md's freeze walk-through, run as written (the conventions of `walkthrough.rs`).
#[tokio::test]
async fn the_readme_freeze_walkthrough_runs_as_written() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let answers = crate::walkthrough::run(&app, "## Freeze windows, step by step").await;
    assert_eq!(answers.len(), 10, "the walk-through has its steps");
    assert_eq!(answers[6]["extensions"]["reason"], "FROZEN");
    // "a Saturday here": in force.
    assert_eq!(answers[1]["freezeWindows"][0]["period"]["active"], true);
    assert_eq!(
        answers[1]["freezeWindows"][0]["period"]["endsAt"],
        "2026-11-30T07:00:00.000Z"
    );
    assert_eq!(
        answers[3]["environment"]["activeFreeze"]["window"]["reason"],
        "INC-7: payments outage"
    );
    assert_eq!(
        answers[6]["extensions"]["until"],
        "2036-01-01T00:00:00.000Z"
    );
    assert_eq!(answers[7]["deployment"]["blockers"][0]["kind"], "FROZEN");
    assert_eq!(
        answers[8]["startDeployment"]["event"]["overrides"],
        json!(["FROZEN"])
    );
    assert_eq!(answers[9]["removeFreezeWindow"]["removedBy"], "carol");
    app.stop().await;
}
