//! The JSON that webhooks and executors are sent: an event and its deployment with the
//! same field names and formats as their GraphQL types (scalars only), built once per
//! event in the write that records it.

use chrono::SecondsFormat;
use serde_json::{json, Value};

use super::{StoredEvent, Written};
use crate::domain::{Deployment, Timestamp};

fn time(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A deployment's scalar fields, as the `Deployment` type names them.
pub fn deployment_json(d: &Deployment) -> Value {
    json!({
        "id": d.id.to_string(),
        "service": d.service,
        "environment": d.environment,
        "version": d.version,
        "requester": d.requester,
        "workRefs": d.work_refs,
        "risk": d.risk,
        "rollbackPlan": d.rollback_plan,
        "status": d.status.as_str(),
        "reviewedBy": d.reviewed_by,
        "reviewedAt": d.reviewed_at.map(time),
        "createdAt": time(d.created_at),
        "updatedAt": time(d.updated_at),
        "requiredApprovals": d.required_approvals,
        "startedAt": d.started_at.map(time),
        "startDeadline": d.start_deadline.map(time),
        "releaseNotes": d.release_notes,
    })
}

/// An event's scalar fields, as the `DeploymentEvent` type names them.
pub fn event_json(stored: &StoredEvent) -> Value {
    let e = &stored.event;
    json!({
        "id": e.id.to_string(),
        "cursor": crate::graphql::event_cursor(stored.seq),
        "deploymentId": e.deployment_id.to_string(),
        "kind": e.kind.as_str(),
        "actor": e.actor,
        "note": e.note,
        "fromStatus": e.from_status.map(|s| s.as_str()),
        "toStatus": e.to_status.as_str(),
        "occurredAt": time(e.occurred_at),
        "overrides": e.overrides.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
    })
}

/// The body of every delivery of this event:
/// `{"type": "deployment.<kind>", "timestamp": <occurredAt>, "data": {"event", "deployment"}}`.
pub fn webhook_body(written: &Written) -> String {
    let event = &written.event.event;
    json!({
        "type": format!("deployment.{}", event.kind.as_str().to_ascii_lowercase()),
        "timestamp": time(event.occurred_at),
        "data": {
            "event": event_json(&written.event),
            "deployment": deployment_json(&written.deployment),
        },
    })
    .to_string()
}
