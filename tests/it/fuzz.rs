//! Bounded, deterministic fuzzing of the GraphQL edge: random and mangled documents,
//! valid documents with hostile variables, and random HTTP bodies. Whatever comes in,
//! the server answers, every error carries a contract code, no message leaks internals,
//! and random input never causes an internal error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_graphql::{Request, Variables};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use shiplog::graphql::ShiplogSchema;

use crate::helpers::{action, create_input, TestApp, TestDb, CREATE};

// ---------------------------------------------------------------------------------------
// What every response must satisfy
// ---------------------------------------------------------------------------------------

/// The codes contract.md allows in a GraphQL response.
const CONTRACT_CODES: [&str; 7] = [
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "FORBIDDEN",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "INTERNAL_SERVER_ERROR",
];

/// Errors the HTTP layer answers itself, before any GraphQL runs.
const TRANSPORT_CODES: [&str; 8] = [
    "BAD_REQUEST",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "CSRF_PREVENTED",
    "NOT_ACCEPTABLE",
    "METHOD_NOT_ALLOWED",
    "BATCH_TOO_LARGE",
    "RESPONSE_TOO_LARGE",
];

/// How long a subscription gets to say its first thing (an error comes at once; a live
/// stream with nothing to replay says nothing, and is dropped).
const FIRST_ITEM: Duration = Duration::from_millis(50);

/// Tells of SQL, file paths or stack traces in a message.
fn leak(message: &str) -> Option<&'static str> {
    let lower = message.to_lowercase();
    [
        ("SELECT", message.contains("SELECT")),
        ("INSERT", message.contains("INSERT")),
        ("sqlite", lower.contains("sqlite")),
        ("/tmp", message.contains("/tmp")),
        ("panicked", lower.contains("panicked")),
    ]
    .into_iter()
    .find_map(|(what, found)| found.then_some(what))
}

/// Checks every error of one GraphQL response (a JSON object): a code among `codes`,
/// never INTERNAL_SERVER_ERROR, and a message that leaks nothing.
fn check_response(body: &Value, codes: &[&str]) -> Result<(), TestCaseError> {
    let Some(errors) = body.get("errors") else {
        return Ok(());
    };
    let errors = errors
        .as_array()
        .ok_or_else(|| TestCaseError::fail(format!("errors is not a list: {body}")))?;
    for err in errors {
        let code = err["extensions"]["code"].as_str().ok_or_else(|| {
            TestCaseError::fail(format!("an error without extensions.code: {err}"))
        })?;
        prop_assert!(
            codes.contains(&code),
            "code {} is not in the contract: {}",
            code,
            err
        );
        prop_assert_ne!(
            code,
            "INTERNAL_SERVER_ERROR",
            "random input caused an internal error: {}",
            err
        );
        let message = err["message"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "an error without a message: {}", err);
        if let Some(what) = leak(message) {
            return Err(TestCaseError::fail(format!(
                "the message leaks {what}: {err}"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Inputs. The strategies are boxed: unboxed, the value trees nested inside `case` need
// stack frames that overflow the test thread's stack in debug builds.
// ---------------------------------------------------------------------------------------

const DEPLOYMENT: &str = r#"
query One($id: ID!) {
  deployment(id: $id) {
    id service environment version requester workRefs risk rollbackPlan status
    reviewedBy reviewedAt createdAt updatedAt
    events { id cursor deploymentId kind actor note fromStatus toStatus occurredAt
             deployment { id status } }
  }
}"#;

const PAGE: &str = r#"
query Page($filter: DeploymentFilter, $first: Int, $after: String) {
  deployments(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { id service status events { kind } } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"#;

const FEED: &str = r#"
query Feed($filter: DeploymentEventFilter, $first: Int, $after: String) {
  deploymentEvents(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id kind actor note fromStatus toStatus occurredAt deployment { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

const NODE: &str = r#"
query Node($id: ID!) {
  node(id: $id) {
    id __typename
    ... on Deployment { status events { id } }
    ... on DeploymentEvent { kind cursor deploymentId }
  }
}"#;

const FRAGMENTS: &str = r#"
query Fragments($first: Int) {
  deployments(first: $first) { nodes { ...D } edges { node { ...D } } }
}
fragment D on Deployment { id status reviewedBy events { ...E } }
fragment E on DeploymentEvent { id kind deployment { id } }"#;

const SUBSCRIPTION: &str = r#"
subscription Follow($filter: DeploymentEventFilter, $after: String) {
  deploymentEvents(filter: $filter, after: $after) { id cursor kind toStatus deployment { id } }
}"#;

const LITERALS: &str = r#"
{
  deployments(first: 5, filter: { status: [APPROVED, PENDING_APPROVAL], service: "billing" }) {
    totalCount
  }
  deploymentEvents(first: 3, filter: { kind: [CREATED], environment: "production" }) {
    nodes { id }
  }
}"#;

const INLINE_CREATE: &str = r#"
mutation {
  createDeployment(input: { service: "s", environment: "production", version: "v",
                            requester: "r", workRefs: ["A"], rollbackPlan: "p" }) {
    deployment { id } event { cursor }
  }
}"#;

const TWO_OPERATIONS: &str = r#"
query A { __typename }
query B($first: Int) { deployments(first: $first) { totalCount } }"#;

const INTROSPECTION: &str = r#"
{ __schema { queryType { name } types { name kind fields { name args { name } } } } }"#;

const SUBSCRIPTION_LITERALS: &str = r#"
subscription {
  deploymentEvents(filter: { kind: [CREATED, APPROVED], service: "billing" }) { id kind }
}"#;

const TWO_SUBSCRIPTIONS: &str = r#"
subscription A { deploymentEvents { id } }
subscription B($after: String) { deploymentEvents(after: $after) { cursor } }"#;

/// Valid subscriptions, to run as streams.
fn subscription_corpus() -> Vec<String> {
    [SUBSCRIPTION, SUBSCRIPTION_LITERALS, TWO_SUBSCRIPTIONS]
        .map(str::to_owned)
        .to_vec()
}

/// Valid documents of the contract, to use as they are and as seeds for mangling.
fn corpus() -> Vec<String> {
    let mut docs: Vec<String> = [
        CREATE,
        DEPLOYMENT,
        PAGE,
        FEED,
        NODE,
        FRAGMENTS,
        SUBSCRIPTION,
        LITERALS,
        INLINE_CREATE,
        TWO_OPERATIONS,
        INTROSPECTION,
    ]
    .iter()
    .map(|d| d.to_string())
    .collect();
    for mutation in [
        "approveDeployment",
        "rejectDeployment",
        "startDeployment",
        "succeedDeployment",
        "failDeployment",
        "rollBackDeployment",
        "cancelDeployment",
    ] {
        docs.push(action(mutation));
    }
    docs
}

/// Ids, cursors and names that exist, so that random requests also reach real rows.
#[derive(Debug, Clone, Default)]
struct Known {
    ids: Vec<String>,
    event_ids: Vec<String>,
    cursors: Vec<String>,
}

/// Creates a few deployments through `run` (one GraphQL call: document, variables ->
/// response data) and collects their ids and cursors.
async fn seed<F, Fut>(run: F) -> Known
where
    F: Fn(String, Value) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut known = Known::default();
    for (service, environment) in [("billing", "production"), ("search", "staging")] {
        let data = run(
            CREATE.to_owned(),
            json!({ "input": create_input(service, environment) }),
        )
        .await;
        let payload = &data["createDeployment"];
        let id = payload["deployment"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        known
            .event_ids
            .push(payload["event"]["id"].as_str().unwrap().to_owned());
        known
            .cursors
            .push(payload["event"]["cursor"].as_str().unwrap().to_owned());
        let data = run(
            action("approveDeployment"),
            json!({ "input": { "id": id, "actor": "bob", "note": "ok" } }),
        )
        .await;
        known.cursors.push(
            data["approveDeployment"]["event"]["cursor"]
                .as_str()
                .expect("a cursor")
                .to_owned(),
        );
        known.ids.push(id);
    }
    let data = run(PAGE.to_owned(), json!({ "first": 1 })).await;
    if let Some(cursor) = data["deployments"]["pageInfo"]["endCursor"].as_str() {
        known.cursors.push(cursor.to_owned());
    }
    known
}

/// One request: a document, its variables and maybe an operation name.
#[derive(Debug, Clone)]
struct Case {
    query: String,
    variables: Value,
    operation: Option<String>,
}

impl Case {
    fn request(&self) -> Request {
        let mut request = Request::new(self.query.clone())
            .variables(Variables::from_json(self.variables.clone()));
        if let Some(name) = &self.operation {
            request = request.operation_name(name.clone());
        }
        request
    }

    fn json(&self) -> Value {
        json!({ "query": self.query, "variables": self.variables, "operationName": self.operation })
    }
}

/// Pieces of GraphQL (and not) to splice into documents.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "$",
    "!",
    "...",
    "... on Deployment",
    "\"",
    "\"\"\"",
    "#",
    ",",
    "\n",
    "=",
    "|",
    "&",
    "@skip(if: true)",
    "@include(if: $x)",
    "@deprecated",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "null",
    "true",
    "1e999",
    "-0",
    "99999999999999999999",
    "__typename",
    "__schema { types { name } }",
    "id",
    "events",
    "deployment",
    "deployments",
    "first: 101",
    "first: -1",
    "after: \"x\"",
    "id: \"\"",
    "\\u0000",
    "\\uD800",
    "\u{0}",
    "\u{feff}",
    "é",
    "🚀",
    "$input",
    "input: {}",
];

#[derive(Debug, Clone)]
enum Edit {
    Truncate(Index),
    Insert(Index, String),
    Delete(Index, usize),
    /// Copies a slice and inserts it, `times` times, elsewhere.
    Duplicate {
        from: Index,
        len: usize,
        to: Index,
        times: usize,
    },
}

fn edit() -> BoxedStrategy<Edit> {
    let splice = prop_oneof![
        3 => prop::sample::select(TOKENS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-zA-Z_$@{}():!\" ]{1,8}",
    ];
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Truncate),
        3 => (any::<Index>(), splice).prop_map(|(at, s)| Edit::Insert(at, s)),
        2 => (any::<Index>(), 1usize..12).prop_map(|(at, n)| Edit::Delete(at, n)),
        2 => (any::<Index>(), 1usize..80, any::<Index>(), 1usize..8)
            .prop_map(|(from, len, to, times)| Edit::Duplicate { from, len, to, times }),
    ]
    .boxed()
}

fn apply_edits(doc: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = doc.chars().collect();
    for edit in edits {
        let n = chars.len();
        match edit {
            Edit::Truncate(at) => chars.truncate(at.index(n + 1)),
            Edit::Insert(at, s) => {
                let at = at.index(n + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Delete(at, len) => {
                let at = at.index(n + 1);
                chars.drain(at..(at + len).min(n));
            }
            Edit::Duplicate {
                from,
                len,
                to,
                times,
            } => {
                let from = from.index(n + 1);
                let slice: Vec<char> = chars[from..(from + len).min(n)].to_vec();
                let to = to.index(n + 1);
                let copies: Vec<char> = std::iter::repeat_n(slice, *times).flatten().collect();
                chars.splice(to..to, copies);
            }
        }
    }
    chars.into_iter().collect()
}

/// A JSON scalar of any awkward kind.
fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(100),
            json!(101),
            json!(i32::MAX),
            json!(i32::MAX as i64 + 1),
            json!(i32::MIN as i64 - 1),
            json!(u64::MAX),
            json!(1.5),
            json!(1e308),
            json!(-1e308),
            json!(f64::MIN_POSITIVE),
        ]),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            " ",
            "APPROVED",
            "approved",
            "PENDING_APPROVAL",
            "CREATED",
            "NOPE",
            "production",
            "00000000-0000-0000-0000-000000000000",
            "not-a-uuid",
            "\u{0}",
            "2026-01-01T00:00:00Z",
        ])
        .prop_map(Value::from),
        (
            prop::sample::select(vec!["a", "é", "\n", "\u{0}"]),
            prop::sample::select(vec![101usize, 501, 10_001, 50_000])
        )
            .prop_map(|(c, n)| Value::from(c.repeat(n))),
    ]
    .boxed()
}

/// Arbitrary JSON: scalars, lists and objects, a few levels deep.
fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A value nested far deeper than any input type.
fn deep_json() -> BoxedStrategy<Value> {
    (1usize..120, any::<bool>(), json_leaf())
        .prop_map(|(depth, lists, leaf)| {
            (0..depth).fold(leaf, |inner, _| {
                if lists {
                    json!([inner])
                } else {
                    json!({ "service": inner })
                }
            })
        })
        .boxed()
}

fn id_value(known: &Known) -> BoxedStrategy<Value> {
    let mut ids: Vec<String> = known.ids.iter().chain(&known.event_ids).cloned().collect();
    ids.extend(
        known
            .ids
            .iter()
            .map(|id| format!("  {}  ", id.to_uppercase())),
    );
    ids.extend(
        [
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "0190e5a4-8c1b-7cc2-9b9e-1c2d3e4f5a6b",
            "not-a-uuid",
            "",
        ]
        .map(str::to_owned),
    );
    prop_oneof![
        4 => prop::sample::select(ids).prop_map(Value::from),
        1 => json_leaf(),
    ]
    .boxed()
}

/// Cursors: real ones, well-formed ones naming nothing, and broken ones.
fn cursor_value(known: &Known) -> BoxedStrategy<Value> {
    prop_oneof![
        2 => prop::sample::select(known.cursors.clone()).prop_map(Value::from),
        2 => any::<i64>().prop_map(|n| Value::from(URL_SAFE_NO_PAD.encode(format!("e1:{n}")))),
        2 => (any::<i64>(), any::<u128>()).prop_map(|(ms, id)| {
            let id = uuid::Uuid::from_u128(id);
            Value::from(URL_SAFE_NO_PAD.encode(format!("d1:{ms}:{id}")))
        }),
        1 => "[A-Za-z0-9_=+/-]{0,40}".prop_map(Value::from),
        1 => json_leaf(),
    ]
    .boxed()
}

fn first_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (-2i64..103).prop_map(Value::from),
        2 => json_leaf(),
    ]
    .boxed()
}

fn filter_value(known: &Known) -> BoxedStrategy<Value> {
    let statuses = prop::collection::vec(
        prop::sample::select(vec![
            "PENDING_APPROVAL",
            "APPROVED",
            "STARTED",
            "CREATED",
            "approved",
            "NOPE",
            "",
        ])
        .prop_map(Value::from),
        0..10,
    )
    .prop_map(Value::from);
    (
        prop::option::of(prop_oneof![3 => "[a-z]{0,8}".prop_map(Value::from), 1 => json_leaf()]),
        prop::option::of(
            prop::sample::select(vec!["production", " Production ", "staging", ""])
                .prop_map(Value::from),
        ),
        prop::option::of(prop_oneof![3 => statuses, 1 => json_value()]),
        prop::option::of(id_value(known)),
        prop::sample::select(vec!["status", "kind"]),
    )
        .prop_map(|(service, environment, list, deployment_id, list_key)| {
            let mut filter = serde_json::Map::new();
            for (key, value) in [
                ("service", service),
                ("environment", environment),
                (list_key, list),
                ("deploymentId", deployment_id),
            ] {
                if let Some(value) = value {
                    filter.insert(key.to_owned(), value);
                }
            }
            Value::Object(filter)
        })
        .boxed()
}

/// A creation or action input with a few fields changed, removed or added.
fn input_value(known: &Known) -> BoxedStrategy<Value> {
    let keys = prop::sample::select(vec![
        "service",
        "environment",
        "version",
        "requester",
        "workRefs",
        "risk",
        "rollbackPlan",
        "idempotencyKey",
        "id",
        "actor",
        "note",
        "status",
        "createdAt",
        "extra",
    ]);
    let change = prop_oneof![
        3 => (keys.clone(), json_value()).prop_map(|(k, v)| (k, Some(v))),
        1 => (keys.clone(), deep_json()).prop_map(|(k, v)| (k, Some(v))),
        1 => (keys.clone(), id_value(known)).prop_map(|(k, v)| (k, Some(v))),
        1 => keys.prop_map(|k| (k, None)),
    ];
    let base = prop_oneof![
        Just(create_input("billing", "production")),
        Just(create_input("search", "staging")),
        (
            id_value(known),
            prop::sample::select(vec!["bob", "alice", " ALICE ", ""])
        )
            .prop_map(|(id, actor)| json!({ "id": id, "actor": actor, "note": "because" })),
    ];
    let changes = prop_oneof![
        1 => Just(vec![]),
        2 => prop::collection::vec(change, 1..4),
    ];
    (base, changes)
        .prop_map(|(mut input, changes)| {
            let object = input.as_object_mut().expect("an object");
            for (key, value) in changes {
                match value {
                    Some(value) => object.insert(key.to_owned(), value),
                    None => object.remove(key),
                };
            }
            input
        })
        .boxed()
}

/// Mostly present: a missing variable always fails the same way, so a few cases do.
fn present(value: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![1 => Just(None), 5 => value.prop_map(Some)].boxed()
}

/// Variables for the corpus: each known name present or not, plausible or random.
fn variables(known: &Known) -> BoxedStrategy<Value> {
    (
        present(prop_oneof![3 => input_value(known), 1 => json_value()].boxed()),
        present(id_value(known)),
        present(first_value()),
        present(cursor_value(known)),
        present(prop_oneof![3 => filter_value(known), 1 => json_value()].boxed()),
        prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..2),
    )
        .prop_map(|(input, id, first, after, filter, extra)| {
            let mut vars: BTreeMap<String, Value> = extra;
            for (name, value) in [
                ("input", input),
                ("id", id),
                ("first", first),
                ("after", after),
                ("filter", filter),
            ] {
                if let Some(value) = value {
                    vars.insert(name.to_owned(), value);
                }
            }
            Value::Object(vars.into_iter().collect())
        })
        .boxed()
}

fn operation_name() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        6 => Just(None),
        1 => prop::sample::select(vec!["A", "B", "Create", "Act", "Nope", ""]).prop_map(|s| Some(s.to_owned())),
    ]
    .boxed()
}

/// Selections nested `depth` levels, and list literals nested as deep: past every limit.
fn deep_document() -> BoxedStrategy<String> {
    (1usize..300, any::<bool>())
        .prop_map(|(depth, selections)| {
            if selections {
                format!(
                    "{{ deployments {{ nodes {{ {}id{} }} }} }}",
                    "events { deployment { ".repeat(depth),
                    " } }".repeat(depth)
                )
            } else {
                format!(
                    "{{ deployments(filter: {{ status: {}APPROVED{} }}) {{ totalCount }} }}",
                    "[".repeat(depth),
                    "]".repeat(depth)
                )
            }
        })
        .boxed()
}

fn case(known: &Known, corpus: Vec<String>) -> BoxedStrategy<Case> {
    let random_text = prop_oneof![
        any::<String>(),
        "[{}()\\[\\]:$!@. a-zA-Z_\"#,=\n]{0,120}",
        deep_document(),
    ];
    prop_oneof![
        1 => (random_text, operation_name()).prop_map(|(query, operation)| Case {
            query,
            variables: json!({}),
            operation,
        }),
        3 => (
            prop::sample::select(corpus.clone()),
            prop::collection::vec(edit(), 1..5),
            variables(known),
            operation_name(),
        )
            .prop_map(|(doc, edits, variables, operation)| Case {
                query: apply_edits(&doc, &edits),
                variables,
                operation,
            }),
        3 => (prop::sample::select(corpus), variables(known), operation_name())
            .prop_map(|(query, variables, operation)| Case {
                query,
                variables,
                operation,
            }),
    ]
    .boxed()
}

fn runner(cases: u32) -> TestRunner {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        // A failure is reported with its input; shrinking through the database is slow.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Every deployment's history still explains its status, whatever the fuzzing did.
async fn check_every_history(schema: &ShiplogSchema) {
    const ALL: &str = r#"
    query All($after: String) {
      deployments(first: 100, after: $after) {
        nodes { id status updatedAt events { kind fromStatus toStatus occurredAt } }
        pageInfo { hasNextPage endCursor }
      }
    }"#;
    let mut after = Value::Null;
    loop {
        let response = schema
            .execute(Request::new(ALL).variables(Variables::from_json(json!({ "after": after }))))
            .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data = response.data.into_json().expect("JSON data");
        let page = &data["deployments"];
        for d in page["nodes"].as_array().expect("nodes") {
            let events = d["events"].as_array().expect("events");
            assert_eq!(events[0]["kind"], "CREATED", "{d:#}");
            for pair in events.windows(2) {
                assert_eq!(pair[1]["fromStatus"], pair[0]["toStatus"], "{d:#}");
            }
            let last = events.last().expect("a CREATED event");
            assert_eq!(last["toStatus"], d["status"], "{d:#}");
            assert_eq!(last["occurredAt"], d["updatedAt"], "{d:#}");
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

// ---------------------------------------------------------------------------------------
// Through Schema::execute
// ---------------------------------------------------------------------------------------

#[test]
fn random_documents_and_variables_get_contract_codes_and_never_an_internal_error() {
    let started = Instant::now();
    let rt = runtime();
    let db = TestDb::new();
    let (schema, store) = rt.block_on(db.schema());
    let known = rt.block_on(seed(|query, variables| {
        let schema = schema.clone();
        async move {
            let response = schema
                .execute(Request::new(query).variables(Variables::from_json(variables)))
                .await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            response.data.into_json().expect("JSON data")
        }
    }));

    let result = runner(384).run(&case(&known, corpus()), |case| {
        rt.block_on(async {
            let response = schema.execute(case.request()).await;
            let body = serde_json::to_value(&response).expect("a serializable response");
            check_response(&body, &CONTRACT_CODES)
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }

    rt.block_on(async {
        let response = schema
            .execute("{ deployments(first: 1) { totalCount } }")
            .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        check_every_history(&schema).await;
        store.close().await.expect("close the store");
    });
    eprintln!("schema fuzzing took {:?}", started.elapsed());
}

#[test]
fn random_subscription_requests_get_contract_codes_on_the_stream() {
    let started = Instant::now();
    let rt = runtime();
    let db = TestDb::new();
    let (schema, store) = rt.block_on(db.schema());
    let known = rt.block_on(seed(|query, variables| {
        let schema = schema.clone();
        async move {
            let response = schema
                .execute(Request::new(query).variables(Variables::from_json(variables)))
                .await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            response.data.into_json().expect("JSON data")
        }
    }));

    // Subscriptions only run as streams (the WebSocket transport runs them this way):
    // look at what the stream says first.
    let result = runner(96).run(&case(&known, subscription_corpus()), |case| {
        rt.block_on(async {
            let mut stream = schema.execute_stream(case.request());
            if let Ok(Some(first)) = tokio::time::timeout(FIRST_ITEM, stream.next()).await {
                let body = serde_json::to_value(&first).expect("a serializable response");
                check_response(&body, &CONTRACT_CODES)?;
            }
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    rt.block_on(store.close()).expect("close the store");
    eprintln!("subscription fuzzing took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// Through HTTP
// ---------------------------------------------------------------------------------------

/// A POST body and its content type.
#[derive(Debug, Clone)]
struct Body {
    bytes: Vec<u8>,
    content_type: Option<&'static str>,
}

fn body(known: &Known) -> BoxedStrategy<Body> {
    let valid = case(known, corpus()).prop_map(|c| c.json()).boxed();
    let bytes = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300),
        2 => (valid.clone(), any::<Index>()).prop_map(|(v, at)| {
            let text = v.to_string().into_bytes();
            let at = at.index(text.len() + 1);
            text[..at].to_vec()
        }),
        2 => prop_oneof![
            prop::collection::vec(any::<i64>(), 0..8).prop_map(|v| json!(v)),
            json_value(),
            deep_json(),
            (1usize..200).prop_map(|depth| {
                let inner = (0..depth).fold(json!(1), |v, _| json!([v]));
                json!({ "query": "{ __typename }", "variables": { "input": inner } })
            }),
            json_value().prop_map(|v| json!({ "query": v })),
            json_value().prop_map(|v| json!({ "query": "{ __typename }", "variables": v })),
            json_value().prop_map(|v| json!({ "query": "{ __typename }", "operationName": v })),
            json_value().prop_map(|v| json!({ "variables": v })),
            Just(json!([])),
        ]
        .prop_map(|v| v.to_string().into_bytes()),
        3 => valid.clone().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(valid, 1..4).prop_map(|v| json!(v).to_string().into_bytes()),
        1 => Just(format!("{{\"query\": \"{}\"}}", "a".repeat(1024 * 1024 + 1)).into_bytes()),
    ];
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        Some("text/plain"),
        Some("application/graphql"),
        Some("multipart/form-data; boundary=x"),
        None,
    ]);
    (bytes, content_type)
        .prop_map(|(bytes, content_type)| Body {
            bytes,
            content_type,
        })
        .boxed()
}

#[test]
fn random_http_bodies_never_get_a_5xx_and_every_error_has_a_code() {
    let started = Instant::now();
    let rt = runtime();
    let db = TestDb::new();
    let app = rt.block_on(TestApp::start(&db, &["production"]));
    let known = rt.block_on(seed(|query, variables| {
        let app = &app;
        async move { app.ok(&query, variables).await }
    }));

    let mut codes = CONTRACT_CODES.to_vec();
    codes.extend(TRANSPORT_CODES);
    let result = runner(64).run(&body(&known), |body| {
        rt.block_on(async {
            let mut request = app
                .client
                .post(app.url("/graphql"))
                .body(body.bytes.clone());
            if let Some(content_type) = body.content_type {
                request = request.header("content-type", content_type);
            }
            let response = request
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| TestCaseError::fail(format!("no body: {e}")))?;
            prop_assert!(!status.is_server_error(), "HTTP {}: {}", status, text);
            if !(status.is_success() || status.is_client_error()) {
                return Ok(());
            }
            let json: Value = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!("HTTP {status} without a JSON body ({e}): {text}"))
            })?;
            if status.is_client_error() {
                prop_assert!(
                    json.get("errors").is_some(),
                    "HTTP {} without errors: {}",
                    status,
                    text
                );
            }
            match &json {
                Value::Array(responses) => {
                    for response in responses {
                        check_response(response, &codes)?;
                    }
                }
                response => check_response(response, &codes)?,
            }
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }

    rt.block_on(async {
        let data = app
            .ok("{ deployments(first: 1) { totalCount } }", json!({}))
            .await;
        assert!(data["deployments"]["totalCount"].as_i64().unwrap_or(0) >= 2);
        app.stop().await;
    });
    eprintln!("HTTP fuzzing took {:?}", started.elapsed());
}
