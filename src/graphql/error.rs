//! The one error type of the API, and its mapping to `extensions.code`.
//!
//! Resolvers return `Result<_, ApiError>`. `ApiError` deliberately does not implement
//! `Display`, so nothing can turn it (or a store error) into a client-visible string by
//! accident: the only way out is `From<ApiError> for async_graphql::Error` below.

use async_graphql::{ErrorExtensionValues, Value};

use crate::domain::{Refusal, Status, ValidationErrors};
use crate::store::{FreezeWindowError, IntegrationError, StoreError};

#[derive(Debug, Clone)]
pub enum ApiError {
    /// Invalid content: one `(field path, message)` per problem.
    BadUserInput(Vec<(String, String)>),
    /// No deployment (or event) has this id.
    NotFound { id: String },
    /// No `what` (a freeze window, ...) has this id.
    NotFoundOf { what: &'static str, id: String },
    /// The action is not allowed from the current status, or an idempotency key was reused.
    Conflict {
        message: String,
        status: Option<Status>,
        action: &'static str,
    },
    /// A guard on start refused it (CONFLICT): `reason` names the guard, `details` are its
    /// other extensions (`blockedBy`, ...), in order.
    Guarded {
        message: String,
        status: Status,
        action: &'static str,
        reason: &'static str,
        details: Vec<(&'static str, String)>,
    },
    /// The actor may not do this (a requester approving their own deployment, a reviewer
    /// approving twice).
    Forbidden {
        message: String,
        reason: &'static str,
    },
    /// Anything else. The cause has been logged; clients learn nothing more.
    Internal,
}

impl ApiError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadUserInput(vec![(field.into(), message.into())])
    }

    /// Validation problems of the input argument `prefix` (e.g. `input`).
    pub fn invalid(prefix: &str, errors: ValidationErrors) -> Self {
        ApiError::BadUserInput(
            errors
                .0
                .into_iter()
                .map(|e| (format!("{prefix}.{}", e.field), e.message))
                .collect(),
        )
    }

    /// The field problems of a `BadUserInput`; none for any other error.
    pub fn into_fields(self) -> Vec<(String, String)> {
        match self {
            ApiError::BadUserInput(fields) => fields,
            _ => Vec::new(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadUserInput(_) => "BAD_USER_INPUT",
            ApiError::NotFound { .. } | ApiError::NotFoundOf { .. } => "NOT_FOUND",
            ApiError::Conflict { .. } | ApiError::Guarded { .. } => "CONFLICT",
            ApiError::Forbidden { .. } => "FORBIDDEN",
            ApiError::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => ApiError::NotFound { id: id.to_string() },
            // Only creation refuses input inside the store; its argument is `input`.
            StoreError::Invalid(errors) => ApiError::invalid("input", errors),
            StoreError::Refused(refusal @ Refusal::Conflict { status, action }) => {
                ApiError::Conflict {
                    message: refusal.to_string(),
                    status: Some(status),
                    action: action.as_str(),
                }
            }
            StoreError::Refused(refusal @ Refusal::SelfApproval) => ApiError::Forbidden {
                message: refusal.to_string(),
                reason: "SELF_APPROVAL",
            },
            StoreError::Refused(refusal @ Refusal::AlreadyApproved) => ApiError::Forbidden {
                message: refusal.to_string(),
                reason: "ALREADY_APPROVED",
            },
            StoreError::Refused(refusal @ Refusal::NotPromotable { status }) => {
                ApiError::Conflict {
                    message: refusal.to_string(),
                    status: Some(status),
                    action: PROMOTE,
                }
            }
            err @ StoreError::IdempotencyConflict { .. } => ApiError::Conflict {
                message: format!("{err}; retry with the same input, or use a new key"),
                status: None,
                action: "create",
            },
            StoreError::Refused(refusal @ Refusal::EnvironmentBusy { blocked_by }) => {
                ApiError::guarded(refusal, "ENVIRONMENT_BUSY", blocked_by)
            }
            StoreError::Refused(refusal @ Refusal::Outdated { blocked_by }) => {
                ApiError::guarded(refusal, "OUTDATED", blocked_by)
            }
            StoreError::Refused(refusal @ Refusal::Frozen { window_id, until }) => {
                ApiError::Guarded {
                    message: refusal.to_string(),
                    status: Status::Approved,
                    action: crate::domain::Action::Start.as_str(),
                    reason: "FROZEN",
                    details: vec![
                        ("freezeWindowId", window_id.to_string()),
                        (
                            "until",
                            until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        ),
                    ],
                }
            }
            StoreError::FreezeWindow(FreezeWindowError::NotFound(id)) => ApiError::NotFoundOf {
                what: "freeze window",
                id: id.to_string(),
            },
            StoreError::FreezeWindow(err @ FreezeWindowError::AlreadyRemoved(_)) => {
                ApiError::Conflict {
                    message: err.to_string(),
                    status: None,
                    action: "REMOVE_FREEZE_WINDOW",
                }
            }
            StoreError::FreezeWindow(err @ FreezeWindowError::TooMany) => {
                ApiError::bad_input("input", err.to_string())
            }
            StoreError::Integration(IntegrationError::WebhookNotFound(id)) => {
                ApiError::NotFoundOf {
                    what: "webhook",
                    id: id.to_string(),
                }
            }
            StoreError::Integration(IntegrationError::DeliveryNotFound(id)) => {
                ApiError::NotFoundOf {
                    what: "webhook delivery",
                    id: id.to_string(),
                }
            }
            StoreError::Integration(IntegrationError::TargetNotFound {
                service,
                environment,
            }) => ApiError::NotFoundOf {
                what: "deployment target",
                id: format!("{service}/{environment}"),
            },
            StoreError::Integration(err @ IntegrationError::TooManyWebhooks) => {
                ApiError::bad_input("input", err.to_string())
            }
            internal => {
                tracing::error!(error = %internal, "request failed");
                ApiError::Internal
            }
        }
    }
}

impl ApiError {
    /// A start refused by the guard `reason` because of the deployment `blocked_by`. Guards
    /// are only checked for an APPROVED deployment.
    fn guarded(refusal: Refusal, reason: &'static str, blocked_by: uuid::Uuid) -> Self {
        ApiError::Guarded {
            message: refusal.to_string(),
            status: Status::Approved,
            action: crate::domain::Action::Start.as_str(),
            reason,
            details: vec![("blockedBy", blocked_by.to_string())],
        }
    }
}

/// The `action` of a promotion's conflicts, as contract.md names it.
const PROMOTE: &str = "PROMOTE";

impl ApiError {
    /// A refused promotion: as any store error, except that an idempotency key reused
    /// with other input is a conflict of the promotion, not of a creation.
    pub fn of_promotion(err: StoreError) -> Self {
        match err {
            err @ StoreError::IdempotencyConflict { .. } => ApiError::Conflict {
                message: format!("{err}; retry with the same input, or use a new key"),
                status: None,
                action: PROMOTE,
            },
            err => err.into(),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", err.code());
        let message = match err {
            ApiError::BadUserInput(fields) => {
                let message = fields
                    .iter()
                    .map(|(field, message)| format!("{field} {message}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let list: Vec<Value> = fields
                    .into_iter()
                    .map(|(field, message)| {
                        let mut obj = async_graphql::indexmap::IndexMap::new();
                        obj.insert(async_graphql::Name::new("field"), Value::from(field));
                        obj.insert(async_graphql::Name::new("message"), Value::from(message));
                        Value::Object(obj)
                    })
                    .collect();
                ext.set("fields", Value::List(list));
                format!("Invalid input: {message}")
            }
            ApiError::NotFound { id } => {
                let message = format!("No deployment has id {id}");
                ext.set("id", id);
                message
            }
            ApiError::NotFoundOf { what, id } => {
                let message = format!("No {what} has id {id}");
                ext.set("id", id);
                message
            }
            ApiError::Conflict {
                message,
                status,
                action,
            } => {
                if let Some(status) = status {
                    ext.set("status", status.as_str());
                }
                ext.set("action", action);
                message
            }
            ApiError::Guarded {
                message,
                status,
                action,
                reason,
                details,
            } => {
                ext.set("status", status.as_str());
                ext.set("action", action);
                ext.set("reason", reason);
                for (name, value) in details {
                    ext.set(name, value);
                }
                message
            }
            ApiError::Forbidden { message, reason } => {
                ext.set("reason", reason);
                message
            }
            ApiError::Internal => "Internal server error".to_owned(),
        };
        async_graphql::Error {
            message,
            source: None,
            extensions: Some(ext),
        }
    }
}
