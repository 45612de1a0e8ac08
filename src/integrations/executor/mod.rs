//! Deploy executors: what triggering a deployment means for each kind of target.
//!
//! Adding a kind: one file with a type that implements [`Executor`], and one arm in
//! [`executor_for`].

mod github;
mod http;

use async_trait::async_trait;

pub use github::GitHubActions;
pub use http::HttpExecutor;

use super::client::Sender;
use crate::domain::integrations::{AttemptReport, ExecutorSettings, TriggerRequest};

/// Answers that retrying cannot mend: 400, 401, 403, 404, 422.
pub const FINAL_STATUSES: [u16; 5] = [400, 401, 403, 404, 422];

/// Whether an executor's answer is final (no retry).
pub fn is_final_status(status: u16) -> bool {
    FINAL_STATUSES.contains(&status)
}

/// Triggers one kind of executor.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Makes one attempt. `is_final` is set when retrying cannot help.
    async fn trigger(&self, sender: &Sender, request: &TriggerRequest) -> AttemptReport;
}

/// The executor for a target's settings.
pub fn executor_for(settings: &ExecutorSettings) -> Box<dyn Executor> {
    match settings {
        ExecutorSettings::GitHubActions(s) => Box::new(GitHubActions::new(s.clone())),
        ExecutorSettings::Http(s) => Box::new(HttpExecutor::new(s.clone())),
    }
}

/// Marks a failed report final when its status is.
fn with_final_status(mut report: AttemptReport) -> AttemptReport {
    if !report.succeeded && report.status_code.is_some_and(is_final_status) {
        report.is_final = true;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::client::AttemptClock;

    #[test]
    fn final_statuses() {
        for (status, fin) in [
            (400, true),
            (401, true),
            (403, true),
            (404, true),
            (422, true),
            (408, false),
            (409, false),
            (429, false),
            (500, false),
            (502, false),
            (503, false),
            (302, false),
        ] {
            assert_eq!(is_final_status(status), fin, "{status}");
            let clock = AttemptClock::start();
            let report = with_final_status(clock.report(
                Some(status),
                Some(format!("HTTP {status}")),
                false,
                false,
            ));
            assert_eq!(report.is_final, fin, "{status}");
        }
        let clock = AttemptClock::start();
        let refused = with_final_status(clock.report(None, Some("x".into()), false, false));
        assert!(!refused.is_final);
    }
}
