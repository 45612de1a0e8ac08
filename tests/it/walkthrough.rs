//! README.md's release-train walk-through, run exactly as written: every ```graphql block
//! of that section in order, against a fresh server, with the ids a newcomer would copy.
//! A block that begins `# It is X below.` gives the deployment id that replaces X in the
//! blocks after it; `# Refused: CODE` must fail with that code; every other block must
//! succeed. The claims the text makes about the train are checked too.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::helpers::{TestApp, TestDb};

const SECTION: &str = "## The release train, step by step";

/// The ```graphql blocks of the walk-through, in order.
fn blocks() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme.find(SECTION).expect("README has the walk-through");
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .split("```graphql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// The first `deployment.id` in a mutation's answer.
fn deployment_id(data: &Value) -> Option<String> {
    data.as_object()?
        .values()
        .find_map(|payload| payload["deployment"]["id"].as_str().map(str::to_owned))
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

#[tokio::test]
async fn the_readme_release_train_walkthrough_runs_as_written() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut trains = Vec::new();
    let blocks = blocks();
    assert!(blocks.len() > 20, "the walk-through has its steps");
    for block in &blocks {
        let mut document = block.clone();
        for (placeholder, id) in &ids {
            document = document.replace(placeholder.as_str(), id);
        }
        let first_line = document.lines().next().unwrap_or_default().to_owned();
        let body = app.graphql(&document, json!({})).await;
        if let Some(code) = first_line
            .strip_prefix("# Refused: ")
            .and_then(|rest| rest.split_whitespace().next())
        {
            let got = body["errors"][0]["extensions"]["code"].as_str();
            assert_eq!(got, Some(code), "{document}\n{body:#}");
            continue;
        }
        assert!(body.get("errors").is_none(), "{document}\n{body:#}");
        let data = &body["data"];
        if let Some(name) = first_line
            .strip_prefix("# It is ")
            .and_then(|rest| rest.strip_suffix(" below."))
        {
            let id = deployment_id(data).unwrap_or_else(|| panic!("an id: {body:#}"));
            ids.insert(name.to_owned(), id);
        }
        if first_line.starts_with("# One approval of two") {
            assert_eq!(
                data["approveDeployment"]["deployment"]["status"],
                "PENDING_APPROVAL"
            );
        }
        if document.contains("releaseTrain") {
            trains.push(data.clone());
        }
        if document.contains("cancelDeployment") {
            assert_eq!(
                data["cancelDeployment"]["deployment"]["status"],
                "CANCELLED"
            );
        }
    }
    assert_eq!(trains.len(), 2, "the walk-through reads the train twice");
    // "1.0.1 live in production and 1.0.0 in testing and staging"
    assert_eq!(stop(&trains[0], "production")["live"]["version"], "1.0.1");
    assert_eq!(stop(&trains[0], "staging")["live"]["version"], "1.0.0");
    assert_eq!(stop(&trains[0], "testing")["live"]["version"], "1.0.0");
    // "and 1.0.0 is live in production again"
    assert_eq!(stop(&trains[1], "production")["live"]["version"], "1.0.0");
    app.stop().await;
}
