//! Conversions between domain values and stored rows.

use chrono::DateTime;
use sea_orm::ActiveValue::{NotSet, Set};
use uuid::Uuid;

use super::entity::{deployment, event};
use super::{StoreError, StoredEvent};
use crate::domain::{Deployment, DeploymentEvent, Timestamp};

pub(super) fn deployment_row(
    d: &Deployment,
    idempotency_key: Option<String>,
) -> Result<deployment::ActiveModel, StoreError> {
    let work_refs = serde_json::to_string(&d.work_refs)
        .map_err(|e| StoreError::Corrupt(format!("work refs: {e}")))?;
    Ok(deployment::ActiveModel {
        id: Set(d.id.to_string()),
        service: Set(d.service.clone()),
        environment: Set(d.environment.clone()),
        version: Set(d.version.clone()),
        requester: Set(d.requester.clone()),
        work_refs: Set(work_refs),
        risk: Set(d.risk.clone()),
        rollback_plan: Set(d.rollback_plan.clone()),
        status: Set(d.status.as_str().to_owned()),
        reviewed_by: Set(d.reviewed_by.clone()),
        reviewed_at: Set(d.reviewed_at.map(|t| t.timestamp_millis())),
        created_at: Set(d.created_at.timestamp_millis()),
        updated_at: Set(d.updated_at.timestamp_millis()),
        idempotency_key: Set(idempotency_key),
        required_approvals: Set(i64::from(d.required_approvals)),
        promoted_from: Set(d.promoted_from.map(|id| id.to_string())),
        release_notes: Set(d.release_notes.clone()),
        started_at: Set(d.started_at.map(|t| t.timestamp_millis())),
        start_deadline: Set(d.start_deadline.map(|t| t.timestamp_millis())),
    })
}

pub(super) fn event_row(e: &DeploymentEvent) -> event::ActiveModel {
    // A list of unit enum variants always serializes.
    let overrides = serde_json::to_string(&e.overrides).unwrap_or_else(|_| "[]".to_owned());
    event::ActiveModel {
        seq: NotSet,
        id: Set(e.id.to_string()),
        deployment_id: Set(e.deployment_id.to_string()),
        service: Set(e.service.clone()),
        environment: Set(e.environment.clone()),
        kind: Set(e.kind.as_str().to_owned()),
        actor: Set(e.actor.clone()),
        note: Set(e.note.clone()),
        from_status: Set(e.from_status.map(|s| s.as_str().to_owned())),
        to_status: Set(e.to_status.as_str().to_owned()),
        occurred_at: Set(e.occurred_at.timestamp_millis()),
        overrides: Set(overrides),
    }
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
