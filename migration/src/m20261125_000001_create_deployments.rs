//! The two tables of shiplog.
//!
//! `deployments` holds the current state of every deployment, for ordinary reads.
//! `deployment_events` is the append-only history: one row per action, numbered by a
//! global sequence (`seq`) that follows commit order because shiplog commits through a
//! single writer. The database itself refuses to change or remove an event.
//!
//! Times are integers: milliseconds since the Unix epoch, UTC. Written as plain SQL
//! because the exact SQLite forms matter here (STRICT tables, `INTEGER PRIMARY KEY`
//! as the rowid, triggers).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE deployments (
    id                      TEXT    NOT NULL PRIMARY KEY, -- UUIDv7, lowercase hyphenated
    service                 TEXT    NOT NULL,
    environment             TEXT    NOT NULL,
    version                 TEXT    NOT NULL,
    requester               TEXT    NOT NULL,
    work_refs               TEXT    NOT NULL,             -- JSON array of strings
    risk                    TEXT,
    rollback_plan           TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('PENDING_APPROVAL', 'APPROVED',
                                'REJECTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK')),
    reviewed_by             TEXT,
    reviewed_at             INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    -- The client's key for idempotent creation; a retry is matched on the stored fields.
    idempotency_key         TEXT    UNIQUE
) STRICT;

-- Lists are newest first by (created_at, id) with keyset cursors. Each filter has an
-- index whose equality columns come first, so a page is a range scan in order, never a sort.
CREATE INDEX deployments_by_time ON deployments (created_at, id);
CREATE INDEX deployments_by_service ON deployments (service, created_at, id);
CREATE INDEX deployments_by_environment ON deployments (environment, created_at, id);
CREATE INDEX deployments_by_service_environment ON deployments (service, environment, created_at, id);
CREATE INDEX deployments_by_status ON deployments (status, created_at, id);

CREATE TABLE deployment_events (
    seq           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- no gaps: one writer, rollbacks undo it
    id            TEXT    NOT NULL UNIQUE,                    -- UUIDv7
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    service       TEXT    NOT NULL,                           -- copied: never changes
    environment   TEXT    NOT NULL,                           -- copied: never changes
    kind          TEXT    NOT NULL CHECK (kind IN ('CREATED', 'APPROVED', 'REJECTED',
                      'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK')),
    actor         TEXT    NOT NULL,
    note          TEXT,
    from_status   TEXT,
    to_status     TEXT    NOT NULL,
    occurred_at   INTEGER NOT NULL
) STRICT;

-- Every index implicitly ends with the rowid (seq), so each serves its filter in commit order.
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment_id);
CREATE INDEX deployment_events_by_service ON deployment_events (service);
CREATE INDEX deployment_events_by_environment ON deployment_events (environment);
CREATE INDEX deployment_events_by_kind ON deployment_events (kind);

CREATE TRIGGER deployment_events_no_update BEFORE UPDATE ON deployment_events
BEGIN
    SELECT RAISE(ABORT, 'deployment_events is append-only');
END;

CREATE TRIGGER deployment_events_no_delete BEFORE DELETE ON deployment_events
BEGIN
    SELECT RAISE(ABORT, 'deployment_events is append-only');
END;

-- INSERT OR REPLACE deletes the row it replaces without firing DELETE triggers (unless a
-- connection turns on recursive_triggers), so an insert that would collide is refused.
CREATE TRIGGER deployment_events_no_replace BEFORE INSERT ON deployment_events
WHEN EXISTS (SELECT 1 FROM deployment_events WHERE seq = NEW.seq OR id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'deployment_events is append-only');
END;
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS deployment_events_no_replace;
DROP TRIGGER IF EXISTS deployment_events_no_delete;
DROP TRIGGER IF EXISTS deployment_events_no_update;
DROP TABLE IF EXISTS deployment_events;
DROP TABLE IF EXISTS deployments;
"#;

/// PostgreSQL: the same two tables. BIGINT for SQLite's INTEGER; `seq` is an identity
/// column that refuses a client-chosen value (`GENERATED ALWAYS`), so event numbers come
/// from the database alone, in insertion order, and are never reused. A sequence is not
/// transactional: an insert that is rolled back still uses up its number, so unlike SQLite
/// `seq` can have gaps after a failed write. The CHECK constraints are named (as PostgreSQL
/// would name them) so that later migrations can replace them.
///
/// The append-only rule is one trigger function raising SQLite's message. Row triggers
/// refuse UPDATE and DELETE; TRUNCATE, which fires no row trigger, is refused by a
/// statement trigger. No "no replace" trigger is needed: PostgreSQL has no INSERT OR
/// REPLACE, a colliding INSERT fails on the primary key or the UNIQUE id, and
/// `INSERT ... ON CONFLICT DO UPDATE` runs into the UPDATE trigger.
const PG_UP: &str = r#"
CREATE TABLE deployments (
    id                      TEXT    NOT NULL PRIMARY KEY, -- UUIDv7, lowercase hyphenated
    service                 TEXT    NOT NULL,
    environment             TEXT    NOT NULL,
    version                 TEXT    NOT NULL,
    requester               TEXT    NOT NULL,
    work_refs               TEXT    NOT NULL,             -- JSON array of strings
    risk                    TEXT,
    rollback_plan           TEXT    NOT NULL,
    status                  TEXT    NOT NULL CONSTRAINT deployments_status_check
                                CHECK (status IN ('PENDING_APPROVAL', 'APPROVED',
                                'REJECTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK')),
    reviewed_by             TEXT,
    reviewed_at             BIGINT,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL,
    -- The client's key for idempotent creation; a retry is matched on the stored fields.
    idempotency_key         TEXT    UNIQUE
);

CREATE INDEX deployments_by_time ON deployments (created_at, id);
CREATE INDEX deployments_by_service ON deployments (service, created_at, id);
CREATE INDEX deployments_by_environment ON deployments (environment, created_at, id);
CREATE INDEX deployments_by_service_environment ON deployments (service, environment, created_at, id);
CREATE INDEX deployments_by_status ON deployments (status, created_at, id);

CREATE TABLE deployment_events (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,                    -- UUIDv7
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    service       TEXT    NOT NULL,                           -- copied: never changes
    environment   TEXT    NOT NULL,                           -- copied: never changes
    kind          TEXT    NOT NULL CONSTRAINT deployment_events_kind_check
                      CHECK (kind IN ('CREATED', 'APPROVED', 'REJECTED',
                      'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK')),
    actor         TEXT    NOT NULL,
    note          TEXT,
    from_status   TEXT,
    to_status     TEXT    NOT NULL,
    occurred_at   BIGINT  NOT NULL
);

-- SQLite's indexes end with the rowid (seq) implicitly; here it is spelled out, so each
-- index serves its filter in seq order too.
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment_id, seq);
CREATE INDEX deployment_events_by_service ON deployment_events (service, seq);
CREATE INDEX deployment_events_by_environment ON deployment_events (environment, seq);
CREATE INDEX deployment_events_by_kind ON deployment_events (kind, seq);

CREATE OR REPLACE FUNCTION deployment_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deployment_events is append-only';
END;
$$;

CREATE TRIGGER deployment_events_no_update BEFORE UPDATE ON deployment_events
    FOR EACH ROW EXECUTE FUNCTION deployment_events_append_only();

CREATE TRIGGER deployment_events_no_delete BEFORE DELETE ON deployment_events
    FOR EACH ROW EXECUTE FUNCTION deployment_events_append_only();

CREATE TRIGGER deployment_events_no_truncate BEFORE TRUNCATE ON deployment_events
    FOR EACH STATEMENT EXECUTE FUNCTION deployment_events_append_only();
"#;

/// Dropping a table drops its triggers; the function goes after them.
const PG_DOWN: &str = r#"
DROP TABLE IF EXISTS deployment_events;
DROP TABLE IF EXISTS deployments;
DROP FUNCTION IF EXISTS deployment_events_append_only();
"#;

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

    // All of it or none of it: a half-created schema would be worse than none.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
