//! Version 2: approval rules (distinct reviewers, counted in the write transaction),
//! cancellation and release notes. Store tests against real SQLite files, and API tests
//! over HTTP against a server on port 0.
//!
//! Until environments can be configured, a deployment's `required_approvals` is set on
//! its row with a raw SQL UPDATE (`require`), as if its environment had asked for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Request, Variables};
use futures_util::StreamExt;
use serde_json::{json, Value};
use shiplog::domain::{
    Action, ActionCommand, DeploymentRequest, EventKind, NewDeployment, ProductionEnvironments,
    Refusal, Status,
};
use shiplog::store::{EventFilter, Store, StoreError, Written};
use uuid::Uuid;

use crate::helpers::{action, create_input, single_error, TestApp, TestDb, CREATE};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Test-only: sets how many distinct approvals a deployment needs, directly on its row.
async fn require(db: &TestDb, id: &str, approvals: u8) {
    let updated = db
        .execute(
            "UPDATE deployments SET required_approvals = ? WHERE id = ?",
            vec![i64::from(approvals).into(), id.into()],
        )
        .await
        .expect("the update runs");
    assert_eq!(updated, 1, "deployment {id} exists");
}

fn new_deployment() -> NewDeployment {
    let request = DeploymentRequest {
        service: "billing".into(),
        environment: "production".into(),
        version: "v2.0.0".into(),
        requester: "alice".into(),
        work_refs: vec!["JIRA-7".into()],
        risk: Some("touches invoices".into()),
        rollback_plan: "redeploy v1.9.9".into(),
        ..DeploymentRequest::default()
    };
    NewDeployment::validate(&request, &ProductionEnvironments::default()).expect("valid")
}

fn command(action: Action, actor: &str) -> ActionCommand {
    let note = action.requires_note().then_some("see the change ticket");
    ActionCommand::validate(action, actor, note).expect("a valid command")
}

/// A pending deployment, requested by alice, that needs `required` distinct approvals.
async fn pending_needing(db: &TestDb, store: &Store, required: u8) -> Uuid {
    let id = store
        .create(new_deployment())
        .await
        .expect("create succeeds")
        .deployment
        .id;
    require(db, &id.to_string(), required).await;
    id
}

fn approve(actor: &str) -> ActionCommand {
    command(Action::Approve, actor)
}

// ---------------------------------------------------------------------------------------
// Store: counting approvals inside the write transaction
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn approvals_below_the_count_are_recorded_and_keep_the_deployment_pending() {
    for required in [1u8, 2, 3] {
        let db = TestDb::new();
        let store = db.open().await;
        let id = pending_needing(&db, &store, required).await;
        let reviewers = ["bob", "carol", "dave"];
        for (i, reviewer) in reviewers.iter().take(required as usize).enumerate() {
            let w = store
                .transition(id, &approve(reviewer))
                .await
                .expect("approve");
            let last = i + 1 == required as usize;
            let to = if last {
                Status::Approved
            } else {
                Status::PendingApproval
            };
            assert_eq!(w.event.event.kind, EventKind::Approved);
            assert_eq!(w.event.event.from_status, Some(Status::PendingApproval));
            assert_eq!(w.event.event.to_status, to, "approval {i} of {required}");
            assert_eq!(w.deployment.status, to);
            assert_eq!(w.deployment.reviewed_by.as_deref(), Some(*reviewer));
            let stored = store.deployment(id).await.expect("read").expect("exists");
            assert_eq!(
                stored, w.deployment,
                "what the store returned is what it stored"
            );
            assert_eq!(stored.required_approvals, required);
        }
        // One more is a conflict: the deployment is approved.
        match store.transition(id, &approve("erin")).await {
            Err(StoreError::Refused(Refusal::Conflict { status, action })) => {
                assert_eq!((status, action), (Status::Approved, Action::Approve));
            }
            other => panic!("{required} required: expected a conflict, got {other:?}"),
        }
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn the_same_reviewer_twice_is_already_approved_and_writes_nothing() {
    let db = TestDb::new();
    let store = db.open().await;
    let id = pending_needing(&db, &store, 3).await;
    store
        .transition(id, &approve("Bob"))
        .await
        .expect("first approval");
    let before = store.events_of(&[id]).await.expect("events");
    for again in ["Bob", "bob", "  BOB\t"] {
        match store.transition(id, &approve(again)).await {
            Err(StoreError::Refused(Refusal::AlreadyApproved)) => {}
            other => panic!("{again:?}: expected AlreadyApproved, got {other:?}"),
        }
    }
    match store.transition(id, &approve(" Alice ")).await {
        Err(StoreError::Refused(Refusal::SelfApproval)) => {}
        other => panic!("the requester: expected SelfApproval, got {other:?}"),
    }
    assert_eq!(store.events_of(&[id]).await.expect("events"), before);
    let d = store.deployment(id).await.expect("read").expect("exists");
    assert_eq!(d.status, Status::PendingApproval);
    store.close().await.expect("close");
}

#[tokio::test]
async fn reject_after_a_partial_approval_ends_the_review() {
    let db = TestDb::new();
    let store = db.open().await;
    let id = pending_needing(&db, &store, 2).await;
    store
        .transition(id, &approve("bob"))
        .await
        .expect("approve");
    let w = store
        .transition(id, &command(Action::Reject, "carol"))
        .await
        .expect("reject after a partial approval");
    assert_eq!(w.deployment.status, Status::Rejected);
    assert_eq!(w.deployment.reviewed_by.as_deref(), Some("carol"));
    assert_eq!(w.event.event.from_status, Some(Status::PendingApproval));
    store.close().await.expect("close");
}

#[tokio::test]
async fn of_many_concurrent_approvals_by_distinct_reviewers_exactly_the_needed_ones_are_recorded() {
    for (required, already, reviewers) in
        [(1u8, 0usize, 12usize), (3, 0, 12), (3, 1, 12), (10, 4, 20)]
    {
        let db = TestDb::new();
        let store = db.open().await;
        let id = pending_needing(&db, &store, required).await;
        for i in 0..already {
            store
                .transition(id, &approve(&format!("early-{i}")))
                .await
                .expect("an early approval");
        }
        let needed = required as usize - already;

        let start = Arc::new(tokio::sync::Barrier::new(reviewers));
        let tasks: Vec<_> = (0..reviewers)
            .map(|i| {
                let store = store.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    store
                        .transition(id, &approve(&format!("reviewer-{i}")))
                        .await
                })
            })
            .collect();
        let mut outcomes: Vec<Result<Written, StoreError>> = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("the task finishes"));
        }
        let recorded: Vec<&Written> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(
            recorded.len(),
            needed,
            "{required} required, {already} already"
        );
        for o in &outcomes {
            if let Err(e) = o {
                assert!(
                    matches!(
                        e,
                        StoreError::Refused(Refusal::Conflict {
                            status: Status::Approved,
                            action: Action::Approve
                        })
                    ),
                    "the others are conflicts: {e:?}"
                );
            }
        }
        // Exactly one of them moved it to APPROVED: the one with the highest sequence.
        let mut by_seq: Vec<&Written> = recorded.clone();
        by_seq.sort_by_key(|w| w.event.seq);
        let to: Vec<Status> = by_seq.iter().map(|w| w.event.event.to_status).collect();
        let mut expected = vec![Status::PendingApproval; needed - 1];
        expected.push(Status::Approved);
        assert_eq!(to, expected);

        let events = store
            .events_of(&[id])
            .await
            .expect("events")
            .remove(&id)
            .unwrap();
        let approvals = events
            .iter()
            .filter(|e| e.event.kind == EventKind::Approved)
            .count();
        assert_eq!(approvals, required as usize);
        let d = store.deployment(id).await.expect("read").expect("exists");
        assert_eq!(d.status, Status::Approved);
        assert_eq!(
            d.reviewed_by.as_deref(),
            Some(by_seq.last().unwrap().event.event.actor.as_str())
        );
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn cancel_is_stored_with_its_event_and_nothing_follows_it() {
    let db = TestDb::new();
    let store = db.open().await;
    for path in [&[][..], &[Action::Approve][..]] {
        let id = store
            .create(new_deployment())
            .await
            .expect("create")
            .deployment
            .id;
        for &a in path {
            store
                .transition(id, &command(a, "bob"))
                .await
                .expect("step");
        }
        let w = store
            .transition(id, &command(Action::Cancel, "alice"))
            .await
            .expect("cancel");
        assert_eq!(w.deployment.status, Status::Cancelled);
        assert_eq!(w.event.event.kind, EventKind::Cancelled);
        assert_eq!(w.event.event.note.as_deref(), Some("see the change ticket"));
        assert_eq!(
            store.deployment(id).await.expect("read"),
            Some(w.deployment.clone())
        );
        for action in Action::ALL {
            match store.transition(id, &command(action, "bob")).await {
                Err(StoreError::Refused(Refusal::Conflict { status, .. })) => {
                    assert_eq!(status, Status::Cancelled)
                }
                other => panic!("{action} after cancel: {other:?}"),
            }
        }
    }
    store.close().await.expect("close");
}

#[tokio::test]
async fn cancels_and_partial_approvals_reach_subscribers_once_in_commit_order() {
    let db = TestDb::new();
    let store = db.open().await;
    let live = store
        .follow(EventFilter::default(), None)
        .await
        .expect("follow");
    let mut live = Box::pin(live);
    let id = pending_needing(&db, &store, 2).await;
    let approved = store
        .transition(id, &approve("bob"))
        .await
        .expect("approve");
    let cancelled = store
        .transition(id, &command(Action::Cancel, "alice"))
        .await
        .expect("cancel");
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("no error");
        got.push(next);
    }
    let kinds: Vec<EventKind> = got.iter().map(|s| s.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Created,
            EventKind::Approved,
            EventKind::Cancelled
        ]
    );
    assert_eq!(got[1], approved.event);
    assert_eq!(got[2], cancelled.event);
    store.close().await.expect("close");
}

#[tokio::test]
async fn release_notes_are_stored_and_read_back() {
    let db = TestDb::new();
    let store = db.open().await;
    let request = DeploymentRequest {
        service: "billing".into(),
        environment: "staging".into(),
        version: "v2.0.0".into(),
        requester: "alice".into(),
        work_refs: vec!["JIRA-7".into()],
        rollback_plan: "redeploy v1.9.9".into(),
        release_notes: Some("  Faster invoices.\n\n- JIRA-7  ".into()),
        ..DeploymentRequest::default()
    };
    let new = NewDeployment::validate(&request, &ProductionEnvironments::default()).unwrap();
    let w = store.create(new).await.expect("create");
    assert_eq!(
        w.deployment.release_notes.as_deref(),
        Some("Faster invoices.\n\n- JIRA-7")
    );
    let stored = store.deployment(w.deployment.id).await.unwrap().unwrap();
    assert_eq!(stored, w.deployment);
    store.close().await.expect("close");
}

// ---------------------------------------------------------------------------------------
// API over HTTP
// ---------------------------------------------------------------------------------------

const APPROVALS: &str = r#"
query One($id: ID!) {
  deployment(id: $id) {
    status requiredApprovals reviewedBy reviewedAt releaseNotes
    approvals { kind actor note fromStatus toStatus occurredAt deploymentId }
  }
}"#;

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

fn assert_conflict(body: &Value, status: &str, action: &str) {
    let (code, error) = single_error(body);
    assert_eq!(code, "CONFLICT", "{body:#}");
    assert_eq!(error["extensions"]["status"], status, "{body:#}");
    assert_eq!(error["extensions"]["action"], action, "{body:#}");
}

fn assert_forbidden(body: &Value, reason: &str) {
    let (code, error) = single_error(body);
    assert_eq!(code, "FORBIDDEN", "{body:#}");
    assert_eq!(error["extensions"]["reason"], reason, "{body:#}");
    assert!(body["data"].is_null(), "{body:#}");
}

#[tokio::test]
async fn api_cancel_withdraws_pending_and_approved_deployments_and_is_terminal() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    for approved_first in [false, true] {
        let id = app.create("billing", "staging").await;
        let from = if approved_first {
            app.act("approveDeployment", &id, "bob", None).await;
            "APPROVED"
        } else {
            "PENDING_APPROVAL"
        };
        let payload = app
            .act(
                "cancelDeployment",
                &id,
                " carol ",
                Some("  superseded by v1.0.1 "),
            )
            .await;
        assert_eq!(payload["deployment"]["status"], "CANCELLED");
        assert_eq!(payload["event"]["kind"], "CANCELLED");
        assert_eq!(payload["event"]["actor"], "carol");
        assert_eq!(payload["event"]["note"], "superseded by v1.0.1");
        assert_eq!(payload["event"]["fromStatus"], from);
        assert_eq!(payload["event"]["toStatus"], "CANCELLED");
        assert_eq!(
            payload["deployment"]["updatedAt"],
            payload["event"]["occurredAt"]
        );

        // Terminal: every action, cancel included, is a conflict now.
        for (mutation, name, note) in [
            ("approveDeployment", "approve", None),
            ("rejectDeployment", "reject", Some("no")),
            ("startDeployment", "start", None),
            ("succeedDeployment", "succeed", None),
            ("failDeployment", "fail", Some("no")),
            ("rollBackDeployment", "rollBack", Some("no")),
            ("cancelDeployment", "cancel", Some("again")),
        ] {
            let body = try_act(&app, mutation, &id, "dave", note).await;
            assert_conflict(&body, "CANCELLED", name);
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn api_cancel_needs_a_note_and_is_a_conflict_once_started() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("billing", "staging").await;
    for note in ["", "  \n "] {
        let body = try_act(&app, "cancelDeployment", &id, "carol", Some(note)).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{body:#}");
        assert_eq!(error["extensions"]["fields"][0]["field"], "input.note");
    }
    // The schema itself requires the note: absent or null is refused before anything runs.
    let absent =
        "mutation { cancelDeployment(input: { id: \"x\", actor: \"carol\" }) { event { id } } }";
    for body in [
        app.graphql(absent, json!({})).await,
        try_act(&app, "cancelDeployment", &id, "carol", None).await,
    ] {
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{body:#}"
        );
    }

    let steps: [(&str, &str, Option<&str>, &str); 4] = [
        ("approveDeployment", "bob", None, "APPROVED"),
        ("startDeployment", "ops", None, "STARTED"),
        ("succeedDeployment", "ops", None, "SUCCEEDED"),
        ("rollBackDeployment", "ops", Some("slow"), "ROLLED_BACK"),
    ];
    for (mutation, actor, note, status) in steps {
        app.act(mutation, &id, actor, note).await;
        if status != "APPROVED" {
            let body = try_act(&app, "cancelDeployment", &id, "carol", Some("too late")).await;
            assert_conflict(&body, status, "cancel");
        }
    }
    for (mutation, note, status) in [
        ("rejectDeployment", Some("no window"), "REJECTED"),
        ("failDeployment", Some("broken"), "FAILED"),
    ] {
        let id = app.create("billing", "staging").await;
        if mutation == "failDeployment" {
            app.act("approveDeployment", &id, "bob", None).await;
            app.act("startDeployment", &id, "ops", None).await;
        }
        app.act(mutation, &id, "bob", note).await;
        let body = try_act(&app, "cancelDeployment", &id, "carol", Some("too late")).await;
        assert_conflict(&body, status, "cancel");
    }
    let body = try_act(
        &app,
        "cancelDeployment",
        &Uuid::now_v7().to_string(),
        "carol",
        Some("gone"),
    )
    .await;
    assert_eq!(single_error(&body).0, "NOT_FOUND");
    app.stop().await;
}

#[tokio::test]
async fn api_two_approvals_from_two_people_neither_the_requester() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("billing", "production").await;

    let data = app.ok(APPROVALS, json!({ "id": id })).await;
    assert_eq!(data["deployment"]["requiredApprovals"], 1);
    assert_eq!(data["deployment"]["approvals"], json!([]));
    require(&db, &id, 2).await;

    assert_forbidden(
        &try_act(&app, "approveDeployment", &id, " ALICE ", None).await,
        "SELF_APPROVAL",
    );
    let first = app.act("approveDeployment", &id, "bob", Some("LGTM")).await;
    assert_eq!(first["deployment"]["status"], "PENDING_APPROVAL");
    assert_eq!(first["deployment"]["reviewedBy"], "bob");
    assert_eq!(first["event"]["kind"], "APPROVED");
    assert_eq!(first["event"]["fromStatus"], "PENDING_APPROVAL");
    assert_eq!(first["event"]["toStatus"], "PENDING_APPROVAL");

    for again in ["bob", " Bob ", "BOB"] {
        assert_forbidden(
            &try_act(&app, "approveDeployment", &id, again, None).await,
            "ALREADY_APPROVED",
        );
    }
    // Not approved yet: it cannot start.
    assert_conflict(
        &try_act(&app, "startDeployment", &id, "ops", None).await,
        "PENDING_APPROVAL",
        "start",
    );

    let second = app.act("approveDeployment", &id, "carol", None).await;
    assert_eq!(second["deployment"]["status"], "APPROVED");
    assert_eq!(second["event"]["fromStatus"], "PENDING_APPROVAL");
    assert_eq!(second["event"]["toStatus"], "APPROVED");
    assert_eq!(second["deployment"]["reviewedBy"], "carol");
    assert_eq!(
        second["deployment"]["reviewedAt"],
        second["event"]["occurredAt"]
    );

    // A third approval, by anyone: the status is checked first.
    for actor in ["dave", "bob", "alice"] {
        assert_conflict(
            &try_act(&app, "approveDeployment", &id, actor, None).await,
            "APPROVED",
            "approve",
        );
    }

    let data = app.ok(APPROVALS, json!({ "id": id })).await;
    let d = &data["deployment"];
    assert_eq!(d["requiredApprovals"], 2);
    assert_eq!(d["status"], "APPROVED");
    let approvals = d["approvals"].as_array().expect("a list");
    let who: Vec<&str> = approvals
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["bob", "carol"], "oldest first");
    assert!(approvals.iter().all(|e| e["kind"] == "APPROVED"));
    assert!(approvals.iter().all(|e| e["deploymentId"] == id.as_str()));
    assert_eq!(approvals[0]["note"], "LGTM");
    app.act("startDeployment", &id, "ops", None).await;
    app.stop().await;
}

#[tokio::test]
async fn api_reject_after_a_partial_approval_and_three_required() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("billing", "staging").await;
    require(&db, &id, 3).await;
    app.act("approveDeployment", &id, "bob", None).await;
    app.act("approveDeployment", &id, "carol", None).await;
    let rejected = app
        .act("rejectDeployment", &id, "dave", Some("not this week"))
        .await;
    assert_eq!(rejected["deployment"]["status"], "REJECTED");
    assert_eq!(rejected["deployment"]["reviewedBy"], "dave");
    let data = app.ok(APPROVALS, json!({ "id": id })).await;
    assert_eq!(data["deployment"]["requiredApprovals"], 3);
    assert_eq!(data["deployment"]["approvals"].as_array().unwrap().len(), 2);

    // And with three, the third approval is the one that approves.
    let id = app.create("billing", "staging").await;
    require(&db, &id, 3).await;
    for (actor, status) in [
        ("bob", "PENDING_APPROVAL"),
        ("carol", "PENDING_APPROVAL"),
        ("dave", "APPROVED"),
    ] {
        let p = app.act("approveDeployment", &id, actor, None).await;
        assert_eq!(p["deployment"]["status"], status, "after {actor}");
        assert_eq!(p["event"]["toStatus"], status, "after {actor}");
    }
    app.stop().await;
}

#[tokio::test]
async fn api_release_notes_are_stored_trimmed_and_validated_with_the_rest() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let query = r#"mutation C($input: CreateDeploymentInput!) {
      createDeployment(input: $input) { deployment { id releaseNotes requiredApprovals } }
    }"#;
    for (notes, stored) in [
        (
            json!("  Faster invoices.\n\n- JIRA-1  "),
            json!("Faster invoices.\n\n- JIRA-1"),
        ),
        (json!("   "), Value::Null),
        (Value::Null, Value::Null),
        (json!("n".repeat(10_000)), json!("n".repeat(10_000))),
    ] {
        let mut input = create_input("billing", "staging");
        input["releaseNotes"] = notes;
        let data = app.ok(query, json!({ "input": input })).await;
        let d = &data["createDeployment"]["deployment"];
        assert_eq!(d["releaseNotes"], stored);
        assert_eq!(d["requiredApprovals"], 1);
        let id = d["id"].as_str().unwrap();
        let read = app.ok(APPROVALS, json!({ "id": id })).await;
        assert_eq!(read["deployment"]["releaseNotes"], stored);
    }

    // Too long, reported with every other problem.
    let mut input = create_input("billing", "production");
    input["releaseNotes"] = json!("n".repeat(10_001));
    input["risk"] = Value::Null;
    input["version"] = json!(" ");
    let body = app.graphql(query, json!({ "input": input })).await;
    let (code, error) = single_error(&body);
    assert_eq!(code, "BAD_USER_INPUT");
    let fields: Vec<&str> = error["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["input.version", "input.risk", "input.releaseNotes"]
    );
    app.stop().await;
}

#[tokio::test]
async fn api_an_idempotent_retry_must_repeat_its_release_notes() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut input = create_input("billing", "staging");
    input["idempotencyKey"] = json!("deploy-42");
    input["releaseNotes"] = json!("Faster invoices.");
    let first = app.ok(CREATE, json!({ "input": input.clone() })).await;
    let id = first["createDeployment"]["deployment"]["id"].clone();

    input["releaseNotes"] = json!("  Faster invoices. ");
    let retry = app.ok(CREATE, json!({ "input": input.clone() })).await;
    assert_eq!(retry["createDeployment"]["deployment"]["id"], id);

    for other in [json!("Slower invoices."), Value::Null] {
        input["releaseNotes"] = other;
        let body = app.graphql(CREATE, json!({ "input": input.clone() })).await;
        let (code, error) = single_error(&body);
        assert_eq!(code, "CONFLICT", "{body:#}");
        assert_eq!(error["extensions"]["action"], "create");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Cost: approvals of a page are loaded with its events, in one statement
// ---------------------------------------------------------------------------------------

const PAGE_WITH_APPROVALS: &str = r#"
query Page($first: Int) {
  deployments(first: $first) {
    nodes { id requiredApprovals approvals { actor deployment { id } } }
    edges { node { approvals { kind } events { kind } } }
  }
}"#;

#[tokio::test]
async fn a_page_with_approvals_costs_the_same_statements_whatever_its_size() {
    let db = TestDb::new();
    let (schema, store) = db.schema().await;
    for i in 0..30 {
        let mut input = create_input(&format!("svc-{}", i % 4), "staging");
        input["requester"] = json!("alice");
        let body = schema
            .execute(
                Request::new(CREATE).variables(Variables::from_json(json!({ "input": input }))),
            )
            .await;
        assert!(body.errors.is_empty(), "{:?}", body.errors);
        let data = body.data.into_json().unwrap();
        let id = data["createDeployment"]["deployment"]["id"]
            .as_str()
            .unwrap()
            .parse::<Uuid>()
            .unwrap();
        store
            .transition(id, &approve("bob"))
            .await
            .expect("approve");
    }
    let mut costs = BTreeMap::new();
    for first in [1, 10, 30] {
        let before = store.read_statements();
        let response = schema
            .execute(
                Request::new(PAGE_WITH_APPROVALS)
                    .variables(Variables::from_json(json!({ "first": first }))),
            )
            .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data = response.data.into_json().unwrap();
        let nodes = data["deployments"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), first);
        assert!(nodes.iter().all(|n| n["approvals"][0]["actor"] == "bob"));
        costs.insert(first, store.read_statements() - before);
    }
    // The page, and the events of all its deployments.
    assert!(
        costs.values().all(|c| *c == 2),
        "statements by page size: {costs:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Property: random reviews against a model of contract.md's approval rules
// ---------------------------------------------------------------------------------------

mod property {
    use std::collections::BTreeSet;

    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};
    use shiplog::domain::{
        Action, ActionCommand, Approvals, Deployment, DeploymentEvent, DeploymentRequest,
        EventKind, NewDeployment, ProductionEnvironments, Refusal, Status,
    };
    use uuid::Uuid;

    /// What contract.md says one action does, from the model's state.
    #[derive(Debug, PartialEq, Eq)]
    enum Expected {
        Conflict,
        SelfApproval,
        AlreadyApproved,
        Moves(&'static str),
    }

    struct Model {
        required: usize,
        status: &'static str,
        /// Approvers so far, trimmed and lowercased.
        approvers: BTreeSet<String>,
    }

    impl Model {
        fn expect(&self, action: Action, actor: &str) -> Expected {
            let who = actor.trim().to_lowercase();
            match (action, self.status) {
                (Action::Approve, "PENDING_APPROVAL") if who == "alice" => Expected::SelfApproval,
                (Action::Approve, "PENDING_APPROVAL") if self.approvers.contains(&who) => {
                    Expected::AlreadyApproved
                }
                (Action::Approve, "PENDING_APPROVAL") => {
                    if self.approvers.len() + 1 >= self.required {
                        Expected::Moves("APPROVED")
                    } else {
                        Expected::Moves("PENDING_APPROVAL")
                    }
                }
                (Action::Reject, "PENDING_APPROVAL") => Expected::Moves("REJECTED"),
                (Action::Cancel, "PENDING_APPROVAL" | "APPROVED") => Expected::Moves("CANCELLED"),
                (Action::Start, "APPROVED") => Expected::Moves("STARTED"),
                _ => Expected::Conflict,
            }
        }
    }

    fn step() -> impl Strategy<Value = (Action, &'static str)> {
        (
            prop_oneof![
                8 => Just(Action::Approve),
                1 => Just(Action::Reject),
                1 => Just(Action::Cancel),
                1 => Just(Action::Start),
            ],
            prop::sample::select(vec![
                "bob", " Bob ", "BOB", "carol", "Carol\t", "dave", "erin", "frank", "alice",
                " ALICE ",
            ]),
        )
    }

    fn fresh(required: u8) -> (Deployment, DeploymentEvent) {
        let request = DeploymentRequest {
            service: "billing".into(),
            environment: "staging".into(),
            version: "v1".into(),
            requester: "Alice".into(),
            work_refs: vec!["JIRA-1".into()],
            rollback_plan: "redeploy v0".into(),
            ..DeploymentRequest::default()
        };
        let new = NewDeployment::validate(&request, &ProductionEnvironments::default())
            .expect("a valid request");
        let at = Utc.timestamp_millis_opt(1_780_000_000_000).unwrap();
        let (mut d, created) = Deployment::create(new, Uuid::now_v7(), Uuid::now_v7(), at);
        d.required_approvals = required;
        (d, created)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: RngSeed::Fixed(0xa9_9e_07),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_reviews_follow_the_approval_rules_of_the_contract(
            required in 1u8..=4,
            steps in prop::collection::vec(step(), 0..20),
        ) {
            let (mut current, created) = fresh(required);
            let mut events = vec![created];
            let mut model = Model {
                required: required as usize,
                status: "PENDING_APPROVAL",
                approvers: BTreeSet::new(),
            };
            for (i, (action, actor)) in steps.into_iter().enumerate() {
                let note = action.requires_note().then_some("because");
                let command = ActionCommand::validate(action, actor, note).expect("valid");
                // What the store would read: the actors of the APPROVED events so far.
                let approvals = Approvals::new(
                    events.iter().filter(|e| e.kind == EventKind::Approved).map(|e| e.actor.clone()),
                );
                let expected = model.expect(action, actor);
                let context = format!("step {i}: {action} by {actor:?} from {}", model.status);
                let at = current.updated_at + chrono::Duration::seconds(1);
                match (current.apply_given(&command, &approvals, Uuid::now_v7(), at), expected) {
                    (Err(Refusal::Conflict { status, action: a }), Expected::Conflict) => {
                        prop_assert_eq!((status, a), (current.status, action), "{}", context);
                    }
                    (Err(Refusal::SelfApproval), Expected::SelfApproval) => {}
                    (Err(Refusal::AlreadyApproved), Expected::AlreadyApproved) => {}
                    (Ok((next, event)), Expected::Moves(to)) => {
                        prop_assert_eq!(next.status.as_str(), to, "{}", context);
                        prop_assert_eq!(event.kind, action.event_kind());
                        prop_assert_eq!(event.from_status, Some(current.status));
                        prop_assert_eq!(event.to_status, next.status);
                        if action == Action::Approve {
                            model.approvers.insert(actor.trim().to_lowercase());
                        }
                        if matches!(action, Action::Approve | Action::Reject) {
                            prop_assert_eq!(next.reviewed_by.as_deref(), Some(actor.trim()));
                            prop_assert_eq!(next.reviewed_at, Some(event.occurred_at));
                        } else {
                            prop_assert_eq!(&next.reviewed_by, &current.reviewed_by);
                        }
                        model.status = to;
                        events.push(event);
                        current = next;
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "{context}: model expects {expected:?}, apply gave {got:?}"
                        )));
                    }
                }
                // Invariants: distinct approvers, never more than required, and APPROVED
                // exactly when the count was reached (before anything moved it on).
                let approved: Vec<&DeploymentEvent> =
                    events.iter().filter(|e| e.kind == EventKind::Approved).collect();
                prop_assert!(approved.len() <= required as usize);
                let distinct: BTreeSet<String> =
                    approved.iter().map(|e| e.actor.to_lowercase()).collect();
                prop_assert_eq!(distinct.len(), approved.len());
                let reached = approved
                    .iter()
                    .filter(|e| e.to_status == Status::Approved)
                    .count();
                prop_assert_eq!(reached, usize::from(approved.len() == required as usize));
            }
        }
    }
}
