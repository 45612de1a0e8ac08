//! Upgrading a database written by version 1: the v2 migration rebuilds both tables, and
//! everything stored before must come through unchanged, with the same guarantees after.

use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

use crate::helpers::{TestApp, TestDb};

const DEPLOYMENT_A: &str = "0193a1b2-0000-7000-8000-000000000001";
const DEPLOYMENT_B: &str = "0193a1b2-0000-7000-8000-000000000002";
const CANCEL_B: &str =
    "UPDATE deployments SET status = 'CANCELLED' WHERE id = '0193a1b2-0000-7000-8000-000000000002'";
const STATUS_B: &str =
    "SELECT status FROM deployments WHERE id = '0193a1b2-0000-7000-8000-000000000002'";

/// A database at the v1 schema (the first migration only), holding two deployments and
/// their histories as version 1 wrote them.
async fn v1_database(db: &TestDb) {
    let conn = db.connect().await;
    Migrator::up(&conn, Some(1))
        .await
        .expect("the v1 migration");
    conn.execute_unprepared(&format!(
        r#"
        INSERT INTO deployments (id, service, environment, version, requester, work_refs, risk,
            rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key)
        VALUES
          ('{DEPLOYMENT_A}', 'billing', 'staging', 'v1', 'alice', '["JIRA-1"]', NULL,
           'redeploy v0', 'SUCCEEDED', 'bob', 1700000001000, 1700000000000, 1700000003000, 'key-a'),
          ('{DEPLOYMENT_B}', 'billing', 'production', 'v2', 'alice', '["JIRA-2"]', 'low',
           'redeploy v1', 'PENDING_APPROVAL', NULL, NULL, 1700000004000, 1700000004000, NULL);
        INSERT INTO deployment_events (seq, id, deployment_id, service, environment, kind, actor,
            note, from_status, to_status, occurred_at)
        VALUES
          (1, '0193a1b2-0000-7000-8000-0000000000e1', '{DEPLOYMENT_A}', 'billing', 'staging',
           'CREATED', 'alice', NULL, NULL, 'PENDING_APPROVAL', 1700000000000),
          (2, '0193a1b2-0000-7000-8000-0000000000e2', '{DEPLOYMENT_A}', 'billing', 'staging',
           'APPROVED', 'bob', 'ok', 'PENDING_APPROVAL', 'APPROVED', 1700000001000),
          (3, '0193a1b2-0000-7000-8000-0000000000e3', '{DEPLOYMENT_A}', 'billing', 'staging',
           'STARTED', 'bot', NULL, 'APPROVED', 'STARTED', 1700000002000),
          (4, '0193a1b2-0000-7000-8000-0000000000e4', '{DEPLOYMENT_A}', 'billing', 'staging',
           'SUCCEEDED', 'bot', NULL, 'STARTED', 'SUCCEEDED', 1700000003000),
          (6, '0193a1b2-0000-7000-8000-0000000000e6', '{DEPLOYMENT_B}', 'billing', 'production',
           'CREATED', 'alice', NULL, NULL, 'PENDING_APPROVAL', 1700000004000);
        "#
    ))
    .await
    .expect("v1 rows");
    conn.close().await.expect("close");
}

async fn raw(db: &TestDb) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(db.path())
        .foreign_keys(true);
    SqliteConnection::connect_with(&options)
        .await
        .expect("a raw connection")
}

#[tokio::test]
async fn a_v1_database_keeps_every_deployment_and_event_through_the_upgrade() {
    let db = TestDb::sqlite();
    v1_database(&db).await;
    let app = TestApp::start(&db, &["production"]).await;

    let data = app
        .ok(
            r#"{ deployments { totalCount nodes { id service environment version status reviewedBy
                 events { kind actor note fromStatus toStatus occurredAt cursor } } } }"#,
            json!({}),
        )
        .await;
    let nodes = data["deployments"]["nodes"].as_array().expect("nodes");
    assert_eq!(data["deployments"]["totalCount"], 2);
    assert_eq!(nodes[0]["id"], DEPLOYMENT_B, "newest first");
    assert_eq!(nodes[1]["id"], DEPLOYMENT_A);
    assert_eq!(nodes[1]["status"], "SUCCEEDED");
    assert_eq!(nodes[1]["reviewedBy"], "bob");
    let kinds: Vec<&str> = nodes[1]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["CREATED", "APPROVED", "STARTED", "SUCCEEDED"]);
    assert_eq!(nodes[1]["events"][1]["note"], "ok");
    assert_eq!(
        nodes[1]["events"][3]["occurredAt"],
        "2023-11-14T22:13:23.000Z"
    );

    // A v1 idempotency key still finds its deployment.
    let retry = app
        .ok(
            crate::helpers::CREATE,
            json!({ "input": {
                "service": "billing", "environment": "staging", "version": "v1",
                "requester": "alice", "workRefs": ["JIRA-1"], "rollbackPlan": "redeploy v0",
                "idempotencyKey": "key-a" } }),
        )
        .await;
    assert_eq!(retry["createDeployment"]["deployment"]["id"], DEPLOYMENT_A);

    // New events continue the sequence after the highest one ever written (6, not 4).
    let before = app
        .ok(
            "{ deploymentEvents(first: 100) { nodes { cursor } } }",
            json!({}),
        )
        .await;
    let old_cursors: Vec<String> = before["deploymentEvents"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["cursor"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(old_cursors.len(), 5);
    app.create("search", "dev").await;
    let mut conn = raw(&db).await;
    let max: i64 = sqlx::query("SELECT max(seq) FROM deployment_events")
        .fetch_one(&mut conn)
        .await
        .expect("max seq")
        .get(0);
    assert_eq!(max, 7);

    // The database still refuses to rewrite history and to orphan an event.
    for statement in [
        "UPDATE deployment_events SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM deployment_events WHERE seq = 1",
        "INSERT OR REPLACE INTO deployment_events (seq, id, deployment_id, service, environment, kind, actor, to_status, occurred_at) VALUES (1, 'x', 'x', 's', 'e', 'CREATED', 'a', 'PENDING_APPROVAL', 0)",
        "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, to_status, occurred_at) VALUES ('y', 'no-such-deployment', 's', 'e', 'CREATED', 'a', 'PENDING_APPROVAL', 0)",
        "UPDATE deployments SET status = 'UNKNOWN' WHERE id = '0193a1b2-0000-7000-8000-000000000002'",
    ] {
        let result = sqlx::query(statement).execute(&mut conn).await;
        assert!(result.is_err(), "refused: {statement}");
    }
    let integrity: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity")
        .get(0);
    assert_eq!(integrity, "ok");
    // CANCELLED can now be stored.
    sqlx::query(CANCEL_B)
        .execute(&mut conn)
        .await
        .expect("CANCELLED is admitted");
    conn.close().await.expect("close");
    app.stop().await;
}

#[tokio::test]
async fn the_upgrade_can_be_undone_unless_a_deployment_is_cancelled() {
    let db = TestDb::sqlite();
    v1_database(&db).await;
    let conn = db.connect().await;
    Migrator::up(&conn, None).await.expect("up");
    // Every migration after the first one (v1) is undone.
    let after_v1 = Migrator::migrations().len() as u32 - 1;
    Migrator::down(&conn, Some(after_v1))
        .await
        .expect("down to v1");
    // Back at v1: rows intact, CANCELLED refused again.
    let mut raw_conn = raw(&db).await;
    let count: i64 = sqlx::query("SELECT count(*) FROM deployment_events")
        .fetch_one(&mut raw_conn)
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 5);
    let cancelled = sqlx::query(CANCEL_B).execute(&mut raw_conn).await;
    assert!(cancelled.is_err(), "v1 does not admit CANCELLED");

    Migrator::up(&conn, None).await.expect("up again");
    sqlx::query(CANCEL_B)
        .execute(&mut raw_conn)
        .await
        .expect("v2 admits CANCELLED");
    let refused = Migrator::down(&conn, Some(after_v1)).await;
    assert!(
        refused.is_err(),
        "a CANCELLED deployment keeps the database at v2"
    );
    let still: String = sqlx::query(STATUS_B)
        .fetch_one(&mut raw_conn)
        .await
        .expect("status")
        .get(0);
    assert_eq!(still, "CANCELLED");
    raw_conn.close().await.expect("close");
    conn.close().await.expect("close");
}

/// Version 1 let two deployments of one service and environment be STARTED at once;
/// version 2 holds one. The upgrade fails the one started first, by `shiplog` with a
/// note, and keeps the other; the server then starts as usual.
#[tokio::test]
async fn two_v1_deployments_started_in_one_place_leave_one_started_after_the_upgrade() {
    let db = TestDb::sqlite();
    let conn = db.connect().await;
    Migrator::up(&conn, Some(1))
        .await
        .expect("the v1 migration");
    conn.execute_unprepared(
        r#"
        INSERT INTO deployments (id, service, environment, version, requester, work_refs, risk,
            rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key)
        VALUES
          ('0193a1b2-0000-7000-8000-0000000000a1', 'search', 'staging', 'v1', 'alice', '["S-1"]', NULL,
           'redeploy', 'STARTED', 'bob', 1700000001000, 1700000000000, 1700000002000, NULL),
          ('0193a1b2-0000-7000-8000-0000000000a2', 'search', 'staging', 'v2', 'alice', '["S-2"]', NULL,
           'redeploy', 'STARTED', 'bob', 1700000004000, 1700000003000, 1700000005000, NULL);
        INSERT INTO deployment_events (seq, id, deployment_id, service, environment, kind, actor,
            note, from_status, to_status, occurred_at)
        VALUES
          (1, '0193a1b2-0000-7000-8000-0000000000f1', '0193a1b2-0000-7000-8000-0000000000a1',
           'search', 'staging', 'STARTED', 'bot', NULL, 'APPROVED', 'STARTED', 1700000002000),
          (2, '0193a1b2-0000-7000-8000-0000000000f2', '0193a1b2-0000-7000-8000-0000000000a2',
           'search', 'staging', 'STARTED', 'bot', NULL, 'APPROVED', 'STARTED', 1700000005000);
        "#,
    )
    .await
    .expect("v1 rows");
    conn.close().await.expect("close");

    let app = TestApp::start(&db, &["production"]).await;
    let data = app
        .ok(
            r#"{ deployments { nodes { version status events { kind actor note } } } }"#,
            json!({}),
        )
        .await;
    let nodes = data["deployments"]["nodes"].as_array().expect("nodes");
    let by_version = |v: &str| {
        nodes
            .iter()
            .find(|n| n["version"] == v)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        by_version("v2")["status"],
        "STARTED",
        "the later start is kept"
    );
    let older = by_version("v1");
    assert_eq!(older["status"], "FAILED");
    let last = &older["events"][1];
    assert_eq!(last["kind"], "FAILED");
    assert_eq!(last["actor"], "shiplog");
    assert!(last["note"]
        .as_str()
        .unwrap_or_default()
        .contains("version 2"));
    app.stop().await;
}
