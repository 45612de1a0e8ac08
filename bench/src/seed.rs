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

/// A migrated, empty database file: the schema the server would create on first start.
pub async fn migrated(db: &Path) -> Result<(), BenchError> {
    shiplog::store::Store::open(&shiplog::store::StoreConfig::new(crate::path_str(db)))
        .await?
        .close()
        .await?;
    Ok(())
}

/// W6's database: `n` SUCCEEDED deployments, each with its CREATED and SUCCEEDED events
/// (the live deployment's events are what the train reads), spread over `SERVICES` services and `ENVIRONMENTS` as [`seed`] does,
/// and the environments registered. Written straight into the migrated file with
/// rusqlite, in one transaction with prepared statements, before any server opens it:
/// through the API a million deployments would take hours.
pub async fn seed_direct(db: &Path, n: usize) -> Result<(), BenchError> {
    let started = std::time::Instant::now();
    migrated(db).await?;
    let path = db.to_path_buf();
    tokio::task::spawn_blocking(move || insert_history(&path, n)).await??;
    eprintln!(
        "seeded {n} deployments with 2 events each (direct) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The rows of [`seed_direct`], on this thread.
fn insert_history(db: &Path, n: usize) -> Result<(), BenchError> {
    let mut conn = rusqlite::Connection::open(db)?;
    // Test data preparation, not what is measured, so the fastest safe-enough settings,
    // on this connection only (the server sets its own when it opens the file): no fsync
    // (synchronous=OFF); the rollback journal in memory instead of the WAL, so each page
    // is written once, not to the WAL and then again by the checkpoint; a large page
    // cache; and no foreign-key lookups, since every event below names the deployment
    // inserted just before it. The CHECK constraints, the unique indexes and the
    // append-only triggers still apply. The file goes back to WAL at the end.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Leaving WAL needs the file to itself, and the store that migrated it may still be
    // closing its connections on other threads: try again for a while. Should it never
    // work, the seed goes on in WAL, slower but the same rows.
    for _ in 0..100 {
        let mode = conn.query_row("PRAGMA journal_mode = MEMORY", [], |r| {
            r.get::<_, String>(0)
        });
        if mode.is_ok_and(|m| m.eq_ignore_ascii_case("memory")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    conn.execute_batch(
        "PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -262144;",
    )?;
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    // Ten milliseconds apart, the newest a minute ago: the created_at order is the
    // insertion order, as it would be had they been created one by one.
    let base = now_ms - (n as i64) * 10 - 60_000;
    let tx = conn.transaction()?;
    {
        // The environments as the server registers them by use (environments.rs).
        let mut environment = tx.prepare(
            "INSERT INTO environments (name, id, position, tier, required_approvals, \
             start_timeout_seconds, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
        )?;
        let mut approvals = Vec::new();
        for name in ENVIRONMENTS {
            let e = Environment::register(
                name,
                &ProductionEnvironments::default(),
                Uuid::now_v7(),
                now,
            );
            environment.execute(rusqlite::params![
                e.name,
                e.id.to_string(),
                e.position,
                e.tier.as_str(),
                i64::from(e.required_approvals),
                now_ms,
            ])?;
            approvals.push(i64::from(e.required_approvals));
        }
        let mut deployment = tx.prepare(
            "INSERT INTO deployments (id, service, environment, version, requester, work_refs, \
             risk, rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, \
             required_approvals, started_at) \
             VALUES (?, ?, ?, ?, 'alice', '[\"JIRA-1\",\"PR-2\"]', 'low: config only', \
             'redeploy the previous version', 'SUCCEEDED', 'bob', ?, ?, ?, ?, ?)",
        )?;
        let mut event = tx.prepare(
            "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, \
             actor, note, from_status, to_status, occurred_at) \
             VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        )?;
        let services: Vec<String> = (0..SERVICES).map(service).collect();
        // Two events, not the whole history of four: the events are most of the rows and
        // indexes written, and two keep a million deployments well under a minute.
        let steps: [(&str, &str, Option<&str>, &str); 2] = [
            ("CREATED", "alice", None, "PENDING_APPROVAL"),
            ("SUCCEEDED", "deploybot", Some("STARTED"), "SUCCEEDED"),
        ];
        for j in 0..n {
            let id = Uuid::now_v7().to_string();
            let created = base + (j as i64) * 10;
            let service = &services[j % SERVICES];
            let e = j % ENVIRONMENTS.len();
            let environment = ENVIRONMENTS[e];
            deployment.execute(rusqlite::params![
                id,
                service,
                environment,
                format!("v1.{j}"),
                created + 1,
                created,
                created + 3,
                approvals[e],
                created + 2,
            ])?;
            for (k, (kind, actor, from, to)) in steps.iter().enumerate() {
                event.execute(rusqlite::params![
                    Uuid::now_v7().to_string(),
                    id,
                    service,
                    environment,
                    kind,
                    actor,
                    from,
                    to,
                    created + 3 * k as i64,
                ])?;
            }
        }
    }
    tx.commit()?;
    // As the server left it after migrating.
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    Ok(())
}
