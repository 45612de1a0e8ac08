//! Responses list fields in the order the document asked for them (the spec's serialized
//! map ordering), at every level, whatever order the resolvers finish in.

use serde_json::{json, Value};

use crate::helpers::{TestApp, TestDb};

/// The keys of a JSON object as the server sent them. (serde_json's `Value` sorts keys,
/// so the order is read from the raw text.)
fn keys_in_order(raw: &str) -> Vec<String> {
    let map: indexed::Object = serde_json::from_str(raw).expect("a JSON object");
    map.0.into_iter().map(|(key, _)| key).collect()
}

/// A JSON object deserialised into a list of (key, raw value) in the order of the text.
mod indexed {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    pub struct Object(pub Vec<(String, Box<serde_json::value::RawValue>)>);

    impl<'de> Deserialize<'de> for Object {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Keys;
            impl<'de> Visitor<'de> for Keys {
                type Value = Object;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                    let mut out = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        out.push(entry);
                    }
                    Ok(Object(out))
                }
            }
            deserializer.deserialize_map(Keys)
        }
    }
}

/// Walks `raw` along `path` (object keys, or array indexes as numbers) and returns the
/// raw text there.
fn at(raw: &str, path: &[&str]) -> String {
    let mut current = raw.to_string();
    for step in path {
        if let Ok(index) = step.parse::<usize>() {
            let items: Vec<Box<serde_json::value::RawValue>> =
                serde_json::from_str(&current).expect("an array");
            current = items[index].get().to_string();
        } else {
            let map: indexed::Object = serde_json::from_str(&current).expect("an object");
            current = map
                .0
                .into_iter()
                .find(|(key, _)| key == step)
                .unwrap_or_else(|| panic!("no {step} in {current}"))
                .1
                .get()
                .to_string();
        }
    }
    current
}

const DOCUMENT: &str = r#"
query Ordered($withVersion: Boolean!) {
  x: deployments(first: 5) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { ...Head updatedAt events { toStatus kind id } } }
  }
  y: deploymentEvents(first: 5) {
    nodes { occurredAt ... on DeploymentEvent { kind deploymentId } actor }
    pageInfo { endCursor hasNextPage }
  }
  z: deployments(first: 3) {
    edges { node { status version @include(if: $withVersion) id service @skip(if: true) } }
    totalCount
  }
  __typename
}
fragment Head on Deployment { status id version service }
"#;

#[tokio::test]
async fn fields_come_back_in_document_order_at_every_level() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    for i in 0..4 {
        app.create(&format!("service-{i}"), "staging").await;
    }
    // Many runs, so that resolvers finishing in another order would show.
    for _ in 0..25 {
        let response = app
            .client
            .post(app.url("/graphql"))
            .json(&json!({ "query": DOCUMENT, "variables": { "withVersion": true } }))
            .send()
            .await
            .expect("send");
        let raw = response.text().await.expect("a body");
        let value: Value = serde_json::from_str(&raw).expect("JSON");
        assert!(value.get("errors").is_none(), "{value:#}");

        assert_eq!(keys_in_order(&raw), ["data"]);
        let data = at(&raw, &["data"]);
        assert_eq!(keys_in_order(&data), ["x", "y", "z", "__typename"]);
        assert_eq!(
            keys_in_order(&at(&data, &["x"])),
            ["totalCount", "pageInfo", "edges"]
        );
        assert_eq!(
            keys_in_order(&at(&data, &["x", "pageInfo"])),
            ["hasNextPage", "endCursor"]
        );
        for edge in 0..4 {
            let edge_raw = at(&data, &["x", "edges", &edge.to_string()]);
            assert_eq!(keys_in_order(&edge_raw), ["cursor", "node"]);
            let node = at(&edge_raw, &["node"]);
            assert_eq!(
                keys_in_order(&node),
                ["status", "id", "version", "service", "updatedAt", "events"]
            );
            assert_eq!(
                keys_in_order(&at(&node, &["events", "0"])),
                ["toStatus", "kind", "id"]
            );
        }
        assert_eq!(keys_in_order(&at(&data, &["y"])), ["nodes", "pageInfo"]);
        assert_eq!(
            keys_in_order(&at(&data, &["y", "nodes", "0"])),
            ["occurredAt", "kind", "deploymentId", "actor"]
        );
        assert_eq!(
            keys_in_order(&at(&data, &["y", "pageInfo"])),
            ["endCursor", "hasNextPage"]
        );
        assert_eq!(keys_in_order(&at(&data, &["z"])), ["edges", "totalCount"]);
        assert_eq!(
            keys_in_order(&at(&data, &["z", "edges", "0", "node"])),
            ["status", "version", "id"]
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_abstract_node_is_ordered_by_its_concrete_type() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &[]).await;
    let id = app.create("billing", "staging").await;
    let query = r#"query N($id: ID!) {
      node(id: $id) {
        ... on DeploymentEvent { id kind occurredAt }
        ... on Deployment { version status }
        id
        ... on Deployment { service events { actor kind } }
      }
    }"#;
    for _ in 0..10 {
        let raw = app
            .client
            .post(app.url("/graphql"))
            .json(&json!({ "query": query, "variables": { "id": id } }))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("a body");
        let node = at(&raw, &["data", "node"]);
        assert_eq!(
            keys_in_order(&node),
            ["version", "status", "id", "service", "events"]
        );
        assert_eq!(
            keys_in_order(&at(&node, &["events", "0"])),
            ["actor", "kind"]
        );
    }
    app.stop().await;
}
