//! GITHUB_ACTIONS: a `workflow_dispatch` through GitHub's REST API.
//!
//! `POST {api}/repos/{owner}/{name}/actions/workflows/{workflow}/dispatches` with the
//! token read from the named environment variable at each attempt. GitHub answers 204;
//! any other 2xx counts as success too. The API URL is the operator's, so the address
//! rule does not apply to it.

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use serde_json::{json, Map, Value};
use url::Url;

use super::{with_final_status, Executor};
use crate::domain::integrations::{AttemptReport, GitHubActionsSettings, TriggerRequest};
use crate::integrations::client::{clip, status_error, Answer, AttemptClock, Route, Sender};

/// Triggers a GitHub Actions workflow.
#[derive(Debug, Clone)]
pub struct GitHubActions {
    settings: GitHubActionsSettings,
}

impl GitHubActions {
    pub fn new(settings: GitHubActionsSettings) -> Self {
        Self { settings }
    }

    /// The dispatch URL under the API URL `api` (a trailing slash is ignored; path
    /// segments are percent-encoded).
    pub fn dispatch_url(&self, api: &str) -> Result<Url, String> {
        let mut url = Url::parse(api.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or("the GitHub API URL is not a valid http or https URL")?;
        url.set_query(None);
        url.set_fragment(None);
        let (owner, name) = self
            .settings
            .repository
            .split_once('/')
            .filter(|(o, n)| plain_segment(o) && plain_segment(n))
            .ok_or("repository must be owner/name")?;
        let workflow = self.settings.workflow.as_str();
        if workflow.trim().is_empty() || workflow == "." || workflow == ".." {
            return Err("workflow must be a file name or an id".to_owned());
        }
        url.path_segments_mut()
            .map_err(|_| "the GitHub API URL is not a valid http or https URL")?
            .pop_if_empty()
            .extend([
                "repos",
                owner,
                name,
                "actions",
                "workflows",
                workflow,
                "dispatches",
            ]);
        Ok(url)
    }

    /// The request body: the workflow's ref and its inputs.
    pub fn body(&self, request: &TriggerRequest) -> Value {
        let s = &self.settings;
        let mut inputs = Map::new();
        inputs.insert(
            s.environment_input.clone(),
            Value::String(request.environment.clone()),
        );
        inputs.insert(s.ref_input.clone(), Value::String(request.git_ref.clone()));
        inputs.insert(
            "deployment_id".to_owned(),
            Value::String(request.deployment_id.to_string()),
        );
        inputs.insert("actor".to_owned(), Value::String(request.actor.clone()));
        inputs.insert(
            "action".to_owned(),
            Value::String(request.action.lower().to_owned()),
        );
        json!({ "ref": s.workflow_ref, "inputs": inputs })
    }

    async fn attempt(
        &self,
        sender: &Sender,
        request: &TriggerRequest,
        token: &str,
    ) -> Result<Answer, String> {
        let url = self.dispatch_url(&sender.options().github_api_url)?;
        let mut headers = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            format!(
                "environment variable {} does not hold a valid token",
                self.settings.token_env
            )
        })?;
        bearer.set_sensitive(true);
        headers.insert(AUTHORIZATION, bearer);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static("2022-11-28"),
        );
        let body = serde_json::to_vec(&self.body(request))
            .map_err(|_| "could not encode the request".to_owned())?;
        sender
            .post_json(Route::Operator, url.as_str(), headers, body)
            .await
    }
}

/// One path segment as GitHub names an owner or repository: not empty, no `/`, not a
/// dot segment.
fn plain_segment(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains('/') && s != "." && s != ".."
}

/// GitHub's `message`, when its answer has one, without the token.
fn github_message(body: &[u8], token: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value.get("message")?.as_str()?.trim();
    if message.is_empty() || (!token.is_empty() && message.contains(token)) {
        return None;
    }
    Some(clip(message, 200))
}

#[async_trait]
impl Executor for GitHubActions {
    async fn trigger(&self, sender: &Sender, request: &TriggerRequest) -> AttemptReport {
        let clock = AttemptClock::start();
        let env = &self.settings.token_env;
        let token = match std::env::var(env) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let error = format!("environment variable {env} is not set");
                return clock.report(None, Some(error), false, true);
            }
        };
        match self.attempt(sender, request, &token).await {
            Ok(answer) if (200..300).contains(&answer.status) => {
                clock.report(Some(answer.status), None, true, false)
            }
            Ok(answer) => {
                let mut error = status_error(&answer);
                if let Some(message) = github_message(&answer.body, &token) {
                    error = format!("{error}: {message}");
                }
                with_final_status(clock.report(Some(answer.status), Some(error), false, false))
            }
            Err(error) => {
                // The settings or the token cannot be used: retrying will not mend that.
                let is_final = error.starts_with("repository")
                    || error.starts_with("workflow")
                    || error.starts_with("environment variable")
                    || error.starts_with("the GitHub API URL");
                clock.report(None, Some(error), false, is_final)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::integrations::ExecutionAction;
    use uuid::Uuid;

    fn settings(repository: &str, workflow: &str) -> GitHubActionsSettings {
        GitHubActionsSettings {
            repository: repository.to_owned(),
            workflow: workflow.to_owned(),
            workflow_ref: "main".to_owned(),
            environment_input: "environment".to_owned(),
            ref_input: "ref".to_owned(),
            token_env: "SHIPLOG_TEST_UNSET_TOKEN_1f8e".to_owned(),
        }
    }

    #[test]
    fn urls() {
        let table = [
            (
                "https://api.github.com",
                "acme/web",
                "deploy.yml",
                "https://api.github.com/repos/acme/web/actions/workflows/deploy.yml/dispatches",
            ),
            (
                "https://api.github.com/",
                "acme/web",
                "123",
                "https://api.github.com/repos/acme/web/actions/workflows/123/dispatches",
            ),
            (
                "https://ghe.example.com/api/v3/",
                "acme/web",
                "deploy prod.yml",
                "https://ghe.example.com/api/v3/repos/acme/web/actions/workflows/deploy%20prod.yml/dispatches",
            ),
            (
                "http://127.0.0.1:8080",
                "acme/web",
                "a/b?.yml",
                "http://127.0.0.1:8080/repos/acme/web/actions/workflows/a%2Fb%3F.yml/dispatches",
            ),
        ];
        for (api, repo, workflow, want) in table {
            let got = GitHubActions::new(settings(repo, workflow)).dispatch_url(api);
            assert_eq!(
                got.map(String::from).as_deref(),
                Ok(want),
                "{api} {workflow}"
            );
        }
        for (api, repo, workflow) in [
            ("not a url", "acme/web", "d.yml"),
            ("ftp://x", "acme/web", "d.yml"),
            ("https://api.github.com", "acme", "d.yml"),
            ("https://api.github.com", "acme/web/x", "d.yml"),
            ("https://api.github.com", "../web", "d.yml"),
            ("https://api.github.com", "acme/web", ".."),
            ("https://api.github.com", "acme/web", ""),
        ] {
            assert!(
                GitHubActions::new(settings(repo, workflow))
                    .dispatch_url(api)
                    .is_err(),
                "{api} {repo} {workflow}"
            );
        }
    }

    #[test]
    fn body() {
        let mut s = settings("acme/web", "d.yml");
        s.environment_input = "target".to_owned();
        s.ref_input = "version".to_owned();
        s.workflow_ref = "release".to_owned();
        let id = Uuid::now_v7();
        let request = TriggerRequest {
            execution_id: Uuid::now_v7(),
            action: ExecutionAction::Rollback,
            deployment_id: id,
            service: "web".to_owned(),
            environment: "production".to_owned(),
            git_ref: "1.2.3".to_owned(),
            actor: "ana".to_owned(),
            deployment: json!({}),
            now: chrono::Utc::now(),
        };
        assert_eq!(
            GitHubActions::new(s).body(&request),
            json!({"ref": "release", "inputs": {
                "target": "production", "version": "1.2.3",
                "deployment_id": id.to_string(), "actor": "ana", "action": "rollback"}})
        );
    }

    #[test]
    fn messages_never_carry_the_token() {
        assert_eq!(
            github_message(br#"{"message":"Unexpected inputs provided"}"#, "tok"),
            Some("Unexpected inputs provided".to_owned())
        );
        assert_eq!(
            github_message(br#"{"message":"bad tok here"}"#, "tok"),
            None
        );
        assert_eq!(github_message(b"<html>", "tok"), None);
    }

    #[tokio::test]
    async fn missing_token_is_final() {
        let sender = crate::integrations::client::Sender::new(Default::default()).expect("sender");
        let request = TriggerRequest {
            execution_id: Uuid::now_v7(),
            action: ExecutionAction::Deploy,
            deployment_id: Uuid::now_v7(),
            service: "web".to_owned(),
            environment: "staging".to_owned(),
            git_ref: "1.0.0".to_owned(),
            actor: "ana".to_owned(),
            deployment: json!({}),
            now: chrono::Utc::now(),
        };
        let report = GitHubActions::new(settings("acme/web", "d.yml"))
            .trigger(&sender, &request)
            .await;
        assert!(report.is_final && !report.succeeded && report.status_code.is_none());
        assert_eq!(
            report.error.as_deref(),
            Some("environment variable SHIPLOG_TEST_UNSET_TOKEN_1f8e is not set")
        );
    }
}
