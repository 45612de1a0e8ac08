//! Several shiplog instances on one PostgreSQL database (issue 13), against the real
//! binary: three server processes started together on one database, writes through all
//! of them, a subscriber on each, one webhook; one instance is SIGKILLed midway. The
//! survivors' subscribers must each see every event exactly once, in commit order; every
//! acknowledged write must be stored; every event must reach the webhook's receiver.
//!
//! A second test walks deployments through all three instances into start timeouts
//! with a deploy target: each start is triggered once and each timeout recorded once,
//! though every instance runs the outbox and the timeout task.
//!
//! PostgreSQL only (`TestDb::postgres`), whatever the suite's engine. Every wait is a
//! bounded poll on a condition.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{action, create_input, TestDb, CREATE};
use crate::metrics::subscribe_with;
use crate::process::Server;
use crate::webhooks::{seq_of, Receiver, CONFIGURE, CREATE_WEBHOOK, SECRET};

const INSTANCES: usize = 3;
/// Creates attempted in all; the third instance is killed when this many have begun.
const CREATES: usize = 240;
const KILL_AT: usize = 80;
/// Clients writing at once, spread over the instances alive.
const WRITERS: usize = 6;
/// Bound of every wait for the survivors to catch up.
const SETTLE: Duration = Duration::from_secs(60);
const ARGS: &[&str] = &[
    "--webhook-allow-private",
    "true",
    "--webhook-backoff-ms",
    "100",
    "--webhook-max-attempts",
    "30",
];

const WATCH: &str = r#"
subscription Watch($after: String) {
  deploymentEvents(after: $after) { cursor kind deploymentId }
}"#;

/// A graphql-transport-ws subscriber that records every event's cursor, in arrival order.
async fn subscribe(addr: std::net::SocketAddr, after: String, seen: Arc<Mutex<Vec<String>>>) {
    let mut ws = subscribe_with(addr, WATCH, json!({ "after": after })).await;
    // Until the server goes away (the killed one) or the test ends (the task is aborted).
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).expect("JSON");
        match value["type"].as_str() {
            Some("next") => {
                let event = &value["payload"]["data"]["deploymentEvents"];
                let cursor = event["cursor"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an event: {value}"));
                seen.lock().unwrap().push(cursor.to_owned());
            }
            Some("ping") => {
                let pong = Message::text(json!({ "type": "pong" }).to_string());
                let _ = ws.send(pong).await;
            }
            Some("pong") => {}
            _ => panic!("unexpected message: {value}"),
        }
    }
}

async fn graphql(client: &reqwest::Client, url: &str, query: &str, variables: Value) -> Value {
    client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON")
}

/// Every event after `after`, in order, as one instance's feed pages them.
async fn feed(client: &reqwest::Client, url: &str, after: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = after.to_owned();
    loop {
        let body = graphql(
            client,
            url,
            "query Feed($after: String) { deploymentEvents(first: 100, after: $after) { \
             nodes { cursor } pageInfo { hasNextPage endCursor } } }",
            json!({ "after": after }),
        )
        .await;
        let page = &body["data"]["deploymentEvents"];
        for node in page["nodes"].as_array().expect("nodes") {
            out.push(node["cursor"].as_str().expect("a cursor").to_owned());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        after = page["pageInfo"]["endCursor"]
            .as_str()
            .expect("an end cursor")
            .to_owned();
    }
}

/// Polls `done` every 50 ms until it holds, or fails the test after `SETTLE`.
async fn settle(what: &str, mut done: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match done() {
            Ok(()) => return,
            Err(why) if started.elapsed() > SETTLE => panic!("{what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_with_one_killed_midway_lose_and_repeat_nothing() {
    let db = TestDb::postgres();
    // Started together: they migrate the empty database one after the other.
    let starting: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let url = db.url();
            tokio::task::spawn_blocking(move || Server::start_with(url, ARGS))
        })
        .collect();
    let mut servers = Vec::new();
    for start in starting {
        servers.push(start.await.expect("an instance starts"));
    }
    let urls: Vec<String> = servers.iter().map(Server::graphql_url).collect();
    let addrs: Vec<_> = servers.iter().map(Server::addr).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");

    // One webhook, configured through one instance: every instance's writes enqueue
    // deliveries for it, and one instance at a time sends them.
    let receiver = Receiver::start(&[]).await;
    let body = graphql(
        &client,
        &urls[1],
        CREATE_WEBHOOK,
        json!({ "input": { "url": receiver.url, "secret": SECRET, "actor": "ops" } }),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");

    // The subscriptions start after a first event, so none can miss the writes below.
    let first = graphql(
        &client,
        &urls[0],
        CREATE,
        json!({ "input": create_input("seed", "staging") }),
    )
    .await;
    let seed = first["data"]["createDeployment"]["event"]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("the seed is created: {first}"))
        .to_owned();
    let seen: Vec<Arc<Mutex<Vec<String>>>> = (0..INSTANCES).map(|_| Arc::default()).collect();
    let subscribers: Vec<_> = (0..INSTANCES)
        .map(|i| tokio::spawn(subscribe(addrs[i], seed.clone(), seen[i].clone())))
        .collect();

    // Writers spread their creates over the instances alive; at KILL_AT the third one
    // is SIGKILLed, with writes to it in flight.
    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let victim = Arc::new(Mutex::new(servers.pop()));
    let acknowledged: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, urls, next, killed, victim, acknowledged) = (
                client.clone(),
                urls.clone(),
                next.clone(),
                killed.clone(),
                victim.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= CREATES {
                        return;
                    }
                    if n == KILL_AT {
                        let server = victim.lock().unwrap().take();
                        if let Some(server) = server {
                            tokio::task::spawn_blocking(move || server.kill())
                                .await
                                .expect("kill the third instance");
                        }
                        killed.store(true, Ordering::SeqCst);
                    }
                    let alive = if killed.load(Ordering::SeqCst) {
                        INSTANCES - 1
                    } else {
                        INSTANCES
                    };
                    let url = &urls[(n + w) % alive];
                    let input = create_input(&format!("svc-{n}"), "staging");
                    let sent = client
                        .post(url)
                        .json(&json!({ "query": CREATE, "variables": { "input": input } }))
                        .send()
                        .await;
                    // A write to the killed instance may fail: it was not acknowledged.
                    let Ok(response) = sent else { continue };
                    let Ok(body) = response.json::<Value>().await else {
                        continue;
                    };
                    let created = &body["data"]["createDeployment"];
                    if let (Some(id), Some(cursor)) = (
                        created["deployment"]["id"].as_str(),
                        created["event"]["cursor"].as_str(),
                    ) {
                        acknowledged
                            .lock()
                            .unwrap()
                            .insert(id.to_owned(), cursor.to_owned());
                    } else {
                        panic!("a create on a live instance fails: {body}");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer");
    }
    assert!(
        killed.load(Ordering::SeqCst),
        "the third instance was killed"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= CREATES - WRITERS,
        "writes to the survivors are all acknowledged: {}",
        acknowledged.len()
    );

    // What the database holds, as a survivor pages it.
    let stored = feed(&client, &urls[0], &seed).await;
    let seqs: Vec<i64> = stored.iter().map(|c| seq_of(c)).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the feed is in sequence order"
    );
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    for (id, cursor) in &acknowledged {
        assert!(
            stored_set.contains(cursor),
            "acknowledged write {id} (event {cursor}) is stored"
        );
    }
    assert_eq!(stored.len(), stored_set.len(), "every event is stored once");

    // Each survivor's subscriber saw every event once, in commit order.
    for (i, seen) in seen.iter().enumerate().take(INSTANCES - 1) {
        settle(&format!("the subscriber on instance {i}"), || {
            let got = seen.lock().unwrap().clone();
            if got.len() < stored.len() {
                return Err(format!("{} of {} events", got.len(), stored.len()));
            }
            Ok(())
        })
        .await;
        // Anything repeated would arrive right behind the rest.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got, stored,
            "instance {i}'s subscriber saw every event once, in order"
        );
    }

    // Every event reached the webhook's receiver, whichever instance sent it, at least
    // once; an attempt repeats only if the killed instance made it without recording it.
    let wanted: BTreeSet<i64> = seqs.iter().copied().collect();
    settle("the webhook deliveries", || {
        let got: BTreeSet<i64> = receiver
            .got()
            .iter()
            .filter_map(|r| r.json()["data"]["event"]["cursor"].as_str().map(seq_of))
            .collect();
        let missing = wanted.difference(&got).count();
        if missing > 0 {
            return Err(format!(
                "{missing} of {} events not delivered",
                wanted.len()
            ));
        }
        Ok(())
    })
    .await;
    let requests = receiver.got();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        *by_id
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    let repeated: usize = by_id.values().map(|n| n - 1).sum();
    assert!(
        repeated <= 64,
        "only attempts in flight at the kill are repeated: {repeated} repeats"
    );

    for subscriber in subscribers {
        subscriber.abort();
    }
    receiver.stop();
    for server in servers {
        server.kill();
    }
}

/// Starts `n` instances on one database, together.
async fn instances(db: &TestDb, n: usize) -> Vec<Server> {
    let starting: Vec<_> = (0..n)
        .map(|_| {
            let url = db.url();
            tokio::task::spawn_blocking(move || Server::start_with(url, ARGS))
        })
        .collect();
    let mut servers = Vec::new();
    for start in starting {
        servers.push(start.await.expect("an instance starts"));
    }
    servers
}

/// The data of an answer that must have no errors.
async fn ok(client: &reqwest::Client, url: &str, query: &str, variables: Value) -> Value {
    let body = graphql(client, url, query, variables).await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_runs_the_outbox_and_the_timeouts_and_each_job_is_done_once() {
    const DEPLOYMENTS: usize = 12;
    let db = TestDb::postgres();
    let servers = instances(&db, INSTANCES).await;
    let urls: Vec<String> = servers.iter().map(Server::graphql_url).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    // Slow to answer: while one instance waits for it, the others see the trigger due
    // (not yet recorded) at least once; only the lane's holder may send it.
    let executor = Receiver::start_slow("127.0.0.1:0", &[], Duration::from_millis(2500)).await;

    // Configured through different instances: what one configures, all apply.
    ok(
        &client,
        &urls[2],
        "mutation { configureEnvironment(input: { name: \"staging\", actor: \"carol\", \
         startTimeoutSeconds: 1 }) { startTimeoutSeconds } }",
        json!({}),
    )
    .await;
    for i in 0..DEPLOYMENTS {
        ok(
            &client,
            &urls[i % INSTANCES],
            CONFIGURE,
            json!({ "input": { "service": format!("svc-{i}"), "environment": "staging",
                    "executor": "HTTP", "actor": "ops", "url": executor.url, "secret": SECRET } }),
        )
        .await;
    }
    // Each deployment is created, approved and started through three different instances.
    let mut ids = Vec::new();
    for i in 0..DEPLOYMENTS {
        let created = ok(
            &client,
            &urls[i % INSTANCES],
            CREATE,
            json!({ "input": create_input(&format!("svc-{i}"), "staging") }),
        )
        .await;
        let id = created["createDeployment"]["deployment"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        for (step, (mutation, actor)) in [("approveDeployment", "bob"), ("startDeployment", "ci")]
            .into_iter()
            .enumerate()
        {
            ok(
                &client,
                &urls[(i + step + 1) % INSTANCES],
                &action(mutation),
                json!({ "input": { "id": id, "actor": actor } }),
            )
            .await;
        }
        ids.push(id);
    }

    // Every start times out, recorded once, whichever instance fired first.
    let events = "query($id: ID!) { deployment(id: $id) { status events { kind actor } } }";
    for id in &ids {
        let started = Instant::now();
        let deployment = loop {
            let data = ok(&client, &urls[0], events, json!({ "id": id })).await;
            if data["deployment"]["status"] == "FAILED" {
                break data["deployment"].clone();
            }
            assert!(started.elapsed() < SETTLE, "{id} timed out: {data}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let kinds: Vec<&str> = deployment["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            ["CREATED", "APPROVED", "STARTED", "FAILED"],
            "{id}: one timeout recorded: {deployment}"
        );
        assert_eq!(deployment["events"][3]["actor"], "shiplog", "{deployment}");
    }

    // Every start was triggered once: one request per deployment, however many
    // instances' outboxes saw it due.
    settle("the deploy triggers", || {
        let n = executor.got().len();
        if n < DEPLOYMENTS {
            return Err(format!("{n} of {DEPLOYMENTS} triggers"));
        }
        Ok(())
    })
    .await;
    // A repeat would follow the first by about the retry backoff (100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut triggered: HashMap<String, usize> = HashMap::new();
    for request in executor.got() {
        let body = request.json();
        assert_eq!(body["type"], "deployment.deploy", "{body}");
        let id = body["data"]["deployment"]["id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        *triggered.entry(id).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            triggered.get(id),
            Some(&1),
            "{id} triggered once: {triggered:?}"
        );
    }
    assert_eq!(triggered.len(), DEPLOYMENTS, "{triggered:?}");

    executor.stop();
    for server in servers {
        server.kill();
    }
}
