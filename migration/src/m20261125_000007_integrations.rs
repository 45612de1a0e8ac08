//! Version 2, integrations: webhooks and their deliveries (a transactional outbox), and
//! deploy targets and their executions.
//!
//! - `webhooks`: one row per webhook; `kinds` is a JSON array of event kinds, null for
//!   every kind. The secret is stored as given, since every request is signed with it.
//! - `webhook_payloads`: the exact JSON every delivery of one event sends, on every
//!   attempt, written once per event that some webhook wants (keyed by the event's seq).
//! - `webhook_deliveries`: one row per (event, matching webhook), written in the event's
//!   transaction. `seq` is the commit order. `due_at` is when the next attempt is due
//!   (null when none is): the series' `next_attempt_at`, or now when a redelivery was
//!   asked for (`redeliver`). `attempts` counts the retry series, `tries` every attempt
//!   (redeliveries too): the number of the next `webhook_attempts` row.
//! - `webhook_attempts`: every attempt of a delivery, in order.
//! - `deployment_targets`: the executor of one (service, environment).
//! - `executions`: one trigger of a target's executor (after a start or a rollback),
//!   run as a durable job with the webhook retry policy.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    service     TEXT,
    environment TEXT,
    kinds       TEXT,
    active      INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE webhook_payloads (
    event_seq INTEGER PRIMARY KEY NOT NULL REFERENCES deployment_events (seq),
    body      TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_seq       INTEGER NOT NULL REFERENCES webhook_payloads (event_seq),
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    redeliver       INTEGER NOT NULL DEFAULT 0,
    due_at          INTEGER,
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, due_at, seq)
 WHERE due_at IS NOT NULL;
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook_id, seq);

CREATE TABLE webhook_attempts (
    delivery_seq INTEGER NOT NULL REFERENCES webhook_deliveries (seq) ON DELETE CASCADE,
    n            INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (delivery_seq, n)
);

CREATE TABLE deployment_targets (
    service           TEXT NOT NULL,
    environment       TEXT NOT NULL,
    executor          TEXT NOT NULL CHECK (executor IN ('GITHUB_ACTIONS', 'HTTP')),
    repository        TEXT,
    workflow          TEXT,
    workflow_ref      TEXT,
    environment_input TEXT,
    ref_input         TEXT,
    token_env         TEXT,
    url               TEXT,
    secret            TEXT,
    updated_by        TEXT NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (service, environment)
);

CREATE TABLE executions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    deployment_id   TEXT NOT NULL REFERENCES deployments (id),
    service         TEXT NOT NULL,
    environment     TEXT NOT NULL,
    executor        TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('DEPLOY', 'ROLLBACK')),
    git_ref         TEXT NOT NULL,
    actor           TEXT NOT NULL,
    deployment      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'TRIGGERED', 'FAILED')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    triggered_at    INTEGER,
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX executions_due ON executions (next_attempt_at, seq)
 WHERE next_attempt_at IS NOT NULL;
CREATE INDEX executions_of ON executions (deployment_id, seq);
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS executions;
DROP TABLE IF EXISTS deployment_targets;
DROP TABLE IF EXISTS webhook_attempts;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhook_payloads;
DROP TABLE IF EXISTS webhooks;
"#;

/// PostgreSQL: the same tables, BIGINT for INTEGER (`active` and `redeliver` included:
/// they hold 0 or 1, read as i64), identity columns for the AUTOINCREMENT sequences.
const PG_UP: &str = r#"
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    service     TEXT,
    environment TEXT,
    kinds       TEXT,
    active      BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE webhook_payloads (
    event_seq BIGINT PRIMARY KEY NOT NULL REFERENCES deployment_events (seq),
    body      TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_seq       BIGINT NOT NULL REFERENCES webhook_payloads (event_seq),
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    tries           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    redeliver       BIGINT NOT NULL DEFAULT 0,
    due_at          BIGINT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, due_at, seq)
 WHERE due_at IS NOT NULL;
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook_id, seq);

CREATE TABLE webhook_attempts (
    delivery_seq BIGINT NOT NULL REFERENCES webhook_deliveries (seq) ON DELETE CASCADE,
    n            BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    status_code  BIGINT,
    error        TEXT,
    duration_ms  BIGINT NOT NULL,
    PRIMARY KEY (delivery_seq, n)
);

CREATE TABLE deployment_targets (
    service           TEXT NOT NULL,
    environment       TEXT NOT NULL,
    executor          TEXT NOT NULL CHECK (executor IN ('GITHUB_ACTIONS', 'HTTP')),
    repository        TEXT,
    workflow          TEXT,
    workflow_ref      TEXT,
    environment_input TEXT,
    ref_input         TEXT,
    token_env         TEXT,
    url               TEXT,
    secret            TEXT,
    updated_by        TEXT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (service, environment)
);

CREATE TABLE executions (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    deployment_id   TEXT NOT NULL REFERENCES deployments (id),
    service         TEXT NOT NULL,
    environment     TEXT NOT NULL,
    executor        TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('DEPLOY', 'ROLLBACK')),
    git_ref         TEXT NOT NULL,
    actor           TEXT NOT NULL,
    deployment      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'TRIGGERED', 'FAILED')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    triggered_at    BIGINT,
    next_attempt_at BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX executions_due ON executions (next_attempt_at, seq)
 WHERE next_attempt_at IS NOT NULL;
CREATE INDEX executions_of ON executions (deployment_id, seq);
"#;

const PG_DOWN: &str = DOWN;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = crate::for_backend(manager, UP, PG_UP)?;
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = crate::for_backend(manager, DOWN, PG_DOWN)?;
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
