//! Conversions between domain values and stored rows, and the reads and writes of a
//! deployment row and its events that every deployment write runs (`statements`).

use chrono::DateTime;
use uuid::Uuid;

use super::entity::{deployment, event};
use super::statements::{self, Bind, Columns, Run};
use super::{StoreError, StoredEvent};
use crate::domain::{Deployment, DeploymentEvent, Timestamp};

/// A `deployments` row, its columns in `statements::DEPLOYMENT_COLUMNS` order.
pub(super) fn deployment_model(
    row: &(impl Columns + ?Sized),
) -> Result<deployment::Model, StoreError> {
    Ok(deployment::Model {
        id: row.text(0)?,
        service: row.text(1)?,
        environment: row.text(2)?,
        version: row.text(3)?,
        requester: row.text(4)?,
        work_refs: row.text(5)?,
        risk: row.maybe_text(6)?,
        rollback_plan: row.text(7)?,
        status: row.text(8)?,
        reviewed_by: row.maybe_text(9)?,
        reviewed_at: row.maybe_int(10)?,
        created_at: row.int(11)?,
        updated_at: row.int(12)?,
        idempotency_key: row.maybe_text(13)?,
        required_approvals: row.int(14)?,
        promoted_from: row.maybe_text(15)?,
        release_notes: row.maybe_text(16)?,
        started_at: row.maybe_int(17)?,
        start_deadline: row.maybe_int(18)?,
    })
}

/// The deployment with this id, as the connection (a write transaction) sees it.
pub(super) async fn find_deployment(
    txn: &impl Run,
    id: &str,
) -> Result<Option<Deployment>, StoreError> {
    match txn
        .row(&statements::DEPLOYMENT, &[Bind::Text(id)], |row| {
            deployment_model(row)
        })
        .await?
    {
        Some(row) => deployment(row).map(Some),
        None => Ok(None),
    }
}

/// Inserts a new deployment's row.
pub(super) async fn insert_deployment(
    txn: &impl Run,
    d: &Deployment,
    idempotency_key: Option<&str>,
) -> Result<(), StoreError> {
    let work_refs = serde_json::to_string(&d.work_refs)
        .map_err(|e| StoreError::Corrupt(format!("work refs: {e}")))?;
    let id = d.id.to_string();
    let promoted_from = d.promoted_from.map(|id| id.to_string());
    let millis = |t: Option<Timestamp>| Bind::MaybeInt(t.map(|t| t.timestamp_millis()));
    txn.change(
        &statements::INSERT_DEPLOYMENT,
        &[
            Bind::Text(&id),
            Bind::Text(&d.service),
            Bind::Text(&d.environment),
            Bind::Text(&d.version),
            Bind::Text(&d.requester),
            Bind::Text(&work_refs),
            Bind::MaybeText(d.risk.as_deref()),
            Bind::Text(&d.rollback_plan),
            Bind::Text(d.status.as_str()),
            Bind::MaybeText(d.reviewed_by.as_deref()),
            millis(d.reviewed_at),
            Bind::Int(d.created_at.timestamp_millis()),
            Bind::Int(d.updated_at.timestamp_millis()),
            Bind::MaybeText(idempotency_key),
            Bind::Int(i64::from(d.required_approvals)),
            Bind::MaybeText(promoted_from.as_deref()),
            Bind::MaybeText(d.release_notes.as_deref()),
            millis(d.started_at),
            millis(d.start_deadline),
        ],
    )
    .await?;
    Ok(())
}

/// Compare-and-sets a transition: `next`'s status and times, if the stored status is
/// still `from`. Answers how many rows changed (0 or 1).
pub(super) async fn update_status(
    txn: &impl Run,
    next: &Deployment,
    from: crate::domain::Status,
) -> Result<u64, sea_orm::DbErr> {
    let id = next.id.to_string();
    let millis = |t: Option<Timestamp>| Bind::MaybeInt(t.map(|t| t.timestamp_millis()));
    txn.change(
        &statements::UPDATE_STATUS,
        &[
            Bind::Text(next.status.as_str()),
            Bind::MaybeText(next.reviewed_by.as_deref()),
            millis(next.reviewed_at),
            Bind::Int(next.updated_at.timestamp_millis()),
            millis(next.started_at),
            millis(next.start_deadline),
            Bind::Text(&id),
            Bind::Text(from.as_str()),
        ],
    )
    .await
}

/// Appends an event; answers it with its sequence number.
pub(super) async fn insert_event(
    txn: &impl Run,
    e: DeploymentEvent,
) -> Result<StoredEvent, StoreError> {
    // A list of unit enum variants always serializes.
    let overrides = serde_json::to_string(&e.overrides).unwrap_or_else(|_| "[]".to_owned());
    let (id, deployment_id) = (e.id.to_string(), e.deployment_id.to_string());
    let seq = txn
        .row(
            &statements::INSERT_EVENT,
            &[
                Bind::Text(&id),
                Bind::Text(&deployment_id),
                Bind::Text(&e.service),
                Bind::Text(&e.environment),
                Bind::Text(e.kind.as_str()),
                Bind::Text(&e.actor),
                Bind::MaybeText(e.note.as_deref()),
                Bind::MaybeText(e.from_status.map(|s| s.as_str())),
                Bind::Text(e.to_status.as_str()),
                Bind::Int(e.occurred_at.timestamp_millis()),
                Bind::Text(&overrides),
            ],
            |row| row.int(0),
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("an inserted event has no sequence number".into()))?;
    Ok(StoredEvent { seq, event: e })
}

pub(super) fn deployment(row: deployment::Model) -> Result<Deployment, StoreError> {
    Ok(Deployment {
        id: uuid(&row.id)?,
        work_refs: serde_json::from_str(&row.work_refs)
            .map_err(|e| StoreError::Corrupt(format!("work refs of {}: {e}", row.id)))?,
        status: parse(&row.status)?,
        reviewed_at: row.reviewed_at.map(time).transpose()?,
        created_at: time(row.created_at)?,
        updated_at: time(row.updated_at)?,
        required_approvals: u8::try_from(row.required_approvals)
            .ok()
            .filter(|n| (1..=10).contains(n))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "required approvals of {}: {}",
                    row.id, row.required_approvals
                ))
            })?,
        promoted_from: row.promoted_from.as_deref().map(uuid).transpose()?,
        release_notes: row.release_notes,
        started_at: row.started_at.map(time).transpose()?,
        start_deadline: row.start_deadline.map(time).transpose()?,
        service: row.service,
        environment: row.environment,
        version: row.version,
        requester: row.requester,
        risk: row.risk,
        rollback_plan: row.rollback_plan,
        reviewed_by: row.reviewed_by,
    })
}

pub(super) fn event(row: event::Model) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.seq,
        event: DeploymentEvent {
            id: uuid(&row.id)?,
            deployment_id: uuid(&row.deployment_id)?,
            kind: parse(&row.kind)?,
            from_status: row.from_status.as_deref().map(parse).transpose()?,
            to_status: parse(&row.to_status)?,
            occurred_at: time(row.occurred_at)?,
            overrides: serde_json::from_str(&row.overrides)
                .map_err(|e| StoreError::Corrupt(format!("overrides of event {}: {e}", row.id)))?,
            service: row.service,
            environment: row.environment,
            actor: row.actor,
            note: row.note,
        },
    })
}

fn uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("id {s:?}: {e}")))
}

fn time(ms: i64) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time {ms} is out of range")))
}

fn parse<T>(s: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr<Err = crate::domain::UnknownName>,
{
    s.parse()
        .map_err(|e: crate::domain::UnknownName| StoreError::Corrupt(e.to_string()))
}
