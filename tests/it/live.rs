//! Subscriptions: schema-level through `execute_stream`, and over real WebSockets
//! against a server on port 0, in both subprotocols.

use std::time::Duration;

use async_graphql::{Request, Variables};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shiplog::store::{Store, StoreConfig};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{create_input, post_create, single_error, TestApp, TestDb, CREATE};

const WAIT: Duration = Duration::from_secs(10);

const SUBSCRIBE: &str = r#"
subscription Watch($filter: DeploymentEventFilter, $after: String) {
  deploymentEvents(filter: $filter, after: $after) {
    id cursor deploymentId kind actor fromStatus toStatus deployment { service }
  }
}"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    /// `graphql-transport-ws`, the current protocol.
    Transport,
    /// `graphql-ws`, the older subscriptions-transport-ws protocol.
    Legacy,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Transport => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }
}

/// What the server said about one subscription.
#[derive(Debug)]
enum Said {
    Next(Value),
    Error(Value),
    Complete,
    Closed,
}

struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: Protocol,
}

impl WsClient {
    async fn connect(app: &TestApp, protocol: Protocol) -> Self {
        let tcp = TcpStream::connect(app.addr).await.expect("connect");
        Self::connect_over(app, protocol, tcp).await
    }

    /// Over a socket whose receive buffer is as small as the kernel allows: a client
    /// that stops reading soon stops the server's writes to it.
    async fn connect_small(app: &TestApp, protocol: Protocol) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(1024).expect("a small buffer");
        let tcp = socket.connect(app.addr).await.expect("connect");
        Self::connect_over(app, protocol, tcp).await
    }

    async fn connect_over(app: &TestApp, protocol: Protocol, tcp: TcpStream) -> Self {
        let mut request = format!("ws://{}/graphql/ws", app.addr)
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        let (ws, response) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
            .await
            .expect("connect the WebSocket");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol.name(),
            "the server speaks the offered subprotocol"
        );
        let mut client = Self { ws, protocol };
        client
            .send(json!({ "type": "connection_init", "payload": {} }))
            .await;
        let ack = client.receive().await.expect("an ack");
        assert_eq!(ack["type"], "connection_ack");
        client
    }

    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send a message");
    }

    /// The next text message as JSON; `None` once the socket is closed.
    async fn receive(&mut self) -> Option<Value> {
        loop {
            match timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time")
            {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    match value["type"].as_str() {
                        Some("ka") | Some("pong") => continue,
                        Some("ping") => {
                            self.send(json!({ "type": "pong" })).await;
                            continue;
                        }
                        _ => return Some(value),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn subscribe(&mut self, id: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::Transport => "subscribe",
            Protocol::Legacy => "start",
        };
        self.send(json!({
            "id": id, "type": kind,
            "payload": { "query": SUBSCRIBE, "variables": variables }
        }))
        .await;
    }

    async fn said(&mut self) -> Said {
        self.said_about(None).await
    }

    /// The next word about subscription `id` (about any, with `None`).
    async fn said_about(&mut self, id: Option<&str>) -> Said {
        loop {
            let Some(msg) = self.receive().await else {
                return Said::Closed;
            };
            if id.is_some_and(|id| msg["id"] != id) {
                continue;
            }
            match msg["type"].as_str() {
                Some("next") | Some("data") => {
                    let payload = &msg["payload"];
                    if payload.get("errors").is_some() {
                        return Said::Error(payload["errors"][0].clone());
                    }
                    return Said::Next(payload["data"]["deploymentEvents"].clone());
                }
                Some("error") => return Said::Error(msg["payload"].clone()),
                Some("complete") => return Said::Complete,
                other => panic!("unexpected message {other:?}: {msg}"),
            }
        }
    }

    async fn next_event(&mut self) -> Value {
        match self.said().await {
            Said::Next(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Events until `n` have arrived.
    async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next_event().await);
        }
        out
    }

    /// Waits for the close frame and returns its code.
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            match timeout(WAIT, self.ws.next())
                .await
                .expect("closing in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    }
}

async fn act(app: &TestApp, mutation: &str, id: &str, actor: &str, note: Option<&str>) {
    app.act(mutation, id, actor, note).await;
}

/// Creates a deployment and walks it to SUCCEEDED: 4 events.
async fn ship(app: &TestApp, service: &str) -> String {
    let id = app.create(service, "staging").await;
    act(app, "approveDeployment", &id, "bob", None).await;
    act(app, "startDeployment", &id, "ops", None).await;
    act(app, "succeedDeployment", &id, "ops", None).await;
    id
}

async fn all_feed_events(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app
            .ok(
                "query Feed($after: String) { deploymentEvents(first: 100, after: $after) { \
                 nodes { id cursor kind } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after }),
            )
            .await;
        let feed = &data["deploymentEvents"];
        out.extend(feed["nodes"].as_array().expect("nodes").iter().cloned());
        if feed["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        after = feed["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn a_subscriber_watches_a_deployment_go_live_in_order_in_both_protocols() {
    for protocol in [Protocol::Transport, Protocol::Legacy] {
        let db = TestDb::new();
        let app = TestApp::start(&db, &["production"]).await;
        let mut ws = WsClient::connect(&app, protocol).await;
        ws.subscribe("1", json!({ "filter": { "service": "billing" } }))
            .await;
        // The subscription is registered once the server has answered something on the
        // socket; a ping round trip is not in the legacy protocol, so give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let id = ship(&app, "billing").await;
        let events = ws.events(4).await;
        let kinds: Vec<_> = events
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            ["CREATED", "APPROVED", "STARTED", "SUCCEEDED"],
            "{protocol:?}"
        );
        assert!(events.iter().all(|e| e["deploymentId"] == id.as_str()));
        assert!(events
            .iter()
            .all(|e| e["deployment"]["service"] == "billing"));
        assert_eq!(events[3]["fromStatus"], "STARTED");
        assert_eq!(events[3]["toStatus"], "SUCCEEDED");
        app.stop().await;
    }
}

#[tokio::test]
async fn filters_combine_with_and() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut ws = WsClient::connect(&app, Protocol::Transport).await;
    ws.subscribe(
        "1",
        json!({ "filter": { "service": "billing", "environment": "staging",
                            "kind": ["APPROVED", "SUCCEEDED"] } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    ship(&app, "search").await;
    let other_env = app
        .ok(CREATE, json!({ "input": create_input("billing", "qa") }))
        .await["createDeployment"]["deployment"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    act(&app, "approveDeployment", &other_env, "bob", None).await;
    let wanted = ship(&app, "billing").await;

    let events = ws.events(2).await;
    assert_eq!(events[0]["kind"], "APPROVED");
    assert_eq!(events[1]["kind"], "SUCCEEDED");
    assert!(events.iter().all(|e| e["deploymentId"] == wanted.as_str()));

    // Narrowed to one deployment: a second subscription on the same socket.
    ws.subscribe("2", json!({ "filter": { "deploymentId": wanted } }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    act(&app, "rollBackDeployment", &wanted, "carol", Some("errors")).await;
    let event = ws.next_event().await;
    assert_eq!(event["kind"], "ROLLED_BACK");
    app.stop().await;
}

#[tokio::test]
async fn refused_actions_publish_nothing() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let id = app.create("billing", "production").await;
    let mut ws = WsClient::connect(&app, Protocol::Transport).await;
    ws.subscribe("1", json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A conflict, a self-approval, a validation error: none of them wrote anything.
    let start = app
        .graphql(
            &crate::helpers::action("startDeployment"),
            json!({ "input": { "id": id, "actor": "ops" } }),
        )
        .await;
    assert_eq!(single_error(&start).0, "CONFLICT");
    let own = app
        .graphql(
            &crate::helpers::action("approveDeployment"),
            json!({ "input": { "id": id, "actor": "Alice" } }),
        )
        .await;
    assert_eq!(single_error(&own).0, "FORBIDDEN");
    let blank = app
        .graphql(
            &crate::helpers::action("rejectDeployment"),
            json!({ "input": { "id": id, "actor": "bob", "note": " " } }),
        )
        .await;
    assert_eq!(single_error(&blank).0, "BAD_USER_INPUT");

    act(&app, "approveDeployment", &id, "bob", None).await;
    let first = ws.next_event().await;
    assert_eq!(
        first["kind"], "APPROVED",
        "the first event pushed is the first one written"
    );
    app.stop().await;
}

#[tokio::test]
async fn resuming_after_a_cursor_replays_then_goes_live_with_no_gap_or_duplicate() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    for i in 0..5 {
        app.create(&format!("svc-{i}"), "staging").await;
    }
    let resume_from = all_feed_events(&app).await[1]["cursor"].clone();

    // Writers keep committing from another task while the subscriber switches from
    // replay to live.
    let writer = {
        let app_url = app.url("/graphql");
        let client = app.client.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let input = create_input(&format!("w-{i}"), "staging");
                post_create(&client, &app_url, input).await;
            }
        })
    };
    let mut ws = WsClient::connect(&app, Protocol::Transport).await;
    ws.subscribe("1", json!({ "after": resume_from })).await;
    writer.await.expect("writer");

    // Everything after the cursor: 3 of the first 5, then all 40.
    let received = ws.events(43).await;
    let feed = all_feed_events(&app).await;
    let expected: Vec<&Value> = feed[2..].iter().map(|e| &e["id"]).collect();
    let got: Vec<&Value> = received.iter().map(|e| &e["id"]).collect();
    assert_eq!(
        got, expected,
        "every event after the cursor exactly once, in commit order"
    );
    let cursors: Vec<&Value> = received.iter().map(|e| &e["cursor"]).collect();
    let feed_cursors: Vec<&Value> = feed[2..].iter().map(|e| &e["cursor"]).collect();
    assert_eq!(cursors, feed_cursors, "the same cursors as the feed");

    // A client that disconnects, misses events and resumes gets exactly the missed ones.
    let last = received.last().expect("events")["cursor"].clone();
    drop(ws);
    let missed = ship(&app, "billing").await;
    let mut ws = WsClient::connect(&app, Protocol::Legacy).await;
    ws.subscribe("again", json!({ "after": last })).await;
    let replayed = ws.events(4).await;
    assert!(replayed
        .iter()
        .all(|e| e["deploymentId"] == missed.as_str()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.create("after-resume", "staging").await;
    let live = ws.next_event().await;
    assert_eq!(live["kind"], "CREATED");
    assert_ne!(live["deploymentId"], missed.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_or_unknown_cursor_is_bad_user_input() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut ws = WsClient::connect(&app, Protocol::Transport).await;
    for (id, after) in [("1", "not-a-cursor"), ("2", "ZTE6OTk5")] {
        ws.subscribe(id, json!({ "after": after })).await;
        match ws.said_about(Some(id)).await {
            Said::Error(error) => {
                let error = if error.is_array() {
                    error[0].clone()
                } else {
                    error
                };
                assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
                assert_eq!(error["extensions"]["fields"][0]["field"], "after");
            }
            other => panic!("expected an error for {after:?}, got {other:?}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stop_completes_open_subscriptions_and_closes_the_socket() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let mut ws = WsClient::connect(&app, Protocol::Transport).await;
    ws.subscribe("1", json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.create("billing", "staging").await;
    assert_eq!(ws.next_event().await["kind"], "CREATED");

    let stopping = tokio::spawn(app.stop());
    match ws.said().await {
        Said::Complete => {}
        other => panic!("expected complete, got {other:?}"),
    }
    assert_eq!(ws.close_code().await, Some(1001));
    timeout(WAIT, stopping)
        .await
        .expect("the server stops in time")
        .expect("stopped");
}

/// The schema alone: a stream that nobody polls while more events commit than the live
/// buffer holds is caught up from the database, in order, with nothing lost.
#[tokio::test]
async fn a_stalled_subscriber_is_caught_up_from_storage_and_never_blocks_writers() {
    let db = TestDb::new();
    let mut config = StoreConfig::new(db.url());
    config.live_buffer = 8;
    let store = Store::open(&config).await.expect("open");
    let schema = shiplog::graphql::schema(store.clone(), Default::default());

    let mut stalled = schema.execute_stream(Request::new(SUBSCRIBE));
    let mut reader = schema.execute_stream(Request::new(SUBSCRIBE));
    // A subscription starts on its first poll; poll each once with nothing to receive.
    for stream in [&mut stalled, &mut reader] {
        assert!(timeout(Duration::from_millis(100), stream.next())
            .await
            .is_err());
    }

    // 60 writes, far more than the buffer of 8, while `stalled` is not polled: every
    // write completes (writers never wait for subscribers).
    for i in 0..60 {
        let body = schema
            .execute(Request::new(CREATE).variables(Variables::from_json(
                json!({ "input": create_input(&format!("s-{i}"), "dev") }),
            )))
            .await;
        assert!(body.errors.is_empty(), "{:?}", body.errors);
    }
    let mut seen_by_reader = Vec::new();
    for _ in 0..60 {
        let r = timeout(WAIT, reader.next())
            .await
            .expect("in time")
            .expect("an event");
        seen_by_reader.push(r.data.into_json().expect("json")["deploymentEvents"]["id"].clone());
    }
    let mut seen_by_stalled = Vec::new();
    for _ in 0..60 {
        let r = timeout(WAIT, stalled.next())
            .await
            .expect("in time")
            .expect("an event");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        seen_by_stalled.push(r.data.into_json().expect("json")["deploymentEvents"]["id"].clone());
    }
    assert_eq!(
        seen_by_stalled, seen_by_reader,
        "the same 60 events, in the same order"
    );
    let distinct: std::collections::BTreeSet<String> =
        seen_by_stalled.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), 60);
}

/// Creates deployments until `clients` have each seen one (their subscriptions start
/// when the server first runs them, which no message tells), then one more that every
/// client reads up to: from there on they have seen the same events.
async fn all_live(app: &TestApp, clients: &mut [&mut WsClient]) {
    for client in clients.iter_mut() {
        loop {
            app.create("probe", "staging").await;
            if timeout(Duration::from_millis(200), client.next_event())
                .await
                .is_ok()
            {
                break;
            }
        }
    }
    let marker = app.create("marker", "staging").await;
    for client in clients.iter_mut() {
        while client.next_event().await["deploymentId"] != marker.as_str() {}
    }
}

/// Two clients with the same subscription share one feed. One stops reading while 150
/// events of 100 KB each commit, far more than the socket buffers hold and than the 4
/// responses a client may fall behind: the other gets all of them meanwhile, and the
/// stalled one, once it reads again, gets every one once, in commit order (what it fell
/// behind on replayed from storage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_behind_a_shared_feed_is_caught_up_from_storage() {
    const EVENTS: usize = 150;
    let db = TestDb::new();
    let options = shiplog::server::ServerOptions {
        ws: shiplog::server::WsLimits {
            feed_lag: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = TestApp::start_with(&db, &["production"], options).await;
    // Every event carries its deployment's 10,000-character rollback plan ten times.
    let plans: String = (0..10)
        .map(|i| format!(" p{i}: deployment {{ rollbackPlan }}"))
        .collect();
    let big = format!(
        "subscription Big {{ deploymentEvents {{ id cursor deploymentId kind actor \
         fromStatus toStatus deployment {{ service }} {plans} }} }}"
    );
    let mut reader = WsClient::connect(&app, Protocol::Transport).await;
    reader
        .send(json!({ "id": "r", "type": "subscribe", "payload": { "query": big } }))
        .await;
    let mut stalled = WsClient::connect_small(&app, Protocol::Legacy).await;
    stalled
        .send(json!({ "id": "s", "type": "start", "payload": { "query": big } }))
        .await;
    all_live(&app, &mut [&mut reader, &mut stalled]).await;

    let writer = {
        let url = app.url("/graphql");
        let client = app.client.clone();
        tokio::spawn(async move {
            let mut created = Vec::new();
            for i in 0..EVENTS {
                let mut input = create_input(&format!("burst-{i}"), "staging");
                input["rollbackPlan"] = json!("r".repeat(10_000));
                let body = post_create(&client, &url, input).await;
                created.push(body["data"]["createDeployment"]["deployment"]["id"].clone());
            }
            created
        })
    };
    let ids = |events: Vec<Value>| -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                assert_eq!(e["kind"], "CREATED", "{e}");
                assert_eq!(e["p9"]["rollbackPlan"].as_str().map(str::len), Some(10_000));
                e["deploymentId"].clone()
            })
            .collect()
    };
    let read = ids(reader.events(EVENTS).await);
    let created = writer.await.expect("the writer");
    assert_eq!(
        read, created,
        "the reader: all, in order, while they commit"
    );
    assert_eq!(
        ids(stalled.events(EVENTS).await),
        created,
        "the stalled client: all, in order, once each"
    );
    // Both are live still, and nothing else was queued for either.
    let last = app.create("after", "staging").await;
    for client in [&mut reader, &mut stalled] {
        assert_eq!(client.next_event().await["deploymentId"], last.as_str());
    }
    app.stop().await;
}
