//! The least a server can do for the peers harness's fan-out (`fanout.mjs`): no GraphQL,
//! no database. A POST to `/graphql` is answered at once with a new deployment id, and the
//! event is sent to every subscriber on `/graphql/ws` (graphql-transport-ws, just the
//! messages `fanout.mjs` uses). Its send-to-delivery figures are what the client itself
//! costs on this machine: no real server can deliver sooner (BENCHMARKS.md).
//!
//! `fanout-floor --listen 127.0.0.1:PORT`, then
//! `node fanout.mjs --target shiplog --ws ws://127.0.0.1:PORT/graphql/ws --http http://127.0.0.1:PORT/graphql`.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::broadcast;

type Events = broadcast::Sender<Arc<str>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen = match args.iter().position(|a| a == "--listen") {
        Some(at) => args
            .get(at + 1)
            .cloned()
            .ok_or("--listen needs an address")?,
        None => "127.0.0.1:25800".to_owned(),
    };
    let (events, _) = broadcast::channel::<Arc<str>>(256);
    let app = Router::new()
        .route("/graphql", post(publish))
        .route("/graphql/ws", get(upgrade))
        .with_state(events);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("fanout-floor listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Any POST creates a deployment: its CREATED event goes to every subscriber, then the
/// answer goes back.
async fn publish(State(events): State<Events>) -> impl IntoResponse {
    let (deployment, event) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let occurred_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payload = json!({
        "id": event.to_string(),
        "deploymentId": deployment.to_string(),
        "kind": "CREATED",
        "actor": "alice",
        "note": null,
        "fromStatus": null,
        "toStatus": "PENDING_APPROVAL",
        "occurredAt": occurred_at,
    });
    // Nobody subscribed is not an error.
    let _ = events.send(Arc::from(payload.to_string()));
    axum::Json(json!({
        "data": { "createDeployment": {
            "deployment": { "id": deployment.to_string() },
            "event": { "id": event.to_string() },
        } }
    }))
}

async fn upgrade(State(events): State<Events>, ws: WebSocketUpgrade) -> impl IntoResponse {
    ws.protocols(["graphql-transport-ws"])
        .on_upgrade(move |socket| serve(socket, events))
}

async fn serve(mut socket: WebSocket, events: Events) {
    let mut feed = events.subscribe();
    let mut subscribed: Option<String> = None;
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(Message::Text(text))) = incoming else { return };
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else { return };
                let reply = match message["type"].as_str() {
                    Some("connection_init") => Some(json!({ "type": "connection_ack" })),
                    Some("ping") => Some(json!({ "type": "pong" })),
                    Some("subscribe") => {
                        subscribed = message["id"].as_str().map(str::to_owned);
                        None
                    }
                    Some("complete") => {
                        subscribed = None;
                        None
                    }
                    _ => None,
                };
                if let Some(reply) = reply {
                    if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                        return;
                    }
                }
            }
            event = feed.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let Some(id) = &subscribed {
                    let text = format!(
                        r#"{{"type":"next","id":{},"payload":{{"data":{{"deploymentEvents":{event}}}}}}}"#,
                        Value::from(id.as_str())
                    );
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
