//! Version 2, first part: environments, approval rules, cancellation, promotion and
//! release notes.
//!
//! - `environments`: one row per environment, registered the first time anything names
//!   it, with its release-train position, tier and settings.
//! - `deployments` gains `required_approvals` (the environment's, snapshotted at
//!   creation), `promoted_from` and `release_notes`, and its status check admits
//!   CANCELLED; `deployment_events` admits the CANCELLED kind.
//!
//! SQLite cannot change a CHECK constraint in place, so both tables are rebuilt: new
//! tables are created beside the old ones and filled from them, the old ones dropped, and
//! the new ones renamed to the old names (a rename rewrites the foreign keys that name
//! the renamed table, so the events end up referencing `deployments` again). Indexes and
//! the events' append-only triggers are created exactly as in the first migration. Rows,
//! event sequence numbers and the AUTOINCREMENT high-water mark are kept. It all runs in
//! the migration's one transaction, so an interrupted upgrade leaves the v1 schema intact.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE environments (
    name                    TEXT    NOT NULL PRIMARY KEY,       -- trimmed, compared exactly
    id                      TEXT    NOT NULL UNIQUE,            -- UUIDv7, for `node(id)`
    position                INTEGER NOT NULL,                   -- release-train order, then name
    tier                    TEXT    NOT NULL CHECK (tier IN ('DEVELOPMENT', 'TESTING',
                                'STAGING', 'PRODUCTION', 'OTHER')),
    required_approvals      INTEGER NOT NULL DEFAULT 1 CHECK (required_approvals BETWEEN 1 AND 10),
    start_timeout_seconds   INTEGER CHECK (start_timeout_seconds BETWEEN 1 AND 2592000),
    updated_by              TEXT,                               -- null until configured
    updated_at              INTEGER NOT NULL
) STRICT;

CREATE INDEX environments_in_train_order ON environments (position, name);

CREATE TABLE deployments_new (
    id                      TEXT    NOT NULL PRIMARY KEY, -- UUIDv7, lowercase hyphenated
    service                 TEXT    NOT NULL,
    environment             TEXT    NOT NULL,
    version                 TEXT    NOT NULL,
    requester               TEXT    NOT NULL,
    work_refs               TEXT    NOT NULL,             -- JSON array of strings
    risk                    TEXT,
    rollback_plan           TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('PENDING_APPROVAL', 'APPROVED',
                                'REJECTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK',
                                'CANCELLED')),
    reviewed_by             TEXT,
    reviewed_at             INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    -- The client's key for idempotent creation; a retry is matched on the stored fields.
    idempotency_key         TEXT    UNIQUE,
    -- Distinct approvals needed: the environment's setting when the deployment was created.
    required_approvals      INTEGER NOT NULL DEFAULT 1 CHECK (required_approvals BETWEEN 1 AND 10),
    -- The SUCCEEDED deployment whose version this one promotes.
    promoted_from           TEXT    REFERENCES deployments_new (id),
    release_notes           TEXT
) STRICT;

INSERT INTO deployments_new (id, service, environment, version, requester, work_refs, risk,
    rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key)
SELECT id, service, environment, version, requester, work_refs, risk,
    rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key
FROM deployments;

CREATE TABLE deployment_events_new (
    seq           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- no gaps: one writer, rollbacks undo it
    id            TEXT    NOT NULL UNIQUE,                    -- UUIDv7
    deployment_id TEXT    NOT NULL REFERENCES deployments_new (id),
    service       TEXT    NOT NULL,                           -- copied: never changes
    environment   TEXT    NOT NULL,                           -- copied: never changes
    kind          TEXT    NOT NULL CHECK (kind IN ('CREATED', 'APPROVED', 'REJECTED',
                      'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK', 'CANCELLED')),
    actor         TEXT    NOT NULL,
    note          TEXT,
    from_status   TEXT,
    to_status     TEXT    NOT NULL,
    occurred_at   INTEGER NOT NULL
) STRICT;

INSERT INTO deployment_events_new (seq, id, deployment_id, service, environment, kind, actor,
    note, from_status, to_status, occurred_at)
SELECT seq, id, deployment_id, service, environment, kind, actor,
    note, from_status, to_status, occurred_at
FROM deployment_events ORDER BY seq;

-- The next event number continues from the old table's high-water mark.
DELETE FROM sqlite_sequence WHERE name = 'deployment_events_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'deployment_events_new', seq FROM sqlite_sequence WHERE name = 'deployment_events';

-- Dropping a table drops its indexes and triggers; no trigger fires on a DROP.
DROP TABLE deployment_events;
DROP TABLE deployments;
ALTER TABLE deployments_new RENAME TO deployments;
ALTER TABLE deployment_events_new RENAME TO deployment_events;

-- Lists are newest first by (created_at, id) with keyset cursors. Each filter has an
-- index whose equality columns come first, so a page is a range scan in order, never a sort.
CREATE INDEX deployments_by_time ON deployments (created_at, id);
CREATE INDEX deployments_by_service ON deployments (service, created_at, id);
CREATE INDEX deployments_by_environment ON deployments (environment, created_at, id);
CREATE INDEX deployments_by_service_environment ON deployments (service, environment, created_at, id);
CREATE INDEX deployments_by_status ON deployments (status, created_at, id);

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

/// Back to the v1 schema. Refused while a deployment is CANCELLED (v1 cannot hold it);
/// the v2 columns and the environments are dropped.
const DOWN: &str = r#"
DROP TABLE environments;

CREATE TABLE deployments_new (
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

INSERT INTO deployments_new (id, service, environment, version, requester, work_refs, risk,
    rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key)
SELECT id, service, environment, version, requester, work_refs, risk,
    rollback_plan, status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key
FROM deployments;

CREATE TABLE deployment_events_new (
    seq           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- no gaps: one writer, rollbacks undo it
    id            TEXT    NOT NULL UNIQUE,                    -- UUIDv7
    deployment_id TEXT    NOT NULL REFERENCES deployments_new (id),
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

INSERT INTO deployment_events_new (seq, id, deployment_id, service, environment, kind, actor,
    note, from_status, to_status, occurred_at)
SELECT seq, id, deployment_id, service, environment, kind, actor,
    note, from_status, to_status, occurred_at
FROM deployment_events ORDER BY seq;

-- The next event number continues from the old table's high-water mark.
DELETE FROM sqlite_sequence WHERE name = 'deployment_events_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'deployment_events_new', seq FROM sqlite_sequence WHERE name = 'deployment_events';

-- Dropping a table drops its indexes and triggers; no trigger fires on a DROP.
DROP TABLE deployment_events;
DROP TABLE deployments;
ALTER TABLE deployments_new RENAME TO deployments;
ALTER TABLE deployment_events_new RENAME TO deployment_events;

-- Lists are newest first by (created_at, id) with keyset cursors. Each filter has an
-- index whose equality columns come first, so a page is a range scan in order, never a sort.
CREATE INDEX deployments_by_time ON deployments (created_at, id);
CREATE INDEX deployments_by_service ON deployments (service, created_at, id);
CREATE INDEX deployments_by_environment ON deployments (environment, created_at, id);
CREATE INDEX deployments_by_service_environment ON deployments (service, environment, created_at, id);
CREATE INDEX deployments_by_status ON deployments (status, created_at, id);

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

/// PostgreSQL: ALTER TABLE does in place what SQLite needs a rebuild for. The new columns
/// are added at the end, where the rebuild puts them too; the two CHECK constraints are
/// replaced (adding one checks every existing row); nothing touches the rows, so no
/// append-only trigger fires, and the identity sequence of `seq` carries on as it was.
const PG_UP: &str = r#"
CREATE TABLE environments (
    name                    TEXT    NOT NULL PRIMARY KEY,       -- trimmed, compared exactly
    id                      TEXT    NOT NULL UNIQUE,            -- UUIDv7, for `node(id)`
    position                BIGINT  NOT NULL,                   -- release-train order, then name
    tier                    TEXT    NOT NULL CHECK (tier IN ('DEVELOPMENT', 'TESTING',
                                'STAGING', 'PRODUCTION', 'OTHER')),
    required_approvals      BIGINT  NOT NULL DEFAULT 1 CHECK (required_approvals BETWEEN 1 AND 10),
    start_timeout_seconds   BIGINT  CHECK (start_timeout_seconds BETWEEN 1 AND 2592000),
    updated_by              TEXT,                               -- null until configured
    updated_at              BIGINT  NOT NULL
);

CREATE INDEX environments_in_train_order ON environments (position, name);

ALTER TABLE deployments
    DROP CONSTRAINT deployments_status_check,
    ADD CONSTRAINT deployments_status_check CHECK (status IN ('PENDING_APPROVAL', 'APPROVED',
        'REJECTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK', 'CANCELLED')),
    -- Distinct approvals needed: the environment's setting when the deployment was created.
    ADD COLUMN required_approvals BIGINT NOT NULL DEFAULT 1
        CONSTRAINT deployments_required_approvals_check CHECK (required_approvals BETWEEN 1 AND 10),
    -- The SUCCEEDED deployment whose version this one promotes.
    ADD COLUMN promoted_from TEXT CONSTRAINT deployments_promoted_from_fkey REFERENCES deployments (id),
    ADD COLUMN release_notes TEXT;

ALTER TABLE deployment_events
    DROP CONSTRAINT deployment_events_kind_check,
    ADD CONSTRAINT deployment_events_kind_check CHECK (kind IN ('CREATED', 'APPROVED', 'REJECTED',
        'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK', 'CANCELLED'));
"#;

/// PostgreSQL, back to the v1 schema (refused while a deployment is CANCELLED, as on
/// SQLite; the v1 kind check, checked against every event, refuses a CANCELLED event too).
const PG_DOWN: &str = r#"
DROP TABLE environments;

ALTER TABLE deployments
    DROP COLUMN release_notes,
    DROP COLUMN promoted_from,
    DROP COLUMN required_approvals,
    DROP CONSTRAINT deployments_status_check,
    ADD CONSTRAINT deployments_status_check CHECK (status IN ('PENDING_APPROVAL', 'APPROVED',
        'REJECTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK'));

ALTER TABLE deployment_events
    DROP CONSTRAINT deployment_events_kind_check,
    ADD CONSTRAINT deployment_events_kind_check CHECK (kind IN ('CREATED', 'APPROVED', 'REJECTED',
        'STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK'));
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(crate::for_backend(manager, UP, PG_UP)?)
            .await?;
        check_foreign_keys(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let cancelled = db
            .query_one_raw(sea_orm::Statement::from_string(
                manager.get_database_backend(),
                "SELECT 1 FROM deployments WHERE status = 'CANCELLED' LIMIT 1",
            ))
            .await?;
        if cancelled.is_some() {
            return Err(DbErr::Migration(
                "cannot go back to v1: a deployment is CANCELLED, which v1 cannot store".into(),
            ));
        }
        db.execute_unprepared(crate::for_backend(manager, DOWN, PG_DOWN)?)
            .await?;
        check_foreign_keys(manager).await
    }

    // All of it or none of it: a half-rebuilt table would be worse than either schema.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// The rebuilt tables must still agree with each other before the transaction commits.
/// (SQLite only: PostgreSQL checks every foreign key as it goes, and rebuilds nothing.)
async fn check_foreign_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(());
    }
    let violation = manager
        .get_connection()
        .query_one_raw(sea_orm::Statement::from_string(
            manager.get_database_backend(),
            "PRAGMA foreign_key_check",
        ))
        .await?;
    match violation {
        None => Ok(()),
        Some(_) => Err(DbErr::Migration(
            "the rebuilt tables break a foreign key; nothing was changed".into(),
        )),
    }
}
