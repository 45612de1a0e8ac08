//! The peers harness's fan-out (`../shared/peers/fanout.mjs`) with a client that costs
//! little: the same subscribers, documents, rate and phases, in Rust on tokio, against
//! either server. `fanout.mjs` spends about 25 µs of one Node thread on every message, so
//! with 1,000 subscribers its own reading of one event takes 25-28 ms and sets a floor
//! under both servers' p99 (BENCHMARKS.md). This client's floor is lower: against
//! `fanout-floor` (a server that only sends) its p99 is about 18 ms at 1,000 x 10/s, a
//! tokio wake-up, a read and a small parse per message on the server's two cores. A
//! server at that floor shows it, so the ratio it gives is an upper bound on a fast
//! server's own.
//!
//! ```text
//! fanout-client --target shiplog --ws ws://127.0.0.1:PORT/graphql/ws --http http://127.0.0.1:PORT/graphql
//! fanout-client --target peer    --ws ws://127.0.0.1:55505/graphql   --http http://127.0.0.1:55505/graphql
//! ```
//!
//! 1. `--subs` connections (graphql-transport-ws), each with one subscription to new
//!    deployment events, opened 64 at a time.
//! 2. Probe: a deployment every 0.5 s until every subscriber has had an event (30 s at
//!    most); then `--warmup-s` seconds at the measured rate, not measured.
//! 3. `--rate` creations a second for `--seconds` seconds, open loop, each one's send
//!    time kept by the deployment id its answer names.
//! 4. Drains until no delivery came for 3 s, and prints send->delivery p50/p99 (the publisher's send of the creating request to the
//!    arrival, as `fanout.mjs` measures it), the publish round trip, and what was missing
//!    or doubled (`unmatched`: a probe or warm-up event that arrived after the measured
//!    phase began). One human line on stderr, one `FANOUT {json}` line on stdout.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// The documents of `../shared/peers/docs.mjs` (`SHIPLOG` and `PEER`), word for word.
const SHIPLOG_SUBSCRIBE: &str = "subscription Fanout {
  deploymentEvents { id deploymentId kind actor note fromStatus toStatus occurredAt }
}";
const SHIPLOG_PUBLISH: &str = "mutation FanoutPublish($input: CreateDeploymentInput!) {
  createDeployment(input: $input) { deployment { id } event { id } }
}";
const PEER_SUBSCRIBE: &str = "subscription Fanout {
  deploymentEventCreated { id deploymentId kind actor note fromStatus toStatus occurredAt }
}";
const PEER_PUBLISH: &str = "mutation FanoutPublish($input: CreateDeploymentInput!) {
  createDeployment(input: $input) { result { rowId } }
}";

/// Connections opened at once while subscribing.
const CONNECTING: usize = 64;
/// Read buffer per connection: tungstenite zeroes the whole buffer for every read (see W4).
const READ_BUFFER: usize = 4096;
/// The drain ends when no delivery came for this long.
const QUIET: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Shiplog,
    Peer,
}

#[derive(Parser)]
#[command(about = "fanout.mjs's fan-out with a cheap client, against shiplog or the peer")]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// WebSocket URL (loopback only).
    #[arg(long)]
    ws: String,
    /// HTTP URL of the GraphQL endpoint (loopback only).
    #[arg(long)]
    http: String,
    #[arg(long, default_value_t = 1000)]
    subs: usize,
    /// Creations per second.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Seconds of measured publishing.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    #[arg(long, default_value_t = 2)]
    warmup_s: u32,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// What one subscriber received: each event's deployment id and when it arrived.
type Received = Vec<(Uuid, Instant)>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    for url in [&args.ws, &args.http] {
        let rest = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or("a URL needs a scheme")?;
        if !(rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]"))
        {
            return Err(format!("refusing a non-loopback URL: {url}").into());
        }
    }
    let (subscribe, publish, field) = match args.target {
        Target::Shiplog => (SHIPLOG_SUBSCRIBE, SHIPLOG_PUBLISH, "deploymentEvents"),
        Target::Peer => (PEER_SUBSCRIBE, PEER_PUBLISH, "deploymentEventCreated"),
    };
    let run_tag = format!("{:x}", chrono::Utc::now().timestamp_millis());

    // 1. Subscribers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let connecting = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let connected = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.subs);
    for _ in 0..args.subs {
        let subscriber = Subscriber {
            url: args.ws.clone(),
            subscribe,
            field,
            live: live.clone(),
            connected: connected.clone(),
            delivered: delivered.clone(),
            measuring: measuring.clone(),
            stop: stop_rx.clone(),
        };
        let (connecting, errors) = (connecting.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let result = subscriber.run(connecting).await;
            match result {
                Ok(received) => received,
                Err(err) => {
                    if let Ok(mut errors) = errors.lock() {
                        errors.push(err.to_string());
                    }
                    Vec::new()
                }
            }
        }));
    }
    while connected.load(Ordering::Relaxed) < args.subs
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected_n = connected.load(Ordering::Relaxed);
    eprintln!(
        "[fanout-client] {connected_n}/{} connected in {:.1} s",
        args.subs,
        started.elapsed().as_secs_f64()
    );

    // 2. Probe, then warm up.
    let publisher = Publisher {
        http: reqwest::Client::new(),
        url: args.http.clone(),
        document: publish,
        target: args.target,
    };
    let probing = Instant::now();
    let mut k = 0;
    while live.load(Ordering::Relaxed) < connected_n && probing.elapsed() < Duration::from_secs(30)
    {
        publisher
            .create(&format!("fanout-probe-{run_tag}-{k}"))
            .await?;
        k += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "[fanout-client] {}/{connected_n} live after {:.1} s of probing",
        live.load(Ordering::Relaxed),
        probing.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    for k in 0..args.rate * args.warmup_s {
        ticker.tick().await;
        let (publisher, service) = (publisher.clone(), format!("fanout-warmup-{run_tag}-{k}"));
        tokio::spawn(async move { publisher.create(&service).await });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 3. The measured phase, open loop.
    measuring.store(true, Ordering::Relaxed);
    let total = args.rate * args.seconds;
    let mut ticker = tokio::time::interval(interval);
    let mut pending = Vec::with_capacity(total as usize);
    for k in 0..total {
        ticker.tick().await;
        let (publisher, service) = (publisher.clone(), format!("fanout-{run_tag}-{k}"));
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            let id = publisher.create(&service).await;
            (id, sent, sent.elapsed())
        }));
    }
    let mut sent: HashMap<Uuid, Instant> = HashMap::new();
    let mut round_trips = Vec::new();
    let mut publish_errors = 0usize;
    for task in pending {
        match task.await {
            Ok((Ok(id), at, took)) => {
                sent.insert(id, at);
                round_trips.push(took);
            }
            Ok((Err(err), ..)) => {
                publish_errors += 1;
                eprintln!("[fanout-client] publish failed: {err}");
            }
            Err(err) => return Err(err.into()),
        }
    }

    // 4. Drain until no delivery came for a while.
    let mut last_count = delivered.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last_change.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now != last_count {
            last_count = now;
            last_change = Instant::now();
        }
    }
    let _ = stop_tx.send(true);

    let mut latencies = Vec::new();
    let (mut duplicates, mut unmatched) = (0usize, 0usize);
    for task in tasks {
        let received = task.await?;
        let mut seen = HashSet::with_capacity(sent.len());
        for (id, at) in received {
            match sent.get(&id) {
                Some(send) if seen.insert(id) => latencies.push(at.duration_since(*send)),
                Some(_) => duplicates += 1,
                None => unmatched += 1,
            }
        }
    }
    latencies.sort_unstable();
    round_trips.sort_unstable();
    let expected = sent.len() * connected_n;
    let ms = |d: Option<&Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let report = json!({
        "target": match args.target { Target::Shiplog => "shiplog", Target::Peer => "peer" },
        "subscribers": args.subs,
        "connected": connected_n,
        "rate": args.rate,
        "seconds": args.seconds,
        "published": sent.len(),
        "publishErrors": publish_errors,
        "expected": expected,
        "delivered": latencies.len(),
        "missing": expected - latencies.len().min(expected),
        "duplicates": duplicates,
        "unmatched": unmatched,
        "sendToDelivery": {
            "p50": ms(percentile(&latencies, 0.50)),
            "p99": ms(percentile(&latencies, 0.99)),
            "max": ms(latencies.last()),
        },
        "publishRoundTrip": {
            "p50": ms(percentile(&round_trips, 0.50)),
            "p99": ms(percentile(&round_trips, 0.99)),
        },
        "subscriberErrors": errors.lock().map(|e| e.iter().take(5).cloned().collect::<Vec<_>>()).unwrap_or_default(),
    });
    eprintln!(
        "[fanout-client] {}: {}/{expected} delivered, send->delivery p50 {:.1} / p99 {:.1} ms, \
         publish round trip p50 {:.1} ms, {duplicates} duplicates, {unmatched} unmatched",
        report["target"],
        latencies.len(),
        ms(percentile(&latencies, 0.50)).unwrap_or(f64::NAN),
        ms(percentile(&latencies, 0.99)).unwrap_or(f64::NAN),
        ms(percentile(&round_trips, 0.50)).unwrap_or(f64::NAN),
    );
    println!("FANOUT {report}");
    Ok(())
}

/// The value at quantile `q` of sorted `values` (as `fanout.mjs` takes it).
fn percentile<T>(values: &[T], q: f64) -> Option<&T> {
    if values.is_empty() {
        return None;
    }
    let at = ((q * values.len() as f64) as usize).min(values.len() - 1);
    values.get(at)
}

#[derive(Clone)]
struct Publisher {
    http: reqwest::Client,
    url: String,
    document: &'static str,
    target: Target,
}

impl Publisher {
    /// Creates one deployment (the input `fanout.mjs` sends) and answers its id.
    async fn create(&self, service: &str) -> Result<Uuid, Failure> {
        let body = json!({
            "query": self.document,
            "variables": { "input": {
                "service": service, "environment": "staging", "version": "1.0.0",
                "requester": "bench@example.com", "workRefs": ["BENCH-1"], "risk": null,
                "rollbackPlan": "Redeploy the previous version.",
            } },
        });
        let response: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await?
            .json()
            .await?;
        let id = match self.target {
            Target::Shiplog => &response["data"]["createDeployment"]["deployment"]["id"],
            Target::Peer => &response["data"]["createDeployment"]["result"]["rowId"],
        };
        let id = id
            .as_str()
            .ok_or_else(|| format!("publish: no id in {response}"))?;
        Ok(Uuid::parse_str(id)?)
    }
}

struct Subscriber {
    url: String,
    subscribe: &'static str,
    field: &'static str,
    live: Arc<AtomicUsize>,
    connected: Arc<AtomicUsize>,
    delivered: Arc<AtomicU64>,
    /// Deliveries are kept from the measured phase on (probe and warm-up ones are not).
    measuring: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

/// A graphql-transport-ws message, read only as far as this client needs.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(default, borrow)]
    data: Option<HashMap<&'a str, EventIds<'a>>>,
}

#[derive(Deserialize)]
struct EventIds<'a> {
    #[serde(rename = "deploymentId", borrow)]
    deployment_id: &'a str,
}

impl Subscriber {
    async fn run(mut self, connecting: Arc<tokio::sync::Semaphore>) -> Result<Received, Failure> {
        let mut permit = Some(connecting.acquire_owned().await?);
        let mut request = self.url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        ws.send(Message::text(r#"{"type":"connection_init"}"#))
            .await?;
        let mut received = Received::new();
        let mut subscribed = false;
        let mut got_one = false;
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = self.stop.changed() => return Ok(received),
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return Ok(received),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.into()),
            };
            let at = Instant::now();
            let incoming: Incoming<'_> = serde_json::from_str(&text)?;
            match incoming.kind {
                "connection_ack" if !subscribed => {
                    subscribed = true;
                    let subscribe = json!({ "id": "1", "type": "subscribe",
                        "payload": { "query": self.subscribe } });
                    ws.send(Message::text(subscribe.to_string())).await?;
                    self.connected.fetch_add(1, Ordering::Relaxed);
                    permit.take();
                }
                "next" => {
                    let id = incoming
                        .payload
                        .and_then(|p| p.data)
                        .and_then(|mut data| data.remove(self.field))
                        .ok_or_else(|| format!("a next message without {}: {text}", self.field))?;
                    if self.measuring.load(Ordering::Relaxed) {
                        received.push((Uuid::parse_str(id.deployment_id)?, at));
                    }
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    if !got_one {
                        got_one = true;
                        self.live.fetch_add(1, Ordering::Relaxed);
                    }
                }
                "ping" => ws.send(Message::text(r#"{"type":"pong"}"#)).await?,
                "error" | "complete" => {
                    return Err(format!("the subscription ended: {text}").into());
                }
                _ => {}
            }
        }
    }
}
