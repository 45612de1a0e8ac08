//! Schema-level tests: the SDL against the contract and the committed schema.graphql,
//! the cost of a page in SQL statements, and the document limits, through
//! `Schema::execute` without HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use async_graphql::{Request, Variables};
use serde_json::{json, Value};
use shiplog::graphql;

use crate::helpers::{create_input, TestDb, CREATE};

/// What a schema promises clients, one line per fact:
/// `type Deployment implements Node`, `field Query.deployments(first: Int): DeploymentConnection!`,
/// `input CreateDeploymentInput.risk: String`, `enum DeploymentStatus.APPROVED`.
fn promises(sdl: &str) -> BTreeSet<String> {
    let doc = parse_schema(sdl).expect("the SDL parses");
    let mut out = BTreeSet::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else {
            continue;
        };
        let ty = ty.node;
        let name = ty.name.node.to_string();
        match ty.kind {
            TypeKind::Scalar => {
                out.insert(format!("scalar {name}"));
            }
            TypeKind::Object(o) => {
                for i in o.implements {
                    out.insert(format!("type {name} implements {}", i.node));
                }
                for f in o.fields {
                    let f = f.node;
                    out.insert(format!("field {name}.{}: {}", f.name.node, f.ty.node));
                    for a in f.arguments {
                        let a = a.node;
                        out.insert(format!(
                            "field {name}.{}({}: {})",
                            f.name.node, a.name.node, a.ty.node
                        ));
                    }
                }
            }
            TypeKind::Interface(i) => {
                for f in i.fields {
                    out.insert(format!(
                        "interface {name}.{}: {}",
                        f.node.name.node, f.node.ty.node
                    ));
                }
            }
            TypeKind::Enum(e) => {
                for v in e.values {
                    out.insert(format!("enum {name}.{}", v.node.value.node));
                }
            }
            TypeKind::InputObject(i) => {
                for f in i.fields {
                    out.insert(format!(
                        "input {name}.{}: {}",
                        f.node.name.node, f.node.ty.node
                    ));
                }
            }
            TypeKind::Union(u) => {
                for m in u.members {
                    out.insert(format!("union {name} = {}", m.node));
                }
            }
        }
    }
    out
}

#[test]
fn the_committed_schema_graphql_is_what_the_code_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let exported = graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &exported).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).expect("read schema.graphql");
    assert!(
        committed == exported,
        "schema.graphql is stale: run `cargo run -- export-schema > schema.graphql` \
         (or the tests with UPDATE_SCHEMA=1)"
    );
}

#[test]
fn the_schema_keeps_every_promise_of_the_contract() {
    let contract_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/contract.graphql");
    let contract = std::fs::read_to_string(contract_path).expect("read the contract");
    let ours = promises(&graphql::sdl());
    let missing: Vec<_> = promises(&contract).difference(&ours).cloned().collect();
    assert!(
        missing.is_empty(),
        "the schema breaks the contract: {missing:#?}"
    );
}

/// The vendored copy is the part of the shared contract that has landed: version 1 now,
/// growing as each part of version 2 lands. Every promise it makes is one the shared
/// contract makes, so it can lag the contract but never contradict it.
#[test]
fn the_vendored_contract_is_part_of_the_shared_one() {
    // The design folder sits beside the repository where the team works and in CI.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/design/contract.graphql");
    let Ok(shared) = std::fs::read_to_string(shared) else {
        return;
    };
    let vendored = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/contract.graphql"),
    )
    .expect("read the vendored contract");
    let not_shared: Vec<_> = promises(&vendored)
        .difference(&promises(&shared))
        .cloned()
        .collect();
    assert!(
        not_shared.is_empty(),
        "tests/contract/contract.graphql promises what ../shared/design/contract.graphql does not: {not_shared:#?}"
    );
}

#[test]
fn additions_to_contract_inputs_and_arguments_are_optional() {
    // A new required input field or argument would break every existing client.
    let contract_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/contract.graphql");
    let contract = promises(&std::fs::read_to_string(contract_path).expect("read the contract"));
    let added_required: Vec<_> = promises(&graphql::sdl())
        .difference(&contract)
        .filter(|p| (p.starts_with("input ") || p.contains('(')) && p.ends_with('!'))
        .cloned()
        .collect();
    assert!(added_required.is_empty(), "{added_required:#?}");
}

async fn execute(schema: &graphql::ShiplogSchema, query: &str, variables: Value) -> Value {
    let response = schema
        .execute(Request::new(query).variables(Variables::from_json(variables)))
        .await;
    serde_json::to_value(&response).expect("serialize the response")
}

const PAGE_WITH_EVENTS: &str = r#"
query Page($first: Int) {
  deployments(first: $first) {
    edges { cursor node { id status events { id kind actor deployment { id service } } } }
    nodes { id events { kind } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

#[tokio::test]
async fn a_page_with_nested_events_costs_the_same_statements_whatever_its_size() {
    let db = TestDb::new();
    let (schema, store) = db.schema().await;
    for i in 0..60 {
        let body = execute(
            &schema,
            CREATE,
            json!({ "input": create_input(&format!("svc-{}", i % 7), "staging") }),
        )
        .await;
        assert!(body.get("errors").is_none(), "{body:#}");
    }

    let mut costs = BTreeMap::new();
    for first in [1, 10, 50] {
        let before = store.read_statements();
        let body = execute(&schema, PAGE_WITH_EVENTS, json!({ "first": first })).await;
        assert!(body.get("errors").is_none(), "{body:#}");
        let edges = body["data"]["deployments"]["edges"]
            .as_array()
            .expect("edges");
        assert_eq!(edges.len(), first);
        assert!(edges
            .iter()
            .all(|e| e["node"]["events"][0]["kind"] == "CREATED"));
        costs.insert(first, store.read_statements() - before);
    }
    let distinct: BTreeSet<_> = costs.values().collect();
    assert_eq!(distinct.len(), 1, "statements by page size: {costs:?}");
    // The page and the events of all its deployments; the events' deployment is known.
    assert_eq!(costs[&50], 2, "statements by page size: {costs:?}");
}

#[tokio::test]
async fn documents_past_the_depth_limit_are_refused_before_running() {
    let db = TestDb::new();
    let (schema, store) = db.schema().await;
    let before = store.read_statements();
    let deep = "{ deployments { nodes { events { deployment { events { deployment { events { \
                deployment { events { deployment { events { deployment { events { id } } } } } } } } } } \
                } } } }";
    let body = execute(&schema, deep, json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{body:#}"
    );
    assert_eq!(store.read_statements(), before, "nothing ran");
}

#[tokio::test]
async fn documents_past_the_complexity_limit_are_refused() {
    let db = TestDb::new();
    let (schema, _store) = db.schema().await;
    let fields = "id service environment version requester workRefs risk rollbackPlan status \
                  events { id kind actor note fromStatus toStatus occurredAt cursor }";
    let aliases: String = (0..10)
        .map(|i| format!("p{i}: deployments(first: 100) {{ nodes {{ {fields} }} }} "))
        .collect();
    let body = execute(&schema, &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{body:#}"
    );

    // A full page of 100 with every field and events stays within the limit.
    let one = format!("{{ deployments(first: 100) {{ totalCount nodes {{ {fields} }} }} }}");
    let body = execute(&schema, &one, json!({})).await;
    assert!(body.get("errors").is_none(), "{body:#}");
}
