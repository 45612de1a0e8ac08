//! Seeds a database with many deployments and their events, fast: the server migrates
//! the file, then rows are inserted in large transactions without fsync (seeding is not
//! what is measured).

use std::path::Path;

use shiplog::domain::{Environment, ProductionEnvironments};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

use crate::server::Server;
use crate::BenchError;

pub const SERVICES: usize = 20;
pub const ENVIRONMENTS: [&str; 3] = ["production", "staging", "qa"];

pub fn service(i: usize) -> String {
    format!("svc-{:02}", i % SERVICES)
}

/// `n` deployments; with `history`, each went CREATED → APPROVED → STARTED → SUCCEEDED,
/// otherwise each is pending with its CREATED event.
pub async fn seed(binary: &Path, db: &Path, n: usize, history: bool) -> Result<(), BenchError> {
    let started = std::time::Instant::now();
    Server::start(binary, db).await?.stop().await?;
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let base = now - (n as i64) * 10 - 60_000;
    let mut i = 0;
    while i < n {
        let mut tx = conn.begin().await?;
        for j in i..(i + 10_000).min(n) {
            let id = Uuid::now_v7().to_string();
            let created = base + (j as i64) * 10;
            let (service, environment) = (service(j), ENVIRONMENTS[j % ENVIRONMENTS.len()]);
            let (status, reviewed_by, reviewed_at, updated) = if history {
                ("SUCCEEDED", Some("bob"), Some(created + 1), created + 3)
            } else {
                ("PENDING_APPROVAL", None, None, created)
            };
            sqlx::query(
                "INSERT INTO deployments (id, service, environment, version, requester, work_refs, \
                 risk, rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, 'alice', '[\"JIRA-1\",\"PR-2\"]', 'low: config only', \
                 'redeploy the previous version', ?, ?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(&service)
            .bind(environment)
            .bind(format!("v1.{j}"))
            .bind(status)
            .bind(reviewed_by)
            .bind(reviewed_at)
            .bind(created)
            .bind(updated)
            .execute(&mut *tx)
            .await?;
            let steps: &[(&str, &str, Option<&str>, &str)] = if history {
                &[
                    ("CREATED", "alice", None, "PENDING_APPROVAL"),
                    ("APPROVED", "bob", Some("PENDING_APPROVAL"), "APPROVED"),
                    ("STARTED", "deploybot", Some("APPROVED"), "STARTED"),
                    ("SUCCEEDED", "deploybot", Some("STARTED"), "SUCCEEDED"),
                ]
            } else {
                &[("CREATED", "alice", None, "PENDING_APPROVAL")]
            };
            for (k, (kind, actor, from, to)) in steps.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, \
                     actor, note, from_status, to_status, occurred_at) \
                     VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(&id)
                .bind(&service)
                .bind(environment)
                .bind(*kind)
                .bind(*actor)
                .bind(*from)
                .bind(*to)
                .bind(created + k as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        i += 10_000;
    }
    // Register the environments the rows name, as a deployment through the API would
    // (the server would also register them when it next opens the file).
    let now_ts = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
    for name in ENVIRONMENTS {
        let e = Environment::register(
            name,
            &ProductionEnvironments::default(),
            Uuid::now_v7(),
            now_ts,
        );
        sqlx::query(
            "INSERT OR IGNORE INTO environments (name, id, position, tier, required_approvals, \
             start_timeout_seconds, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
        )
        .bind(&e.name)
        .bind(e.id.to_string())
        .bind(e.position)
        .bind(e.tier.as_str())
        .bind(i32::from(e.required_approvals))
        .bind(now)
        .execute(&mut conn)
        .await?;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    eprintln!(
        "seeded {n} deployments{} in {:.1} s",
        if history { " with 4 events each" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
