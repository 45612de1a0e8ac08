//! `shiplog::store::Store` against real SQLite files.
//!
//! Every test opens its own database file in its own temporary directory, so the tests
//! share nothing and run in parallel. They look only at what the store (or, where the
//! database itself is the subject, a separate plain SQLite connection) shows from outside.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use shiplog::domain::{
    Action, ActionCommand, Deployment, DeploymentRequest, EventKind, NewDeployment,
    ProductionEnvironments, Refusal, Status,
};
use shiplog::store::{
    DeploymentFilter, DeploymentKey, EventFilter, Page, Store, StoreConfig, StoreError,
    StoredEvent, Written,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A database file of its own, in a directory that disappears with the value.
struct TestDb {
    _dir: TempDir,
    path: PathBuf,
}

impl TestDb {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let path = dir.path().join("shiplog.db");
        Self { _dir: dir, path }
    }

    /// Opens a store on this file (creating and migrating it the first time).
    async fn open(&self) -> Store {
        let url = self.path.to_str().expect("the temporary path is UTF-8");
        Store::open(&StoreConfig::new(url))
            .await
            .expect("the store opens on a fresh temporary file")
    }

    /// A plain SQLite connection to the same file, outside the store.
    async fn raw(&self) -> SqliteConnection {
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .busy_timeout(Duration::from_secs(10));
        SqliteConnection::connect_with(&options)
            .await
            .expect("a plain connection to the database file opens")
    }
}

/// A fresh database and a store opened on it.
async fn fresh() -> (TestDb, Store) {
    let db = TestDb::new();
    let store = db.open().await;
    (db, store)
}

fn request(service: &str, environment: &str, requester: &str) -> DeploymentRequest {
    DeploymentRequest {
        service: service.to_owned(),
        environment: environment.to_owned(),
        version: "v1.4.2".to_owned(),
        requester: requester.to_owned(),
        work_refs: vec!["JIRA-101".to_owned(), "PR-77".to_owned()],
        risk: Some("touches the invoice tables".to_owned()),
        idempotency_key: None,
        rollback_plan: "redeploy v1.4.1".to_owned(),
        release_notes: None,
    }
}

fn valid(request: &DeploymentRequest) -> NewDeployment {
    NewDeployment::validate(request, &ProductionEnvironments::default())
        .expect("the test deployment request is valid")
}

/// A valid deployment request for `service` in `environment`, requested by alice.
fn new_deployment(service: &str, environment: &str) -> NewDeployment {
    valid(&request(service, environment, "alice"))
}

/// A valid command; actions that need a note get one.
fn command(action: Action, actor: &str) -> ActionCommand {
    let note = action
        .requires_note()
        .then(|| format!("{action} by {actor}: see the incident channel"));
    ActionCommand::validate(action, actor, note.as_deref()).expect("the test command is valid")
}

fn command_with_note(action: Action, actor: &str, note: &str) -> ActionCommand {
    ActionCommand::validate(action, actor, Some(note)).expect("the test command is valid")
}

/// The actions that take a new deployment to `status`.
fn path_to(status: Status) -> &'static [Action] {
    match status {
        Status::PendingApproval => &[],
        Status::Approved => &[Action::Approve],
        Status::Rejected => &[Action::Reject],
        Status::Started => &[Action::Approve, Action::Start],
        Status::Succeeded => &[Action::Approve, Action::Start, Action::Succeed],
        Status::Failed => &[Action::Approve, Action::Start, Action::Fail],
        Status::RolledBack => &[Action::Approve, Action::Start, Action::RollBack],
        Status::Cancelled => &[Action::Cancel],
    }
}

/// Applies `actions` in order (bob acting); returns what each wrote.
async fn drive(store: &Store, id: Uuid, actions: &[Action]) -> Vec<Written> {
    let mut written = Vec::new();
    for &action in actions {
        let w = store
            .transition(id, &command(action, "bob"))
            .await
            .unwrap_or_else(|e| panic!("{action} of {id} is allowed, but: {e}"));
        written.push(w);
    }
    written
}

/// Creates a deployment and takes it to `status`; returns it as it now is.
async fn deployment_in(store: &Store, status: Status) -> Deployment {
    // A service per status: a STARTED one would keep the others from starting.
    let created = store
        .create(new_deployment(&format!("billing-{status}"), "staging"))
        .await
        .expect("create succeeds");
    let id = created.deployment.id;
    drive(store, id, path_to(status))
        .await
        .pop()
        .map_or(created.deployment, |w| w.deployment)
}

/// One deployment's events, oldest first, as the store returns them.
async fn history(store: &Store, id: Uuid) -> Vec<StoredEvent> {
    store
        .events_of(&[id])
        .await
        .expect("events_of succeeds")
        .remove(&id)
        .unwrap_or_default()
}

/// Every event in the database, oldest first.
async fn all_events(store: &Store) -> Vec<StoredEvent> {
    let page = store
        .event_page(&EventFilter::default(), 100_000, None)
        .await
        .expect("event_page succeeds");
    assert!(!page.has_next);
    page.items
}

/// What a reader can see of one deployment: its row and its history.
async fn snapshot(store: &Store, id: Uuid) -> (Option<Deployment>, Vec<StoredEvent>) {
    let deployment = store.deployment(id).await.expect("deployment succeeds");
    (deployment, history(store, id).await)
}

async fn count_events_raw(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM deployment_events")
        .fetch_one(conn)
        .await
        .expect("counting events succeeds")
}

fn ids(deployments: &[Deployment]) -> Vec<Uuid> {
    deployments.iter().map(|d| d.id).collect()
}

fn seqs(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

fn assert_conflict(result: Result<Written, StoreError>, status: Status, action: Action) {
    match result {
        Err(StoreError::Refused(refusal)) => {
            assert_eq!(refusal, Refusal::Conflict { status, action })
        }
        other => panic!("expected Refused(Conflict {{ {status}, {action} }}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Creating and reading back
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_deployment_is_pending_approval_with_one_created_event() {
    let (_db, store) = fresh().await;
    let mut req = request("billing", "staging", "alice");
    req.risk = None;
    req.work_refs = vec!["JIRA-7".to_owned(), "PR-1".to_owned(), "PR-2".to_owned()];

    let written = store.create(valid(&req)).await.expect("create succeeds");

    let d = &written.deployment;
    assert_eq!(d.service, "billing");
    assert_eq!(d.environment, "staging");
    assert_eq!(d.version, "v1.4.2");
    assert_eq!(d.requester, "alice");
    assert_eq!(d.work_refs, ["JIRA-7", "PR-1", "PR-2"]);
    assert_eq!(d.risk, None);
    assert_eq!(d.rollback_plan, "redeploy v1.4.1");
    assert_eq!(d.status, Status::PendingApproval);
    assert_eq!(d.reviewed_by, None);
    assert_eq!(d.reviewed_at, None);
    assert_eq!(d.created_at, d.updated_at);

    let e = &written.event;
    assert!(e.seq > 0, "seq {} is positive", e.seq);
    assert_eq!(e.event.deployment_id, d.id);
    assert_eq!(e.event.kind, EventKind::Created);
    assert_eq!(e.event.actor, "alice");
    assert_eq!(e.event.note, None);
    assert_eq!(e.event.from_status, None);
    assert_eq!(e.event.to_status, Status::PendingApproval);
    assert_eq!(e.event.service, "billing");
    assert_eq!(e.event.environment, "staging");
    assert_eq!(e.event.occurred_at, d.created_at);

    assert_eq!(
        store.deployment(d.id).await.expect("deployment succeeds"),
        Some(d.clone())
    );
    assert_eq!(history(&store, d.id).await, vec![e.clone()]);
    assert_eq!(all_events(&store).await, vec![e.clone()]);
    assert_eq!(
        store.event(e.event.id).await.expect("event succeeds"),
        Some(e.clone())
    );
}

#[tokio::test]
async fn an_optional_risk_and_many_work_refs_are_stored_as_given() {
    let (_db, store) = fresh().await;
    let mut req = request("search", "production", "carol");
    req.risk = Some("reindexes\nall shards".to_owned());
    req.work_refs = (0..50).map(|i| format!("PR-{i} \"quoted\" é")).collect();

    let written = store.create(valid(&req)).await.expect("create succeeds");

    let stored = store
        .deployment(written.deployment.id)
        .await
        .expect("deployment succeeds")
        .expect("the deployment exists");
    assert_eq!(stored.risk.as_deref(), Some("reindexes\nall shards"));
    assert_eq!(stored.work_refs, req.work_refs);
    assert_eq!(stored, written.deployment);
}

#[tokio::test]
async fn a_deployment_and_its_history_survive_closing_and_reopening_the_store() {
    let db = TestDb::new();
    let store = db.open().await;

    let shipped = store
        .create(new_deployment("billing", "production"))
        .await
        .expect("create succeeds");
    let mut shipped_events = vec![shipped.event.clone()];
    let steps = drive(
        &store,
        shipped.deployment.id,
        &[
            Action::Approve,
            Action::Start,
            Action::Succeed,
            Action::RollBack,
        ],
    )
    .await;
    shipped_events.extend(steps.iter().map(|w| w.event.clone()));
    let shipped_now = steps.last().expect("four steps").deployment.clone();

    let turned_down = store
        .create(new_deployment("search", "staging"))
        .await
        .expect("create succeeds");
    let rejected = store
        .transition(
            turned_down.deployment.id,
            &command_with_note(Action::Reject, "dana", "not during the freeze"),
        )
        .await
        .expect("reject succeeds");

    let everything_before = all_events(&store).await;
    store.close().await.expect("the store closes");

    let reopened = db.open().await;
    assert_eq!(
        reopened
            .deployment(shipped.deployment.id)
            .await
            .expect("deployment succeeds"),
        Some(shipped_now)
    );
    assert_eq!(
        reopened
            .deployment(turned_down.deployment.id)
            .await
            .expect("deployment succeeds"),
        Some(rejected.deployment.clone())
    );
    assert_eq!(
        history(&reopened, shipped.deployment.id).await,
        shipped_events
    );
    assert_eq!(
        history(&reopened, turned_down.deployment.id).await,
        vec![turned_down.event, rejected.event]
    );
    assert_eq!(all_events(&reopened).await, everything_before);
    assert_eq!(
        reopened
            .count_deployments(&DeploymentFilter::default())
            .await
            .expect("count succeeds"),
        2
    );

    // And it keeps working: new writes continue the sequence.
    let later = reopened
        .create(new_deployment("auth", "staging"))
        .await
        .expect("create after reopening succeeds");
    let last_seq = everything_before.last().expect("events exist").seq;
    assert!(later.event.seq > last_seq);
}

#[tokio::test]
async fn reopening_an_existing_database_does_not_migrate_it_again_or_lose_data() {
    let db = TestDb::new();
    let first = db.open().await;
    let created = first
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    first.close().await.expect("the store closes");

    for _ in 0..3 {
        let store = db.open().await;
        assert_eq!(
            store
                .deployment(created.deployment.id)
                .await
                .expect("deployment succeeds"),
            Some(created.deployment.clone())
        );
        store.close().await.expect("the store closes");
    }
}

// ---------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_action_appends_exactly_one_event_of_its_kind_and_updates_the_row_by_the_rules() {
    let (_db, store) = fresh().await;
    let journeys: [&[Action]; 5] = [
        &[
            Action::Approve,
            Action::Start,
            Action::Succeed,
            Action::RollBack,
        ],
        &[
            Action::Approve,
            Action::Start,
            Action::Fail,
            Action::RollBack,
        ],
        &[Action::Approve, Action::Start, Action::RollBack],
        &[Action::Approve, Action::Start, Action::Succeed],
        &[Action::Reject],
    ];

    for journey in journeys {
        let created = store
            .create(new_deployment("billing", "staging"))
            .await
            .expect("create succeeds");
        let id = created.deployment.id;
        let mut before = created.deployment;
        let mut events = vec![created.event];

        for (step, &action) in journey.iter().enumerate() {
            // Alternate actors so that reviewed_by visibly keeps the reviewer's name.
            let actor = if step % 2 == 0 { "bob" } else { "erin" };
            let cmd = command(action, actor);
            let written = store
                .transition(id, &cmd)
                .await
                .unwrap_or_else(|e| panic!("{action} from {} is allowed: {e}", before.status));
            let to = action
                .transition(before.status)
                .expect("the journey follows the table");

            // The event.
            let e = &written.event;
            assert!(e.seq > events.last().expect("not empty").seq);
            assert_eq!(e.event.deployment_id, id);
            assert_eq!(e.event.kind, action.event_kind());
            assert_eq!(e.event.actor, actor);
            assert_eq!(e.event.note.as_deref(), cmd.note());
            assert_eq!(e.event.from_status, Some(before.status));
            assert_eq!(e.event.to_status, to);
            assert_eq!(e.event.service, before.service);
            assert_eq!(e.event.environment, before.environment);
            assert!(e.event.occurred_at >= before.updated_at);

            // The row.
            let mut expected = before.clone();
            expected.status = to;
            expected.updated_at = e.event.occurred_at;
            if action.is_review() {
                expected.reviewed_by = Some(actor.to_owned());
                expected.reviewed_at = Some(e.event.occurred_at);
            }
            if action == Action::Start {
                // No start timeout configured: no deadline.
                expected.started_at = Some(e.event.occurred_at);
            }
            assert_eq!(written.deployment, expected, "after {action}");
            let (row, stored_events) = snapshot(&store, id).await;
            assert_eq!(row, Some(expected.clone()), "stored row after {action}");

            // Exactly one more event, and it is the one returned.
            events.push(e.clone());
            assert_eq!(stored_events, events, "history after {action}");
            assert_eq!(
                store.event(e.event.id).await.expect("event succeeds"),
                Some(e.clone())
            );
            before = expected;
        }

        // The row agrees with its history.
        let last = events.last().expect("not empty");
        assert_eq!(before.updated_at, last.event.occurred_at);
        assert_eq!(before.created_at, events[0].event.occurred_at);
        let review = events
            .iter()
            .find(|e| matches!(e.event.kind, EventKind::Approved | EventKind::Rejected))
            .expect("every journey starts with a review");
        assert_eq!(before.reviewed_at, Some(review.event.occurred_at));
        assert_eq!(before.reviewed_by, Some(review.event.actor.clone()));
        let kinds: Vec<EventKind> = events.iter().map(|e| e.event.kind).collect();
        let mut expected_kinds = vec![EventKind::Created];
        expected_kinds.extend(journey.iter().map(|a| a.event_kind()));
        assert_eq!(kinds, expected_kinds);
    }
}

#[tokio::test]
async fn an_action_on_an_unknown_deployment_is_not_found_and_writes_nothing() {
    let (_db, store) = fresh().await;
    let existing = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    let events_before = all_events(&store).await;

    let unknown = Uuid::now_v7();
    for action in Action::ALL {
        match store.transition(unknown, &command(action, "bob")).await {
            Err(StoreError::NotFound(id)) => assert_eq!(id, unknown),
            other => panic!("{action} of an unknown id: expected NotFound, got {other:?}"),
        }
    }

    assert_eq!(all_events(&store).await, events_before);
    assert_eq!(
        store
            .deployment(unknown)
            .await
            .expect("deployment succeeds"),
        None
    );
    assert_eq!(
        store
            .deployment(existing.deployment.id)
            .await
            .expect("deployment succeeds"),
        Some(existing.deployment)
    );
}

#[tokio::test]
async fn an_action_the_lifecycle_forbids_is_refused_as_a_conflict_and_changes_nothing() {
    let (_db, store) = fresh().await;
    let mut refused = 0;
    for status in Status::ALL {
        let deployment = deployment_in(&store, status).await;
        assert_eq!(deployment.status, status);
        let before = snapshot(&store, deployment.id).await;
        let all_before = all_events(&store).await;

        for action in Action::ALL {
            if action.transition(status).is_some() {
                continue;
            }
            let result = store
                .transition(deployment.id, &command(action, "bob"))
                .await;
            assert_conflict(result, status, action);
            assert_eq!(
                snapshot(&store, deployment.id).await,
                before,
                "{action} from {status}"
            );
            refused += 1;
        }
        assert_eq!(all_events(&store).await, all_before, "from {status}");

        // A refusal leaves the store able to write: an allowed action still works.
        if let Some(&action) = Action::ALL.iter().find(|a| a.transition(status).is_some()) {
            let written = store
                .transition(deployment.id, &command(action, "bob"))
                .await
                .expect("an allowed action after refusals succeeds");
            assert_eq!(
                written.deployment.status,
                action.transition(status).expect("allowed")
            );
        }
    }
    // Sanity: the table allows 10 of the 56 (status, action) pairs; every other was tried.
    assert_eq!(refused, 8 * 7 - 10);
}

#[tokio::test]
async fn a_requester_approving_their_own_deployment_is_refused_and_nothing_is_written() {
    let (_db, store) = fresh().await;
    let created = store
        .create(valid(&request("billing", "production", "Alice")))
        .await
        .expect("create succeeds");
    let id = created.deployment.id;
    let before = snapshot(&store, id).await;

    for actor in ["Alice", "alice", "  ALICE  "] {
        match store.transition(id, &command(Action::Approve, actor)).await {
            Err(StoreError::Refused(Refusal::SelfApproval)) => {}
            other => panic!("approval by {actor:?}: expected SelfApproval, got {other:?}"),
        }
        assert_eq!(snapshot(&store, id).await, before);
    }
    assert_eq!(all_events(&store).await, vec![created.event]);

    // Someone else may approve it.
    let approved = store
        .transition(id, &command(Action::Approve, "bob"))
        .await
        .expect("approval by another person succeeds");
    assert_eq!(approved.deployment.status, Status::Approved);
    assert_eq!(approved.deployment.reviewed_by.as_deref(), Some("bob"));
}

// ---------------------------------------------------------------------------------------
// Atomicity and the append-only history
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_failure_in_the_middle_of_an_action_leaves_neither_a_changed_row_nor_an_orphan_event() {
    let db = TestDb::new();
    let store = db.open().await;
    let created = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    let id = created.deployment.id;

    let mut raw = db.raw().await;
    sqlx::query(
        "CREATE TRIGGER forced_failure BEFORE INSERT ON deployment_events \
         WHEN NEW.note = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'forced failure'); END;",
    )
    .execute(&mut raw)
    .await
    .expect("the trigger is created");

    let before = snapshot(&store, id).await;
    let raw_count_before = count_events_raw(&mut raw).await;

    let result = store
        .transition(id, &command_with_note(Action::Reject, "bob", "boom"))
        .await;
    match result {
        Err(StoreError::Database(e)) => assert!(
            e.to_string().contains("forced failure"),
            "the error names the cause: {e}"
        ),
        other => panic!("expected a database error, got {other:?}"),
    }

    // The status update that ran before the failed insert was rolled back.
    let (status, updated_at, reviewed_by): (String, i64, Option<String>) =
        sqlx::query_as("SELECT status, updated_at, reviewed_by FROM deployments WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&mut raw)
            .await
            .expect("the row is still there");
    assert_eq!(status, "PENDING_APPROVAL");
    assert_eq!(updated_at, created.deployment.updated_at.timestamp_millis());
    assert_eq!(reviewed_by, None);
    assert_eq!(count_events_raw(&mut raw).await, raw_count_before);
    let boom: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployment_events WHERE note = 'boom'")
            .fetch_one(&mut raw)
            .await
            .expect("counting succeeds");
    assert_eq!(boom, 0);
    assert_eq!(snapshot(&store, id).await, before);

    // The store is not left inside a broken transaction: normal actions still work.
    let approved = store
        .transition(id, &command(Action::Approve, "bob"))
        .await
        .expect("an ordinary action after the failure succeeds");
    assert_eq!(approved.deployment.status, Status::Approved);
    let other = store
        .create(new_deployment("search", "staging"))
        .await
        .expect("create after the failure succeeds");
    store
        .transition(
            other.deployment.id,
            &command_with_note(Action::Reject, "bob", "not boom"),
        )
        .await
        .expect("a reject with another note succeeds");
    let events = history(&store, id).await;
    assert_eq!(
        events.iter().map(|e| e.event.kind).collect::<Vec<_>>(),
        [EventKind::Created, EventKind::Approved]
    );
    assert_eq!(count_events_raw(&mut raw).await, raw_count_before + 3);
    raw.close().await.expect("the plain connection closes");
}

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_an_event() {
    let db = TestDb::new();
    let store = db.open().await;
    let created = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    drive(
        &store,
        created.deployment.id,
        &[Action::Approve, Action::Start],
    )
    .await;
    let before = all_events(&store).await;
    let first_seq = before[0].seq;

    let mut raw = db.raw().await;
    let attempts: [(&str, Option<i64>); 6] = [
        ("UPDATE deployment_events SET note = 'edited'", None),
        (
            "UPDATE deployment_events SET kind = 'REJECTED' WHERE seq = ?",
            Some(first_seq),
        ),
        (
            "UPDATE deployment_events SET seq = seq + 1000 WHERE seq = ?",
            Some(first_seq),
        ),
        (
            "DELETE FROM deployment_events WHERE seq = ?",
            Some(first_seq),
        ),
        ("DELETE FROM deployment_events", None),
        ("DELETE FROM deployment_events WHERE kind = 'CREATED'", None),
    ];
    for (sql, seq) in attempts {
        let mut query = sqlx::query(sql);
        if let Some(seq) = seq {
            query = query.bind(seq);
        }
        let err = query
            .execute(&mut raw)
            .await
            .expect_err(&format!("the database refuses {sql:?}"));
        assert!(
            err.to_string().contains("append-only"),
            "{sql:?} fails for the right reason: {err}"
        );
    }

    assert_eq!(count_events_raw(&mut raw).await, before.len() as i64);
    raw.close().await.expect("the plain connection closes");
    assert_eq!(all_events(&store).await, before);
}

#[tokio::test]
async fn the_database_refuses_to_replace_an_event() {
    let db = TestDb::new();
    let store = db.open().await;
    let created = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    let before = all_events(&store).await;

    let mut raw = db.raw().await;
    let replaced = sqlx::query(
        "INSERT OR REPLACE INTO deployment_events \
         (seq, id, deployment_id, service, environment, kind, actor, note, from_status, \
          to_status, occurred_at) \
         SELECT seq, id, deployment_id, service, environment, 'APPROVED', 'mallory', \
                'rewritten', from_status, to_status, occurred_at \
         FROM deployment_events WHERE seq = ?",
    )
    .bind(created.event.seq)
    .execute(&mut raw)
    .await;
    raw.close().await.expect("the plain connection closes");

    assert!(replaced.is_err(), "REPLACE must not rewrite history");
    assert_eq!(all_events(&store).await, before);
}

#[tokio::test]
async fn event_sequence_numbers_increase_strictly_in_commit_order_across_deployments() {
    let (_db, store) = fresh().await;
    let mut committed = Vec::new();

    let a = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create");
    committed.push(a.event.clone());
    let b = store
        .create(new_deployment("search", "production"))
        .await
        .expect("create");
    committed.push(b.event.clone());
    for (id, action) in [
        (a.deployment.id, Action::Approve),
        (b.deployment.id, Action::Reject),
        (a.deployment.id, Action::Start),
    ] {
        let w = store
            .transition(id, &command(action, "bob"))
            .await
            .expect("allowed");
        committed.push(w.event);
    }
    let c = store
        .create(new_deployment("auth", "staging"))
        .await
        .expect("create");
    committed.push(c.event.clone());
    for (id, action) in [
        (a.deployment.id, Action::Fail),
        (c.deployment.id, Action::Approve),
        (a.deployment.id, Action::RollBack),
    ] {
        let w = store
            .transition(id, &command(action, "bob"))
            .await
            .expect("allowed");
        committed.push(w.event);
    }

    let s = seqs(&committed);
    assert!(
        s.windows(2).all(|w| w[0] < w[1]),
        "seqs follow the order of commits: {s:?}"
    );
    assert_eq!(all_events(&store).await, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_get_distinct_sequence_numbers_and_all_land() {
    let (_db, store) = fresh().await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let created = store
                    .create(new_deployment(&format!("svc-{}", i % 4), "staging"))
                    .await?;
                let approved = store
                    .transition(created.deployment.id, &command(Action::Approve, "bob"))
                    .await?;
                Ok::<_, StoreError>([created.event, approved.event])
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        written.extend(
            task.await
                .expect("the task finishes")
                .expect("writes succeed"),
        );
    }

    let mut expected = written.clone();
    expected.sort_by_key(|e| e.seq);
    let distinct: HashSet<i64> = expected.iter().map(|e| e.seq).collect();
    assert_eq!(distinct.len(), 32);
    assert_eq!(all_events(&store).await, expected);
    // Within each deployment, CREATED comes before APPROVED.
    for pair in written.chunks(2) {
        assert!(pair[0].seq < pair[1].seq);
    }
    assert_eq!(
        store
            .count_deployments(&DeploymentFilter {
                statuses: Some(vec![Status::Approved]),
                ..Default::default()
            })
            .await
            .expect("count succeeds"),
        16
    );
}

// ---------------------------------------------------------------------------------------
// Lists: filters and pages
// ---------------------------------------------------------------------------------------

/// A set of deployments across services, environments and statuses.
struct Fleet {
    /// In creation order, as each now is.
    deployments: Vec<Deployment>,
    /// Every event, in commit order.
    events: Vec<StoredEvent>,
}

async fn fleet(store: &Store) -> Fleet {
    let plan: [(&str, &str, Status); 12] = [
        ("billing", "staging", Status::PendingApproval),
        ("billing", "production", Status::Approved),
        ("search", "staging", Status::Started),
        ("auth", "production", Status::Rejected),
        ("billing", "staging", Status::Succeeded),
        ("search", "production", Status::PendingApproval),
        ("auth", "staging", Status::Failed),
        ("billing", "production", Status::RolledBack),
        ("search", "staging", Status::Approved),
        ("billing", "staging", Status::PendingApproval),
        ("auth", "production", Status::Succeeded),
        ("search", "production", Status::Rejected),
    ];
    let mut deployments = Vec::new();
    let mut events = Vec::new();
    for (service, environment, _) in plan {
        let w = store
            .create(new_deployment(service, environment))
            .await
            .expect("create succeeds");
        deployments.push(w.deployment);
        events.push(w.event);
    }
    // Move them along newest first, so commit order differs from creation order.
    for (i, (_, _, status)) in plan.iter().enumerate().rev() {
        for w in drive(store, deployments[i].id, path_to(*status)).await {
            deployments[i] = w.deployment;
            events.push(w.event);
        }
        assert_eq!(deployments[i].status, *status);
    }
    Fleet {
        deployments,
        events,
    }
}

/// The expected answer: the matching deployments, newest first.
fn expected_page(all: &[Deployment], filter: &DeploymentFilter) -> Vec<Deployment> {
    all.iter()
        .rev()
        .filter(|d| filter.service.as_ref().is_none_or(|s| &d.service == s))
        .filter(|d| {
            filter
                .environment
                .as_ref()
                .is_none_or(|e| &d.environment == e)
        })
        .filter(|d| {
            filter
                .statuses
                .as_ref()
                .is_none_or(|s| s.contains(&d.status))
        })
        .cloned()
        .collect()
}

fn deployment_filters() -> Vec<(DeploymentFilter, usize)> {
    let f = |service: Option<&str>, environment: Option<&str>, statuses: Option<&[Status]>| {
        DeploymentFilter {
            service: service.map(str::to_owned),
            environment: environment.map(str::to_owned),
            statuses: statuses.map(<[Status]>::to_vec),
        }
    };
    use Status::*;
    vec![
        (f(None, None, None), 12),
        (f(Some("billing"), None, None), 5),
        (f(Some("search"), None, None), 4),
        (f(Some("nobody"), None, None), 0),
        (f(None, Some("production"), None), 6),
        (f(None, Some("staging"), None), 6),
        (f(None, None, Some(&[PendingApproval])), 3),
        (f(None, None, Some(&[Approved])), 2),
        (f(None, None, Some(&[Started, Succeeded])), 3),
        (f(None, None, Some(&[Rejected, Failed, RolledBack])), 4),
        (f(None, None, Some(&Status::ALL)), 12),
        (f(None, None, Some(&[])), 0),
        (f(Some("billing"), Some("staging"), None), 3),
        (f(Some("billing"), None, Some(&[PendingApproval])), 2),
        (f(None, Some("production"), Some(&[Succeeded, Rejected])), 3),
        (
            f(Some("search"), Some("staging"), Some(&[Approved, Started])),
            2,
        ),
        (f(Some("auth"), Some("staging"), Some(&[Succeeded])), 0),
        (f(Some("billing"), Some("staging"), Some(&[])), 0),
    ]
}

#[tokio::test]
async fn each_deployment_filter_returns_exactly_the_matching_deployments_newest_first() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;

    for (filter, expected_len) in deployment_filters() {
        let expected = expected_page(&fleet.deployments, &filter);
        assert_eq!(expected.len(), expected_len, "test oracle for {filter:?}");

        let page = store
            .deployment_page(&filter, 100, None)
            .await
            .expect("deployment_page succeeds");
        assert_eq!(ids(&page.items), ids(&expected), "ids for {filter:?}");
        assert_eq!(page.items, expected, "deployments for {filter:?}");
        assert!(!page.has_next, "one page holds everything for {filter:?}");
        assert_eq!(
            store
                .count_deployments(&filter)
                .await
                .expect("count succeeds"),
            expected_len as u64,
            "count for {filter:?}"
        );
    }
}

#[tokio::test]
async fn walking_small_pages_visits_every_matching_deployment_once_in_order() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;

    for (filter, _) in deployment_filters() {
        let expected = ids(&expected_page(&fleet.deployments, &filter));
        for first in [1_u64, 2, 3, 5, 6, 12, 13] {
            let pages = walk(&store, &filter, first).await;
            let walked: Vec<Uuid> = pages.iter().flat_map(|p| ids(&p.items)).collect();
            let context = format!("{filter:?} in pages of {first}");
            assert_eq!(walked, expected, "{context}");
            let distinct: HashSet<&Uuid> = walked.iter().collect();
            assert_eq!(distinct.len(), walked.len(), "no duplicates: {context}");

            let (last, rest) = pages.split_last().expect("at least one page");
            assert!(!last.has_next, "the last page says so: {context}");
            for page in rest {
                assert!(page.has_next, "earlier pages say more follow: {context}");
                assert_eq!(
                    page.items.len() as u64,
                    first,
                    "earlier pages are full: {context}"
                );
            }
            assert!(last.items.len() as u64 <= first);
            // No trailing empty page unless there is nothing at all.
            assert!(!last.items.is_empty() || expected.is_empty(), "{context}");
            assert_eq!(
                pages.len(),
                expected.len().div_ceil(first as usize).max(1),
                "{context}"
            );
        }
    }
}

/// Every page of a filter, following `has_next` from the start.
async fn walk(store: &Store, filter: &DeploymentFilter, first: u64) -> Vec<Page<Deployment>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .deployment_page(filter, first, after)
            .await
            .expect("deployment_page succeeds");
        after = page.items.last().map(DeploymentKey::of);
        let more = page.has_next;
        pages.push(page);
        if !more {
            return pages;
        }
        assert!(pages.len() < 1_000, "the walk ends");
    }
}

#[tokio::test]
async fn deployments_created_between_page_fetches_neither_skip_nor_repeat_older_ones() {
    let (_db, store) = fresh().await;
    // Every deployment so far, in creation order (all of them billing).
    let mut existing = Vec::new();
    for i in 0..7 {
        let env = if i % 2 == 0 { "staging" } else { "production" };
        existing.push(
            store
                .create(new_deployment("billing", env))
                .await
                .expect("create succeeds")
                .deployment
                .id,
        );
    }
    let filters = [
        DeploymentFilter::default(),
        DeploymentFilter {
            service: Some("billing".to_owned()),
            ..Default::default()
        },
    ];

    for filter in filters {
        let expected: Vec<Uuid> = existing.iter().rev().copied().collect();
        let mut walked = Vec::new();
        let mut newer = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = store
                .deployment_page(&filter, 2, after)
                .await
                .expect("deployment_page succeeds");
            pages += 1;
            walked.extend(ids(&page.items));
            after = page.items.last().map(DeploymentKey::of);
            // Meanwhile, someone creates a new matching deployment.
            let created = store
                .create(new_deployment("billing", "staging"))
                .await
                .expect("create succeeds");
            newer.push(created.deployment.id);
            if !page.has_next {
                break;
            }
            assert!(pages < 100, "the walk ends");
        }
        assert_eq!(walked, expected, "{filter:?}");
        assert_eq!(pages, expected.len().div_ceil(2), "{filter:?}");

        // A new walk starts with the newest ones.
        let head = store
            .deployment_page(&filter, newer.len() as u64, None)
            .await
            .expect("deployment_page succeeds");
        let newest_first: Vec<Uuid> = newer.iter().rev().copied().collect();
        assert_eq!(ids(&head.items), newest_first, "{filter:?}");
        assert!(head.has_next);
        existing.extend(newer);
    }
}

#[tokio::test]
async fn a_status_change_does_not_move_a_deployment_in_the_list() {
    let (_db, store) = fresh().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            store
                .create(new_deployment("billing", "staging"))
                .await
                .expect("create succeeds")
                .deployment,
        );
    }
    let expected: Vec<Uuid> = created.iter().rev().map(|d| d.id).collect();

    let first = store
        .deployment_page(&DeploymentFilter::default(), 2, None)
        .await
        .expect("deployment_page succeeds");
    // The oldest ones change between fetches; the walk still sees each once.
    drive(&store, created[0].id, &[Action::Approve, Action::Start]).await;
    drive(&store, created[1].id, &[Action::Reject]).await;
    let mut walked = ids(&first.items);
    let mut after = first.items.last().map(DeploymentKey::of);
    loop {
        let page = store
            .deployment_page(&DeploymentFilter::default(), 2, after)
            .await
            .expect("deployment_page succeeds");
        walked.extend(ids(&page.items));
        after = page.items.last().map(DeploymentKey::of);
        if !page.has_next {
            break;
        }
    }
    assert_eq!(walked, expected);
}

// ---------------------------------------------------------------------------------------
// The event feed and batch loads
// ---------------------------------------------------------------------------------------

fn event_matches(e: &StoredEvent, filter: &EventFilter) -> bool {
    filter
        .deployment_id
        .is_none_or(|id| e.event.deployment_id == id)
        && filter
            .service
            .as_ref()
            .is_none_or(|s| &e.event.service == s)
        && filter
            .environment
            .as_ref()
            .is_none_or(|v| &e.event.environment == v)
        && filter
            .kinds
            .as_ref()
            .is_none_or(|k| k.contains(&e.event.kind))
}

#[tokio::test]
async fn the_event_feed_filters_the_history_oldest_first_after_a_sequence_number() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;
    let mut all = fleet.events.clone();
    all.sort_by_key(|e| e.seq);
    assert_eq!(seqs(&all), seqs(&fleet.events), "commit order is seq order");
    assert_eq!(all_events(&store).await, all);

    let target = fleet.deployments[7].id; // billing/production, rolled back
    let filters: Vec<(EventFilter, usize)> = vec![
        (EventFilter::default(), all.len()),
        (
            EventFilter {
                deployment_id: Some(target),
                ..Default::default()
            },
            4,
        ),
        (
            EventFilter {
                deployment_id: Some(Uuid::now_v7()),
                ..Default::default()
            },
            0,
        ),
        (
            EventFilter {
                service: Some("billing".to_owned()),
                ..Default::default()
            },
            5 + 1 + 3 + 3,
        ),
        (
            EventFilter {
                environment: Some("staging".to_owned()),
                ..Default::default()
            },
            6 + 2 + 3 + 3 + 1,
        ),
        (
            EventFilter {
                kinds: Some(vec![EventKind::Approved, EventKind::Rejected]),
                ..Default::default()
            },
            9,
        ),
        (
            EventFilter {
                kinds: Some(vec![EventKind::Created]),
                ..Default::default()
            },
            12,
        ),
        (
            EventFilter {
                kinds: Some(vec![]),
                ..Default::default()
            },
            0,
        ),
        (
            EventFilter {
                service: Some("auth".to_owned()),
                environment: Some("production".to_owned()),
                kinds: Some(vec![EventKind::Succeeded, EventKind::Rejected]),
                ..Default::default()
            },
            2,
        ),
        (
            EventFilter {
                deployment_id: Some(target),
                kinds: Some(vec![EventKind::Started, EventKind::RolledBack]),
                ..Default::default()
            },
            2,
        ),
        (
            EventFilter {
                deployment_id: Some(target),
                service: Some("search".to_owned()),
                ..Default::default()
            },
            0,
        ),
    ];

    for (filter, expected_len) in filters {
        let expected: Vec<StoredEvent> = all
            .iter()
            .filter(|e| event_matches(e, &filter))
            .cloned()
            .collect();
        assert_eq!(expected.len(), expected_len, "test oracle for {filter:?}");

        let page = store
            .event_page(&filter, 1_000, None)
            .await
            .expect("event_page succeeds");
        assert_eq!(page.items, expected, "{filter:?}");
        assert!(!page.has_next);

        // After a sequence number: only later events.
        for after in [
            0,
            all[5].seq,
            all[all.len() / 2].seq,
            all[all.len() - 1].seq,
        ] {
            let later: Vec<StoredEvent> =
                expected.iter().filter(|e| e.seq > after).cloned().collect();
            let page = store
                .event_page(&filter, 1_000, Some(after))
                .await
                .expect("event_page succeeds");
            assert_eq!(page.items, later, "{filter:?} after {after}");
        }

        // Small pages, following the last seq, add up to the whole feed.
        for first in [1_u64, 3, 4] {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .event_page(&filter, first, after)
                    .await
                    .expect("event_page succeeds");
                assert!(page.items.len() as u64 <= first);
                after = page.items.last().map(|e| e.seq).or(after);
                walked.extend(page.items);
                if !page.has_next {
                    break;
                }
                assert!(walked.len() <= all.len(), "the walk ends");
            }
            assert_eq!(walked, expected, "{filter:?} in pages of {first}");
        }
    }
}

#[tokio::test]
async fn events_of_several_deployments_come_back_each_oldest_first_in_one_call() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;
    let wanted = [
        fleet.deployments[0].id,
        fleet.deployments[4].id,
        fleet.deployments[7].id,
        fleet.deployments[11].id,
    ];
    let unknown = Uuid::now_v7();
    let mut asked = wanted.to_vec();
    asked.push(unknown);
    asked.push(wanted[1]); // a repeated id changes nothing

    let before = store.read_statements();
    let by_deployment = store.events_of(&asked).await.expect("events_of succeeds");
    assert_eq!(store.read_statements(), before + 1);

    let keys: HashSet<Uuid> = by_deployment.keys().copied().collect();
    assert_eq!(keys, wanted.iter().copied().collect::<HashSet<_>>());
    for id in wanted {
        let expected: Vec<StoredEvent> = fleet
            .events
            .iter()
            .filter(|e| e.event.deployment_id == id)
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(by_deployment[&id], expected, "events of {id}");
        assert!(by_deployment[&id].windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(by_deployment[&id][0].event.kind, EventKind::Created);
    }

    assert!(store
        .events_of(&[])
        .await
        .expect("events_of succeeds")
        .is_empty());
    assert!(store
        .events_of(&[unknown])
        .await
        .expect("events_of succeeds")
        .is_empty());
}

#[tokio::test]
async fn deployments_by_ids_returns_the_known_ones_and_ignores_unknown_ids() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;
    let known = [
        fleet.deployments[1].clone(),
        fleet.deployments[3].clone(),
        fleet.deployments[10].clone(),
    ];
    let mut asked: Vec<Uuid> = ids(&known);
    asked.insert(1, Uuid::now_v7());
    asked.push(Uuid::now_v7());

    let before = store.read_statements();
    let found = store
        .deployments_by_ids(&asked)
        .await
        .expect("deployments_by_ids succeeds");
    assert_eq!(store.read_statements(), before + 1);
    let expected: HashMap<Uuid, Deployment> = known.into_iter().map(|d| (d.id, d)).collect();
    assert_eq!(found, expected);

    assert!(store
        .deployments_by_ids(&[])
        .await
        .expect("deployments_by_ids succeeds")
        .is_empty());
    assert!(store
        .deployments_by_ids(&[Uuid::now_v7()])
        .await
        .expect("deployments_by_ids succeeds")
        .is_empty());
}

#[tokio::test]
async fn an_event_is_found_by_its_id_and_its_sequence_number() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;

    for e in &fleet.events {
        assert_eq!(
            store.event(e.event.id).await.expect("event succeeds"),
            Some(e.clone())
        );
        assert!(store
            .event_exists(e.seq)
            .await
            .expect("event_exists succeeds"));
    }
    assert_eq!(
        store.event(Uuid::now_v7()).await.expect("event succeeds"),
        None
    );
    let max = fleet
        .events
        .iter()
        .map(|e| e.seq)
        .max()
        .expect("events exist");
    assert!(!store
        .event_exists(max + 1)
        .await
        .expect("event_exists succeeds"));
    assert!(!store.event_exists(0).await.expect("event_exists succeeds"));
}

#[tokio::test]
async fn loading_the_events_of_one_or_fifty_deployments_takes_one_statement() {
    let (_db, store) = fresh().await;
    let mut created = Vec::new();
    for i in 0..50 {
        let w = store
            .create(new_deployment(&format!("svc-{}", i % 5), "staging"))
            .await
            .expect("create succeeds");
        created.push(w.deployment.id);
    }
    drive(&store, created[0], &[Action::Approve]).await;

    let before = store.read_statements();
    let one = store
        .events_of(&created[..1])
        .await
        .expect("events_of succeeds");
    assert_eq!(store.read_statements(), before + 1, "one id, one statement");
    assert_eq!(one[&created[0]].len(), 2);

    let before = store.read_statements();
    let fifty = store.events_of(&created).await.expect("events_of succeeds");
    assert_eq!(
        store.read_statements(),
        before + 1,
        "fifty ids, one statement"
    );
    assert_eq!(fifty.len(), 50);
    assert!(fifty.values().all(|events| !events.is_empty()));

    let before = store.read_statements();
    let found = store
        .deployments_by_ids(&created)
        .await
        .expect("deployments_by_ids succeeds");
    assert_eq!(
        store.read_statements(),
        before + 1,
        "fifty deployments, one statement"
    );
    assert_eq!(found.len(), 50);
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_concurrent_identical_approvals_exactly_one_succeeds() {
    let (_db, store) = fresh().await;
    let created = store
        .create(new_deployment("billing", "production"))
        .await
        .expect("create succeeds");
    let id = created.deployment.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.transition(id, &command(Action::Approve, "bob")).await
            })
        })
        .collect();
    let mut wins = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await.expect("the task finishes") {
            Ok(written) => wins.push(written),
            Err(StoreError::Refused(Refusal::Conflict {
                status: Status::Approved,
                action: Action::Approve,
            })) => conflicts += 1,
            Err(other) => panic!("expected Ok or Conflict, got {other:?}"),
        }
    }

    assert_eq!(wins.len(), 1, "exactly one approval wins");
    assert_eq!(conflicts, 19);
    let events = history(&store, id).await;
    assert_eq!(
        events.iter().map(|e| e.event.kind).collect::<Vec<_>>(),
        [EventKind::Created, EventKind::Approved]
    );
    assert_eq!(events[1], wins[0].event);
    assert_eq!(
        store.deployment(id).await.expect("deployment succeeds"),
        Some(wins[0].deployment.clone())
    );
    // The writer is healthy after the storm.
    drive(&store, id, &[Action::Start]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_approvals_and_rejections_exactly_one_review_wins() {
    let (_db, store) = fresh().await;
    let created = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    let id = created.deployment.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            let action = if i % 2 == 0 {
                Action::Approve
            } else {
                Action::Reject
            };
            let cmd = command(action, &format!("reviewer-{i}"));
            tokio::spawn(async move {
                barrier.wait().await;
                store.transition(id, &cmd).await
            })
        })
        .collect();
    let mut wins = Vec::new();
    for task in tasks {
        match task.await.expect("the task finishes") {
            Ok(written) => wins.push(written),
            Err(StoreError::Refused(Refusal::Conflict { status, .. })) => {
                assert!(matches!(status, Status::Approved | Status::Rejected))
            }
            Err(other) => panic!("expected Ok or Conflict, got {other:?}"),
        }
    }

    assert_eq!(wins.len(), 1, "exactly one review wins");
    let winner = &wins[0];
    let events = history(&store, id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], winner.event);
    let row = store
        .deployment(id)
        .await
        .expect("deployment succeeds")
        .expect("exists");
    assert_eq!(row, winner.deployment);
    assert_eq!(row.reviewed_by, Some(winner.event.event.actor.clone()));
}

// ---------------------------------------------------------------------------------------
// Following the history live
// ---------------------------------------------------------------------------------------

/// The next event of a subscription, failing the test if none comes in time.
async fn next_event<S>(stream: &mut S) -> StoredEvent
where
    S: Stream<Item = Result<StoredEvent, StoreError>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives in time")
        .expect("the subscription goes on")
        .expect("the event is read")
}

async fn next_events<S>(stream: &mut S, n: usize) -> Vec<StoredEvent>
where
    S: Stream<Item = Result<StoredEvent, StoreError>> + Unpin,
{
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await);
    }
    events
}

/// Nothing more arrives for a short while.
async fn assert_quiet<S>(stream: &mut S)
where
    S: Stream<Item = Result<StoredEvent, StoreError>> + Unpin,
{
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("expected no more events, got {item:?}");
    }
}

#[tokio::test]
async fn last_seq_is_zero_on_an_empty_database_and_then_the_latest_committed_event() {
    let (_db, store) = fresh().await;
    assert_eq!(store.last_seq().await.expect("last_seq succeeds"), 0);
    let created = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    assert_eq!(
        store.last_seq().await.expect("last_seq succeeds"),
        created.event.seq
    );
    let approved = drive(&store, created.deployment.id, &[Action::Approve]).await;
    assert_eq!(
        store.last_seq().await.expect("last_seq succeeds"),
        approved[0].event.seq
    );
}

#[tokio::test]
async fn a_subscriber_without_a_sequence_number_sees_only_events_committed_after_it_subscribed() {
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;

    let mut everything = Box::pin(
        store
            .follow(EventFilter::default(), None)
            .await
            .expect("follow succeeds"),
    );
    let mut approvals = Box::pin(
        store
            .follow(
                EventFilter {
                    kinds: Some(vec![EventKind::Approved]),
                    ..Default::default()
                },
                None,
            )
            .await
            .expect("follow succeeds"),
    );

    let created = store
        .create(new_deployment("auth", "staging"))
        .await
        .expect("create succeeds");
    let approved = drive(&store, created.deployment.id, &[Action::Approve]).await;
    let started = drive(&store, fleet.deployments[1].id, &[Action::Start]).await;

    assert_eq!(
        next_events(&mut everything, 3).await,
        vec![
            created.event,
            approved[0].event.clone(),
            started[0].event.clone()
        ]
    );
    assert_eq!(next_event(&mut approvals).await, approved[0].event);
    assert_quiet(&mut everything).await;
    assert_quiet(&mut approvals).await;
}

#[tokio::test]
async fn a_subscriber_from_a_sequence_number_gets_the_matching_history_then_live_events_once_each()
{
    let (_db, store) = fresh().await;
    let fleet = fleet(&store).await;
    let filter = EventFilter {
        service: Some("billing".to_owned()),
        ..Default::default()
    };
    let after = fleet.events[3].seq;
    let mut stream = Box::pin(
        store
            .follow(filter.clone(), Some(after))
            .await
            .expect("follow succeeds"),
    );

    // Written after subscribing but before the replay runs: seen once, by the replay or live.
    for service in ["billing", "search", "billing"] {
        store
            .create(new_deployment(service, "staging"))
            .await
            .expect("create succeeds");
    }
    let history: Vec<StoredEvent> = all_events(&store)
        .await
        .into_iter()
        .filter(|e| e.seq > after && event_matches(e, &filter))
        .collect();
    assert!(history.len() > 3);
    assert_eq!(next_events(&mut stream, history.len()).await, history);

    // Then live events, matching ones only.
    let billing = store
        .create(new_deployment("billing", "production"))
        .await
        .expect("create succeeds");
    store
        .create(new_deployment("search", "production"))
        .await
        .expect("create succeeds");
    let approved = drive(&store, billing.deployment.id, &[Action::Approve]).await;
    assert_eq!(
        next_events(&mut stream, 2).await,
        vec![billing.event, approved[0].event.clone()]
    );
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_see_concurrent_writes_once_each_in_commit_order() {
    let (_db, store) = fresh().await;
    let mut stream = Box::pin(
        store
            .follow(EventFilter::default(), None)
            .await
            .expect("follow succeeds"),
    );

    let writers: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let created = store
                    .create(new_deployment(&format!("svc-{}", i % 3), "staging"))
                    .await?;
                store
                    .transition(created.deployment.id, &command(Action::Approve, "bob"))
                    .await
            })
        })
        .collect();
    let seen = next_events(&mut stream, 40).await;
    for writer in writers {
        writer
            .await
            .expect("the writer finishes")
            .expect("writes succeed");
    }

    assert_eq!(seen, all_events(&store).await);
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_quiet(&mut stream).await;
}

#[tokio::test]
async fn a_subscriber_that_falls_far_behind_still_gets_every_matching_event_once_in_order() {
    let db = TestDb::new();
    let url = db.path.to_str().expect("the temporary path is UTF-8");
    let config = StoreConfig {
        live_buffer: 16,
        ..StoreConfig::new(url)
    };
    let store = Store::open(&config).await.expect("the store opens");
    let filter = EventFilter {
        service: Some("billing".to_owned()),
        ..Default::default()
    };
    let mut stream = Box::pin(
        store
            .follow(filter.clone(), None)
            .await
            .expect("follow succeeds"),
    );

    // Keeping up at first.
    let first = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    assert_eq!(next_event(&mut stream).await, first.event);

    // Then many more events than the live buffer holds, while the subscriber reads nothing.
    let mut written = Vec::new();
    for i in 0..120 {
        let service = if i % 3 == 0 { "search" } else { "billing" };
        let created = store
            .create(new_deployment(service, "staging"))
            .await
            .expect("create succeeds");
        written.push(created.event);
    }
    let expected: Vec<StoredEvent> = written
        .into_iter()
        .filter(|e| event_matches(e, &filter))
        .collect();
    assert_eq!(expected.len(), 80);
    assert_eq!(next_events(&mut stream, expected.len()).await, expected);

    // And it is live again afterwards.
    let one_more = store
        .create(new_deployment("billing", "staging"))
        .await
        .expect("create succeeds");
    assert_eq!(next_event(&mut stream).await, one_more.event);
    assert_quiet(&mut stream).await;
}

#[tokio::test]
async fn a_write_whose_caller_gives_up_is_still_published_to_subscribers() {
    let (_db, store) = fresh().await;
    let live = store
        .follow(EventFilter::default(), None)
        .await
        .expect("subscribe");
    futures_util::pin_mut!(live);

    // Callers that stop waiting at every point of a write: before it starts, between
    // its commit and its publication, after it is done.
    for i in 0..150u64 {
        let write = store.create(new_deployment(&format!("svc-{i}"), "staging"));
        let _ = tokio::time::timeout(Duration::from_micros(i * 30), write).await;
    }
    // Give writes whose callers left a moment to finish on their own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let committed = all_events(&store).await;
    assert!(!committed.is_empty());

    let mut received = Vec::new();
    while received.len() < committed.len() {
        let next = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .expect("every committed event arrives")
            .expect("the stream goes on")
            .expect("no error");
        received.push(next);
    }
    assert_eq!(seqs(&received), seqs(&committed));
}

#[tokio::test]
async fn a_write_that_fails_inside_a_group_commit_rolls_back_alone() {
    let db = TestDb::new();
    let store = db.open().await;
    let mut raw = db.raw().await;
    sqlx::query(
        "CREATE TRIGGER forced_failure BEFORE INSERT ON deployment_events \
         WHEN NEW.note = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'forced failure'); END;",
    )
    .execute(&mut raw)
    .await
    .expect("the trigger is created");
    let mut pending = Vec::new();
    for i in 0..20 {
        let d = store
            .create(new_deployment(&format!("svc-{i}"), "staging"))
            .await
            .expect("create");
        pending.push(d.deployment.id);
    }

    // Sent together, so they queue and commit in the same groups: every other
    // rejection fails in the database, the rest must land.
    let writes: Vec<_> = pending
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, id) = (store.clone(), *id);
            let note = if i % 2 == 0 { "boom" } else { "not shipping" };
            tokio::spawn(async move {
                store
                    .transition(id, &command_with_note(Action::Reject, "bob", note))
                    .await
            })
        })
        .collect();
    for (i, write) in writes.into_iter().enumerate() {
        let result = write.await.expect("task");
        let (deployment, events) = snapshot(&store, pending[i]).await;
        let deployment = deployment.expect("the deployment exists");
        if i % 2 == 0 {
            assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
            assert_eq!(deployment.status, Status::PendingApproval);
            assert_eq!(events.len(), 1, "no orphan event");
        } else {
            let written = result.expect("the other writes of the group land");
            assert_eq!(deployment.status, Status::Rejected);
            assert_eq!(events.len(), 2);
            assert_eq!(events[1].seq, written.event.seq);
        }
    }
    // Sequence numbers stay gapless: failed writes took none.
    let all = seqs(&all_events(&store).await);
    assert_eq!(all, (1..=all.len() as i64).collect::<Vec<_>>());
}

/// The writer and the readers are separate connections, so an in-memory database would be
/// a different database for each: it is refused with a reason, not half-served.
#[tokio::test]
async fn an_in_memory_database_is_refused_with_a_reason() {
    for url in ["sqlite::memory:", ":memory:"] {
        let err = match Store::open(&StoreConfig::new(url)).await {
            Ok(_) => panic!("{url} was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("in-memory database is not supported"),
            "{url}: {err}"
        );
    }
}

/// A URL of another engine is refused by its scheme (not taken for a file name), and
/// the rest of the URL (which may hold a password) is not repeated.
#[tokio::test]
async fn a_url_of_another_engine_is_refused_by_its_scheme() {
    let url = "mysql://admin:hunter2@127.0.0.1:1/shiplog";
    let err = match Store::open(&StoreConfig::new(url)).await {
        Ok(_) => panic!("{url} was accepted"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("mysql:// databases are not supported"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "no password in the error: {err}");
}

/// Each statement a deployment write runs is one step down an index: no table scan, and
/// an approval's count reads its deployment's events, not every APPROVED event there is.
#[tokio::test]
async fn every_write_statement_is_one_step_down_an_index() {
    use shiplog::store::statements as sql;
    let (db, _store) = fresh().await;
    let mut conn = db.raw().await;
    let statements = [
        (
            "DEPLOYMENT",
            &sql::DEPLOYMENT,
            "sqlite_autoindex_deployments_1",
        ),
        (
            "UPDATE_STATUS",
            &sql::UPDATE_STATUS,
            "sqlite_autoindex_deployments_1",
        ),
        (
            "APPROVERS",
            &sql::APPROVERS,
            "deployment_events_by_deployment",
        ),
        (
            "OTHER_STARTED",
            &sql::OTHER_STARTED,
            "deployments_by_service_environment_status",
        ),
        (
            "NEWER_SUCCEEDED",
            &sql::NEWER_SUCCEEDED,
            "deployments_by_service_environment_status",
        ),
        (
            "ENVIRONMENT",
            &sql::ENVIRONMENT,
            "sqlite_autoindex_environments_1",
        ),
        (
            "START_TIMEOUT",
            &sql::START_TIMEOUT,
            "sqlite_autoindex_environments_1",
        ),
        (
            "FREEZE_WINDOWS_OF",
            &sql::FREEZE_WINDOWS_OF,
            "freeze_windows_in_force",
        ),
        (
            "TARGET",
            &sql::TARGET,
            "sqlite_autoindex_deployment_targets_1",
        ),
    ];
    for (name, statement, index) in statements {
        let plan = crate::helpers::query_plan(&mut conn, statement.sqlite()).await;
        assert!(plan.contains(index), "{name} uses {index}: {plan}");
        assert!(!plan.contains("SCAN"), "{name} scans nothing: {plan}");
    }
    conn.close().await.expect("close");
}
