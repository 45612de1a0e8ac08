//! WebSocket subscriptions: `GET /graphql/ws`, both subprotocols, and the limits of a
//! connection ([`WsLimits`]):
//!
//! - open connections, all clients together: beyond `max_connections` the upgrade is
//!   refused with 503 `TOO_MANY_CONNECTIONS`;
//! - `connection_init` within `init_timeout`, or the socket is closed with 4408;
//! - messages of at most `max_message_bytes`: a larger one closes its socket with 1009;
//! - at most `max_subscriptions` operations open at once per connection: the next
//!   `subscribe` / `start` gets an `error` message `TOO_MANY_SUBSCRIPTIONS` for its id and
//!   never reaches the schema.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_graphql::http::{
    ClientMessage, WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage,
};
use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::Instrument;

use super::{request_error, AppState, WsLimits};

/// After a stop is asked for, how long a WebSocket stays open so that the `complete`
/// messages of its subscriptions reach the client before the close frame.
const WS_CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Read buffer of each WebSocket: what a client sends is small (a `subscribe` message);
/// a larger message is read in more steps. Every idle subscriber holds one.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// Refusals waiting to be written. Small on purpose: when the client does not read, the
/// reading of its messages waits too, instead of refusals piling up in memory.
const REFUSAL_QUEUE: usize = 16;

/// Close code and reason when `connection_init` does not come in time (the
/// graphql-transport-ws spec's; used for the legacy protocol too).
const INIT_TIMEOUT_CLOSE: (u16, &str) = (4408, "Connection initialisation timeout");

/// Close code and reason for a message over `max_message_bytes` (RFC 6455: message too
/// big).
const TOO_BIG_CLOSE: (u16, &str) = (1009, "Message too big");

/// `GET /graphql/ws`: subscriptions over either WebSocket subprotocol.
pub async fn subscriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        });
    let Some(protocol) = protocol else {
        return request_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Offer the graphql-transport-ws or graphql-ws subprotocol",
        );
    };
    // Taken before the upgrade so that a refused client costs no socket task; the
    // socket task holds the permit, so a closed connection frees its slot.
    let Ok(permit) = state.ws_slots.clone().try_acquire_owned() else {
        return request_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_CONNECTIONS",
            "Too many open WebSocket connections; try again later",
        );
    };
    let limits = &state.options.ws;
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        // Messages here are small (an event is well under 1 KiB); the 128 KiB defaults
        // would cost every idle subscriber more than everything else it needs.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        // Each message is written as it is sent (and flushed right after): nothing waits
        // in a buffer, and no buffer is kept ahead for it.
        .write_buffer_size(0)
        // The frame bound rejects an oversize frame from its header, before its payload
        // is buffered; the message bound covers one split into many frames.
        .max_frame_size(limits.max_message_bytes)
        .max_message_size(limits.max_message_bytes)
        // The connection's task keeps the upgrade request's span, and with it the
        // request id, so its log lines can be told apart.
        .on_upgrade(move |socket| {
            serve_socket(socket, state, protocol, permit).instrument(tracing::Span::current())
        })
}

/// A poisoned lock only means a panic elsewhere while it was held; what these locks guard
/// stays consistent (each change is one insert, remove or flag).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the filter on a connection's input and the tap on its output share.
struct Gate {
    max_subscriptions: usize,
    /// Ids of the operations the schema is running for this connection: the same keys
    /// as async-graphql's own map, which a `subscribe` adds to and a `complete` it sends
    /// removes from.
    active: HashSet<String>,
    initialised: bool,
    too_big: bool,
}

impl Gate {
    /// Decides on one client message: `None` to hand it to async-graphql, or the
    /// refusal to send instead.
    fn admit(&mut self, message: &serde_json::Result<ClientMessage>) -> Option<String> {
        match message {
            Ok(ClientMessage::ConnectionInit { .. }) => self.initialised = true,
            // A known id replaces that operation in async-graphql: the count stays.
            Ok(ClientMessage::Start { id, .. }) if !self.active.contains(id) => {
                if self.active.len() >= self.max_subscriptions {
                    return Some(too_many_subscriptions(id, self.max_subscriptions));
                }
                self.active.insert(id.clone());
            }
            // All else goes through, unparsable messages included: async-graphql answers
            // those per protocol (it closes the socket). It is handed this very parse, so
            // nothing can reach it uncounted.
            _ => {}
        }
        None
    }

    /// Notes an operation's end from what async-graphql sends.
    fn saw_output(&mut self, text: &str) {
        // Events are most of the traffic and never end an operation: skip parsing them.
        if text.starts_with(r#"{"type":"next""#) || text.starts_with(r#"{"type":"data""#) {
            return;
        }
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(rename = "type")]
            kind: String,
            id: Option<String>,
        }
        if let Ok(Envelope { kind, id: Some(id) }) = serde_json::from_str::<Envelope>(text) {
            if kind == "complete" || kind == "error" {
                self.active.remove(&id);
            }
        }
    }
}

/// The `error` message refusing operation `id`: same shape in both protocols, a list of
/// GraphQL errors (the legacy clients accept a list there too).
fn too_many_subscriptions(id: &str, limit: usize) -> String {
    json!({
        "id": id,
        "type": "error",
        "payload": [{
            "message": format!(
                "Too many operations open on this connection (at most {limit}); \
                 complete one first"
            ),
            "extensions": { "code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit },
        }],
    })
    .to_string()
}

/// Runs one WebSocket connection, holding its connection slot. On a stop, the
/// subscription streams end first (each sends `complete`), then the input is cut after a
/// short grace and the socket is closed with 1001 (going away), rather than dropped.
async fn serve_socket(
    socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    _slot: OwnedSemaphorePermit,
) {
    let limits: WsLimits = state.options.ws.clone();
    let (mut sink, mut source) = socket.split();
    let gate = Arc::new(Mutex::new(Gate {
        max_subscriptions: limits.max_subscriptions,
        active: HashSet::new(),
        initialised: false,
        too_big: false,
    }));
    let (refuse, mut refusals) = mpsc::channel::<String>(REFUSAL_QUEUE);

    let input_gate = gate.clone();
    let input = async_stream::stream! {
        while let Some(frame) = source.next().await {
            let message = match frame {
                Ok(Message::Text(text)) => ClientMessage::from_bytes(text.as_bytes()),
                Ok(Message::Binary(bytes)) => ClientMessage::from_bytes(bytes),
                Ok(_) => continue,
                Err(err) => {
                    // axum keeps tungstenite's error only as a boxed error; its text is
                    // the one sign of which it was ("Space limit exceeded: Message too
                    // long: …"). Should it change, an oversize message still ends the
                    // connection, only without the 1009 frame.
                    if err.to_string().starts_with("Space limit exceeded") {
                        lock(&input_gate).too_big = true;
                    }
                    break;
                }
            };
            let refusal = lock(&input_gate).admit(&message);
            match refusal {
                None => yield message,
                Some(refusal) => {
                    if refuse.send(refusal).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let stopping = state.stopping.clone();
    let input = Box::pin(input.take_until(async move {
        stopping.wait().await;
        tokio::time::sleep(WS_CLOSE_GRACE).await;
    }));

    let mut data = Data::default();
    data.insert(state.stopping.clone());
    let output_gate = gate.clone();
    let mut output = GraphQLWebSocket::from_message_stream(state.schema.clone(), input, protocol)
        .connection_data(data)
        .map(move |msg| match msg {
            WsMessage::Text(text) => {
                lock(&output_gate).saw_output(&text);
                Message::Text(text.into())
            }
            WsMessage::Close(code, reason) => close(code, reason),
        });

    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);
    loop {
        let awaiting_init = !lock(&gate).initialised;
        let msg = tokio::select! {
            // Refusals first: the input waits on this queue when it is full.
            biased;
            Some(refusal) = refusals.recv() => Message::Text(refusal.into()),
            msg = output.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
            () = &mut init_deadline, if awaiting_init => {
                // `connection_init` may have been read while this select was waiting.
                if lock(&gate).initialised {
                    continue;
                }
                let (code, reason) = INIT_TIMEOUT_CLOSE;
                let _ = sink.send(close(code, reason.to_owned())).await;
                return;
            }
        };
        if sink.send(msg).await.is_err() {
            return;
        }
    }

    let too_big = lock(&gate).too_big;
    let closing = if too_big {
        Some(TOO_BIG_CLOSE)
    } else if state.stopping.is_stopping() {
        Some((1001, "server shutting down"))
    } else {
        None
    };
    if let Some((code, reason)) = closing {
        let _ = sink.send(close(code, reason.to_owned())).await;
    }
    if too_big {
        // The rest of that message is still unread, so dropping the socket sends a reset,
        // which can overtake the close frame: give the client a moment to read it.
        tokio::time::sleep(WS_CLOSE_GRACE).await;
    }
}

fn close(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
