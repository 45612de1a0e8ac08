//! README.md's walk-throughs, run exactly as written: every ```graphql block of a section
//! in order, against a fresh server, with the ids a newcomer would copy. A block that
//! begins `# It is X below.` gives the deployment id that replaces X in the blocks after
//! it; `# Refused: CODE` must fail with that code; `# After the deadline` is asked again
//! until the deployment has failed (the contract gives the server 2 seconds); every other
//! block must succeed. The claims the text makes are checked too.
//! `freeze.rs` runs the freeze-window walk-through through `run` too.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::helpers::{TestApp, TestDb};

/// The ```graphql blocks of one README section, in order.
fn blocks(heading: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme.find(heading).expect("README has the walk-through");
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .split("```graphql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// The id a mutation's answer gives: its deployment's, or its own (a freeze window).
fn deployment_id(data: &Value) -> Option<String> {
    data.as_object()?.values().find_map(|payload| {
        payload["deployment"]["id"]
            .as_str()
            .or(payload["id"].as_str())
            .map(str::to_owned)
    })
}

fn stop<'a>(train: &'a Value, environment: &str) -> &'a Value {
    train["releaseTrain"]["stops"]
        .as_array()
        .and_then(|stops| {
            stops
                .iter()
                .find(|stop| stop["environment"]["name"] == environment)
        })
        .unwrap_or_else(|| panic!("a stop for {environment}: {train:#}"))
}

/// Runs every block of `heading` in order; one answer per block, in order: its `data`,
/// or for a refused block its error.
pub async fn run(app: &TestApp, heading: &str) -> Vec<Value> {
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut answers = Vec::new();
    for block in blocks(heading) {
        let mut document = block.clone();
        for (placeholder, id) in &ids {
            document = document.replace(placeholder.as_str(), id);
        }
        let first_line = document.lines().next().unwrap_or_default().to_owned();
        let mut body = app.graphql(&document, json!({})).await;
        if first_line.starts_with("# After the deadline") {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(3500);
            while body["data"]["deployment"]["status"] != "FAILED"
                && std::time::Instant::now() < until
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                body = app.graphql(&document, json!({})).await;
            }
        }
        if let Some(code) = first_line
            .strip_prefix("# Refused: ")
            .and_then(|rest| rest.split_whitespace().next())
        {
            let got = body["errors"][0]["extensions"]["code"].as_str();
            assert_eq!(got, Some(code), "{document}\n{body:#}");
            answers.push(body["errors"][0].clone());
            continue;
        }
        assert!(body.get("errors").is_none(), "{document}\n{body:#}");
        let data = body["data"].clone();
        if let Some(name) = first_line
            .strip_prefix("# It is ")
            .and_then(|rest| rest.strip_suffix(" below."))
        {
            let id = deployment_id(&data).unwrap_or_else(|| panic!("an id: {body:#}"));
            ids.insert(name.to_owned(), id);
        }
        if first_line.starts_with("# One approval of two") {
            assert_eq!(
                data["approveDeployment"]["deployment"]["status"],
                "PENDING_APPROVAL"
            );
        }
        answers.push(data);
    }
    answers
}

#[tokio::test]
async fn the_readme_release_train_walkthrough_runs_as_written() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let answers = run(&app, "## The release train, step by step").await;
    assert!(answers.len() > 20, "the walk-through has its steps");
    let trains: Vec<&Value> = answers
        .iter()
        .filter(|data| data.get("releaseTrain").is_some())
        .collect();
    assert_eq!(trains.len(), 2, "the walk-through reads the train twice");
    // "1.0.1 live in production and 1.0.0 in testing and staging"
    assert_eq!(stop(trains[0], "production")["live"]["version"], "1.0.1");
    assert_eq!(stop(trains[0], "staging")["live"]["version"], "1.0.0");
    assert_eq!(stop(trains[0], "testing")["live"]["version"], "1.0.0");
    // "and 1.0.0 is live in production again"
    assert_eq!(stop(trains[1], "production")["live"]["version"], "1.0.0");
    let cancelled = answers
        .iter()
        .find_map(|data| data.get("cancelDeployment"))
        .expect("the walk-through cancels");
    assert_eq!(cancelled["deployment"]["status"], "CANCELLED");
    app.stop().await;
}

#[tokio::test]
async fn the_readme_start_timeout_walkthrough_runs_as_written() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let answers = run(&app, "## A start that never reports back").await;
    let started = answers
        .iter()
        .find_map(|data| data.get("startDeployment"))
        .expect("the walk-through starts");
    assert!(started["deployment"]["startDeadline"].is_string());
    let last = answers.last().expect("answers");
    let deployment = &last["deployment"];
    assert_eq!(deployment["status"], "FAILED", "{last:#}");
    let failed = deployment["events"]
        .as_array()
        .and_then(|events| events.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["kind"], "FAILED");
    assert_eq!(failed["actor"], "shiplog");
    assert!(failed["note"]
        .as_str()
        .is_some_and(|n| n.contains("timeout")));
    app.stop().await;
}
