//! The limits of the WebSocket endpoint, over real WebSockets: operations open at once
//! per connection, the `connection_init` deadline, the message size, the number of open
//! connections; and a flood of 50,000 `subscribe` messages against the real binary,
//! whose memory must stay flat.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shiplog::server::{ServerOptions, WsLimits};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{create_input, TestApp, TestDb, CREATE};
use crate::process::Server;

const WAIT: Duration = Duration::from_secs(10);

/// Every event after a cursor. A subscription starts when the server first polls it,
/// which no message tells; resuming after a cursor taken beforehand makes an event
/// written meanwhile arrive anyway (replayed), so no test waits for that moment.
const WATCH: &str = "subscription Watch($after: String) { \
                     deploymentEvents(after: $after) { id cursor kind deploymentId } }";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Transport => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }

    fn start(self) -> &'static str {
        match self {
            Protocol::Transport => "subscribe",
            Protocol::Legacy => "start",
        }
    }

    fn stop(self) -> &'static str {
        match self {
            Protocol::Transport => "complete",
            Protocol::Legacy => "stop",
        }
    }

    fn next(self) -> &'static str {
        match self {
            Protocol::Transport => "next",
            Protocol::Legacy => "data",
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `/graphql/ws`, without `connection_init`.
async fn open(
    addr: SocketAddr,
    protocol: Protocol,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(protocol.name()),
    );
    let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake in time")?;
    Ok(ws)
}

struct Client {
    ws: Socket,
    protocol: Protocol,
}

impl Client {
    /// Opens a WebSocket and completes `connection_init` / `connection_ack`.
    async fn connect(addr: SocketAddr, protocol: Protocol) -> Self {
        let ws = open(addr, protocol).await.expect("connect the WebSocket");
        let mut client = Self { ws, protocol };
        client
            .send(json!({ "type": "connection_init", "payload": {} }))
            .await;
        let ack = client.receive().await.expect("an ack");
        assert_eq!(ack["type"], "connection_ack");
        client
    }

    async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send a message");
    }

    async fn subscribe(&mut self, id: &str, query: &str) {
        let kind = self.protocol.start();
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query } }))
            .await;
    }

    /// Subscribes `id` to every event after `cursor`.
    async fn watch(&mut self, id: &str, cursor: &str) {
        self.send(watch_message(self.protocol, id, cursor)).await;
    }

    /// Ends operation `id` from the client side.
    async fn stop(&mut self, id: &str) {
        let kind = self.protocol.stop();
        self.send(json!({ "id": id, "type": kind })).await;
    }

    /// The next text message as JSON, keep-alives skipped; `None` once closed.
    async fn receive(&mut self) -> Option<Value> {
        loop {
            match timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time")
            {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Some(value);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message, which must exist.
    async fn expect_message(&mut self) -> Value {
        self.receive().await.expect("a message, not a close")
    }

    /// `n` events, one per operation: returns the ids they came on. Anything other than
    /// an event fails the test.
    async fn events(&mut self, n: usize) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for _ in 0..n {
            let msg = self.expect_message().await;
            assert_eq!(msg["type"], self.protocol.next(), "an event: {msg}");
            assert_eq!(
                msg["payload"]["data"]["deploymentEvents"]["kind"],
                "CREATED"
            );
            let id = msg["id"].as_str().expect("an id").to_owned();
            assert!(ids.insert(id), "one event per operation: {msg}");
        }
        ids
    }

    /// The close frame's code and reason; `None` if the connection ended without one.
    async fn close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            match timeout(WAIT, self.ws.next())
                .await
                .expect("closing in time")
            {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    }
}

/// Asserts `msg` is the refusal of operation `id` for a limit of `limit`.
fn assert_refused(msg: &Value, id: &str, limit: usize) {
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["id"], id, "{msg}");
    let errors = msg["payload"].as_array().expect("a list of errors");
    assert_eq!(errors.len(), 1, "{msg}");
    assert_eq!(errors[0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS");
    assert_eq!(errors[0]["extensions"]["limit"], limit);
    assert!(errors[0]["message"].is_string());
}

fn watch_message(protocol: Protocol, id: &str, cursor: &str) -> Value {
    json!({ "id": id, "type": protocol.start(),
            "payload": { "query": WATCH, "variables": { "after": cursor } } })
}

/// Creates a deployment and returns its event's cursor: subscriptions after it see only
/// what the test writes next.
async fn mark(app: &TestApp) -> String {
    let data = app
        .ok(
            CREATE,
            json!({ "input": create_input("marker", "staging") }),
        )
        .await;
    data["createDeployment"]["event"]["cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned()
}

fn options(ws: WsLimits) -> ServerOptions {
    ServerOptions {
        ws,
        ..Default::default()
    }
}

fn ids(range: std::ops::RangeInclusive<usize>) -> BTreeSet<String> {
    range.map(|i| i.to_string()).collect()
}

fn named(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test]
async fn the_101st_subscription_is_refused_the_others_go_on_and_a_completed_one_frees_its_slot() {
    for protocol in [Protocol::Transport, Protocol::Legacy] {
        let db = TestDb::new();
        let app = TestApp::start(&db, &["production"]).await;
        let after = mark(&app).await;
        let mut ws = Client::connect(app.addr, protocol).await;
        for i in 1..=101 {
            ws.watch(&i.to_string(), &after).await;
        }
        // Nothing is said about the first 100: the first message is the refusal.
        assert_refused(&ws.expect_message().await, "101", 100);

        let after = mark(&app).await;
        assert_eq!(ws.events(100).await, ids(1..=100), "{protocol:?}");

        // Completed by the client: its slot takes a new one, and no more than that.
        ws.stop("1").await;
        let done = ws.expect_message().await;
        assert_eq!(done["type"], "complete", "{done}");
        assert_eq!(done["id"], "1");
        ws.watch("102", &after).await;
        ws.watch("103", &after).await;
        assert_refused(&ws.expect_message().await, "103", 100);

        app.create("search", "staging").await;
        let mut expected = ids(2..=100);
        expected.insert("102".to_owned());
        assert_eq!(ws.events(100).await, expected, "{protocol:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn operations_the_server_completes_free_their_slot_and_queries_count_too() {
    for protocol in [Protocol::Transport, Protocol::Legacy] {
        let db = TestDb::new();
        let app = TestApp::start_with(
            &db,
            &["production"],
            options(WsLimits {
                max_subscriptions: 1,
                ..Default::default()
            }),
        )
        .await;
        let after = mark(&app).await;
        let mut ws = Client::connect(app.addr, protocol).await;

        // A subscription refused by the schema ends at once (its error, then complete)…
        ws.subscribe(
            "bad",
            "subscription { deploymentEvents(after: \"nope\") { id } }",
        )
        .await;
        let error = ws.expect_message().await;
        assert_eq!(error["id"], "bad");
        let done = ws.expect_message().await;
        assert_eq!(
            (done["type"].as_str(), done["id"].as_str()),
            (Some("complete"), Some("bad"))
        );
        // …and so does a query, which answers and completes.
        ws.subscribe("q1", "{ __typename }").await;
        let answer = ws.expect_message().await;
        assert_eq!(answer["id"], "q1");
        assert_eq!(answer["payload"]["data"]["__typename"], "Query");
        let done = ws.expect_message().await;
        assert_eq!(
            (done["type"].as_str(), done["id"].as_str()),
            (Some("complete"), Some("q1"))
        );

        // Both slots were freed: the one slot takes a live subscription; then a query is
        // refused like any other operation.
        ws.watch("live", &after).await;
        ws.subscribe("q2", "{ __typename }").await;
        assert_refused(&ws.expect_message().await, "q2", 1);
        app.create("billing", "staging").await;
        assert_eq!(ws.events(1).await, named(&["live"]));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_connection_without_connection_init_is_closed_with_4408() {
    for protocol in [Protocol::Transport, Protocol::Legacy] {
        let db = TestDb::new();
        let app = TestApp::start_with(
            &db,
            &["production"],
            options(WsLimits {
                init_timeout: Duration::from_secs(1),
                ..Default::default()
            }),
        )
        .await;
        let after = mark(&app).await;
        let mut initialised = Client::connect(app.addr, protocol).await;
        let mut silent = Client {
            ws: open(app.addr, protocol).await.expect("connect"),
            protocol,
        };
        let started = Instant::now();
        let (code, reason) = silent.close_frame().await.expect("a close frame");
        assert_eq!(code, 4408, "{protocol:?}");
        assert_eq!(reason, "Connection initialisation timeout");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "not before the timeout: {:?}",
            started.elapsed()
        );

        // The deadline is for `connection_init` only: the other connection goes on.
        initialised.watch("1", &after).await;
        app.create("billing", "staging").await;
        assert_eq!(initialised.events(1).await, ids(1..=1));
        app.stop().await;
    }
}

#[tokio::test]
async fn an_oversize_message_closes_its_connection_with_1009_and_no_other() {
    const MAX: usize = 4096;
    let db = TestDb::new();
    let app = TestApp::start_with(
        &db,
        &["production"],
        options(WsLimits {
            max_message_bytes: MAX,
            ..Default::default()
        }),
    )
    .await;
    let after = mark(&app).await;
    let mut other = Client::connect(app.addr, Protocol::Transport).await;
    other.watch("1", &after).await;
    let mut big = Client::connect(app.addr, Protocol::Legacy).await;

    // A message of exactly the limit is accepted.
    let message = |id: &str, bytes: usize| {
        let mut text = watch_message(Protocol::Legacy, id, &after).to_string();
        let pad = " ".repeat(bytes - text.len());
        text.insert_str(text.len() - 1, &pad);
        text
    };
    big.send_text(message("fits", MAX)).await;
    app.create("billing", "staging").await;
    assert_eq!(big.events(1).await, named(&["fits"]));
    assert_eq!(other.events(1).await, ids(1..=1));

    // One byte more closes that connection.
    big.send_text(message("over", MAX + 1)).await;
    assert_eq!(
        big.close_frame().await,
        Some((1009, "Message too big".to_owned()))
    );
    // A far larger one too (refused from its frame header, before its payload is read).
    let mut huge = Client::connect(app.addr, Protocol::Transport).await;
    // The server may reset the connection before the client has written it all.
    let _ = huge
        .ws
        .send(Message::text(message("huge", 256 * 1024)))
        .await;
    assert_eq!(huge.close_frame().await.map(|(code, _)| code), Some(1009));

    // The other connection, and new ones, are untouched.
    let mut fresh = Client::connect(app.addr, Protocol::Transport).await;
    let after = mark(&app).await;
    assert_eq!(other.events(1).await, ids(1..=1));
    fresh.watch("2", &after).await;
    app.create("search", "staging").await;
    assert_eq!(other.events(1).await, ids(1..=1));
    assert_eq!(fresh.events(1).await, ids(2..=2));
    app.stop().await;
}

/// An upgrade request sent as plain HTTP, to read the refusal's body.
async fn upgrade_over_http(app: &TestApp) -> reqwest::Response {
    app.client
        .get(app.url("/graphql/ws"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Protocol", "graphql-transport-ws")
        .send()
        .await
        .expect("send the upgrade request")
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_and_a_closed_one_frees_its_slot() {
    let db = TestDb::new();
    let app = TestApp::start_with(
        &db,
        &["production"],
        options(WsLimits {
            max_connections: 3,
            ..Default::default()
        }),
    )
    .await;
    let after = mark(&app).await;
    let mut open_ones = Vec::new();
    for protocol in [Protocol::Transport, Protocol::Legacy, Protocol::Transport] {
        open_ones.push(Client::connect(app.addr, protocol).await);
    }

    // The 4th: refused before the upgrade, with a coded GraphQL-shaped body.
    match open(app.addr, Protocol::Transport).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("a 4th connection was accepted"),
    }
    let refused = upgrade_over_http(&app).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("a JSON body");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "TOO_MANY_CONNECTIONS"
    );
    assert!(body["errors"][0]["message"].is_string());
    // Plain HTTP is not counted.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );

    // The first three go on.
    for (i, ws) in open_ones.iter_mut().enumerate() {
        ws.watch(&i.to_string(), &after).await;
    }
    app.create("billing", "staging").await;
    for (i, ws) in open_ones.iter_mut().enumerate() {
        assert_eq!(ws.events(1).await, ids(i..=i));
    }

    // Closing one frees its slot as soon as the server has seen the close.
    let mut closing = open_ones.pop().expect("a connection");
    closing.ws.close(None).await.expect("send a close frame");
    assert!(closing
        .close_frame()
        .await
        .is_none_or(|(code, _)| code == 1000));
    let deadline = Instant::now() + WAIT;
    let mut replacement = loop {
        match open(app.addr, Protocol::Legacy).await {
            Ok(ws) => break ws,
            Err(err) => assert!(
                Instant::now() < deadline,
                "the slot was not freed in time: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    replacement
        .send(Message::text(
            json!({ "type": "connection_init" }).to_string(),
        ))
        .await
        .expect("send init");
    let mut replacement = Client {
        ws: replacement,
        protocol: Protocol::Legacy,
    };
    assert_eq!(replacement.expect_message().await["type"], "connection_ack");
    // …and only that slot.
    assert_eq!(upgrade_over_http(&app).await.status(), 503);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The flood, against the real binary
// ---------------------------------------------------------------------------------------

const FLOOD: usize = 50_000;
const FLOOD_LIMIT: usize = 100;
/// Growth of the server's resident memory the flood may cause, peak included. Without
/// the limit the debug binary went from 23 MB to 1,046 MB; with it, about +5 MB.
const FLOOD_RSS_BOUND_KB: u64 = 40 * 1024;
const FLOOD_TIME_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_50000_subscribes_on_one_connection_leaves_memory_flat() {
    let db = TestDb::new();
    let server = Server::start_with(
        db.url(),
        &[
            "--ws-max-subscriptions",
            &FLOOD_LIMIT.to_string(),
            "--ws-max-message-bytes",
            "65536",
        ],
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("an HTTP client");
    let healthz = format!("http://{}/healthz", server.addr());
    assert_eq!(
        http.get(&healthz).send().await.expect("healthz").status(),
        200
    );

    let create = || async {
        let created: Value = http
            .post(format!("http://{}/graphql", server.addr()))
            .json(&json!({ "query": CREATE,
                           "variables": { "input": create_input("billing", "staging") } }))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("JSON");
        assert!(created.get("errors").is_none(), "{created}");
        created["data"]["createDeployment"]["event"]["cursor"]
            .as_str()
            .expect("a cursor")
            .to_owned()
    };
    let after = create().await;

    let ws = Client::connect(server.addr(), Protocol::Transport).await;
    server.reset_peak_memory();
    let (before_kb, _) = server.memory_kib();
    let started = Instant::now();

    // Written from another task while this one reads: the server answers as it reads,
    // and stops reading when its answers are not read.
    let (mut write, mut read) = ws.ws.split();
    let cursor = after.clone();
    let writer = tokio::spawn(async move {
        for i in 1..=FLOOD {
            let message = watch_message(Protocol::Transport, &i.to_string(), &cursor);
            write
                .feed(Message::text(message.to_string()))
                .await
                .expect("send a subscribe");
        }
        write.flush().await.expect("flush");
        write
    });

    let mut refused = vec![false; FLOOD + 1];
    let mut refusals = 0;
    while refusals < FLOOD - FLOOD_LIMIT {
        let remaining = FLOOD_TIME_LIMIT.saturating_sub(started.elapsed());
        let frame = timeout(remaining, read.next())
            .await
            .unwrap_or_else(|_| panic!("only {refusals} refusals in {FLOOD_TIME_LIMIT:?}"));
        let Some(Ok(Message::Text(text))) = frame else {
            panic!("the connection ended or sent a non-text frame: {frame:?}");
        };
        let msg: Value = serde_json::from_str(&text).expect("JSON");
        let id: usize = msg["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a reply about one of the ids sent: {msg}"));
        assert!(id > FLOOD_LIMIT, "the first {FLOOD_LIMIT} stay open: {msg}");
        assert_refused(&msg, &id.to_string(), FLOOD_LIMIT);
        assert!(!refused[id], "refused once: {msg}");
        refused[id] = true;
        refusals += 1;
    }
    let flood_time = started.elapsed();
    let (after_kb, peak_kb) = server.memory_kib();
    eprintln!(
        "flood: {FLOOD} subscribes in {flood_time:?}; server RSS {before_kb} kB before, \
         {after_kb} kB after, peak {peak_kb} kB"
    );
    assert!(
        peak_kb.saturating_sub(before_kb) < FLOOD_RSS_BOUND_KB,
        "RSS grew from {before_kb} kB to a peak of {peak_kb} kB"
    );
    let write = writer.await.expect("the writer");

    // The 100 accepted subscriptions are live.
    let last = create().await;
    let mut ws = Client {
        ws: write.reunite(read).expect("the two halves"),
        protocol: Protocol::Transport,
    };
    assert_eq!(ws.events(FLOOD_LIMIT).await, ids(1..=FLOOD_LIMIT));

    assert_eq!(
        http.get(&healthz).send().await.expect("healthz").status(),
        200
    );
    // A second connection is not affected by the first one's flood.
    let mut second = Client::connect(server.addr(), Protocol::Legacy).await;
    second.watch("a", &after).await;
    let replayed = second.expect_message().await;
    assert_eq!(replayed["id"], "a");
    assert_eq!(
        replayed["payload"]["data"]["deploymentEvents"]["cursor"],
        last.as_str()
    );
    second.subscribe("b", "{ __typename }").await;
    let answer = second.expect_message().await;
    assert_eq!(answer["id"], "b");
    assert_eq!(answer["payload"]["data"]["__typename"], "Query");
}
