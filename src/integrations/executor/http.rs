//! HTTP: a Standard Webhooks request to the target's URL, signed with its secret, with
//! the execution id as `webhook-id`. A 2xx succeeds. The address rule applies.

use async_trait::async_trait;
use chrono::SecondsFormat;
use serde_json::{json, Value};

use super::{with_final_status, Executor};
use crate::domain::destination::check_secret;
use crate::domain::integrations::{AttemptReport, HttpSettings, TriggerRequest};
use crate::integrations::client::{AttemptClock, Sender};

/// Sends a signed request to an HTTP executor.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    settings: HttpSettings,
}

impl HttpExecutor {
    pub fn new(settings: HttpSettings) -> Self {
        Self { settings }
    }

    /// The request body: `deployment.deploy` or `deployment.rollback`, the time of the
    /// attempt, and what to deploy where.
    pub fn body(request: &TriggerRequest) -> Value {
        json!({
            "type": format!("deployment.{}", request.action.lower()),
            "timestamp": request.now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": {
                "deployment": request.deployment,
                "environment": request.environment,
                "ref": request.git_ref,
                "actor": request.actor,
            },
        })
    }
}

#[async_trait]
impl Executor for HttpExecutor {
    async fn trigger(&self, sender: &Sender, request: &TriggerRequest) -> AttemptReport {
        let clock = AttemptClock::start();
        let key = match check_secret(&self.settings.secret) {
            Ok(key) => key,
            Err(error) => return clock.report(None, Some(error), false, true),
        };
        let body = match serde_json::to_vec(&Self::body(request)) {
            Ok(body) => body,
            Err(_) => {
                let error = "could not encode the request".to_owned();
                return clock.report(None, Some(error), false, true);
            }
        };
        let msg_id = request.execution_id.to_string();
        let result = sender
            .send_signed(&clock, &self.settings.url, &key, &msg_id, &body)
            .await;
        // A URL that breaks the URL rule will not mend either.
        let bad_url = matches!(&result, Err(e) if e.starts_with("url "));
        let mut report = with_final_status(clock.report_answer(result));
        report.is_final |= bad_url;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::integrations::ExecutionAction;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn request(action: ExecutionAction) -> TriggerRequest {
        TriggerRequest {
            execution_id: Uuid::now_v7(),
            action,
            deployment_id: Uuid::now_v7(),
            service: "web".to_owned(),
            environment: "production".to_owned(),
            git_ref: "2.0.0".to_owned(),
            actor: "ana".to_owned(),
            deployment: json!({"id": "d1", "version": "2.0.0"}),
            now: chrono::Utc
                .timestamp_millis_opt(1_700_000_000_123)
                .single()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn body() {
        assert_eq!(
            HttpExecutor::body(&request(ExecutionAction::Deploy)),
            json!({"type": "deployment.deploy", "timestamp": "2023-11-14T22:13:20.123Z",
                "data": {"deployment": {"id": "d1", "version": "2.0.0"},
                    "environment": "production", "ref": "2.0.0", "actor": "ana"}})
        );
        assert_eq!(
            HttpExecutor::body(&request(ExecutionAction::Rollback))["type"],
            "deployment.rollback"
        );
    }

    #[tokio::test]
    async fn bad_settings_are_final_and_quiet() {
        let sender = Sender::new(Default::default()).expect("sender");
        let bad_secret = HttpExecutor::new(HttpSettings {
            url: "https://example.com/hook".to_owned(),
            secret: "whsec_tooshort".to_owned(),
        });
        let report = bad_secret
            .trigger(&sender, &request(ExecutionAction::Deploy))
            .await;
        assert!(report.is_final && !report.succeeded);
        let error = report.error.unwrap_or_default();
        assert!(!error.contains("tooshort"), "{error}");

        let bad_url = HttpExecutor::new(HttpSettings {
            url: "ftp://example.com/".to_owned(),
            secret: format!("whsec_{}", "QUJD".repeat(8)),
        });
        let report = bad_url
            .trigger(&sender, &request(ExecutionAction::Deploy))
            .await;
        assert!(report.is_final && !report.succeeded, "{report:?}");
    }
}
