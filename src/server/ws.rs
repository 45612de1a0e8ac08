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

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{ClientMessage, WebSocketProtocols};
use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::StreamMap;
use tracing::Instrument;

use super::feeds::Out;
use super::{request_error, AppState};

/// After a stop is asked for, how long a WebSocket stays open so that the `complete`
/// messages of its subscriptions reach the client before the close frame.
const WS_CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Read buffer of each WebSocket: what a client sends is small (a `subscribe` message);
/// a larger message is read in more steps. Every idle subscriber holds one.
const WS_READ_BUFFER_BYTES: usize = 1024;

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

/// One message of the server's, as JSON text.
fn server_message(kind: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => json!({ "type": kind, "id": id }).to_string(),
        None => json!({ "type": kind }).to_string(),
    }
}

/// What the connection does after a client message.
enum Step {
    /// Nothing to send.
    Quiet,
    Send(String),
    /// Send this close frame and end.
    Close(u16, String),
    /// Send this, then end without a close frame.
    SendAndEnd(String),
    /// End without a close frame.
    End,
}

/// One connection's protocol state: the operations it runs, by the client's ids.
struct Connection {
    state: AppState,
    protocol: WebSocketProtocols,
    /// Data every operation of this connection runs with, once `connection_init` came.
    session: Option<Arc<Data>>,
    operations: StreamMap<String, Operation>,
}

/// An operation's responses, and how its `next` messages begin.
struct Operation {
    /// `{"type":"next","id":"…","payload":` (or `data` in the legacy protocol).
    prefix: Arc<str>,
    outs: BoxStream<'static, Out>,
}

impl futures_util::Stream for Operation {
    type Item = (Arc<str>, Out);

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let prefix = self.prefix.clone();
        self.outs
            .poll_next_unpin(cx)
            .map(|out| out.map(|out| (prefix, out)))
    }
}

impl Connection {
    fn next_kind(&self) -> &'static str {
        match self.protocol {
            WebSocketProtocols::SubscriptionsTransportWS => "data",
            WebSocketProtocols::GraphQLWS => "next",
        }
    }

    /// Handles one message from the client (async-graphql's protocol behaviour, kept
    /// as it was when it ran this endpoint).
    fn received(&mut self, text: &[u8]) -> Step {
        let message = match ClientMessage::from_bytes(text) {
            Ok(message) => message,
            Err(err) => return Step::Close(1002, err.to_string()),
        };
        match message {
            ClientMessage::ConnectionInit { .. } if self.session.is_some() => {
                const AGAIN: &str = "Too many initialisation requests.";
                match self.protocol {
                    WebSocketProtocols::SubscriptionsTransportWS => Step::SendAndEnd(
                        json!({ "type": "connection_error", "payload": { "message": AGAIN } })
                            .to_string(),
                    ),
                    WebSocketProtocols::GraphQLWS => Step::Close(4429, AGAIN.to_owned()),
                }
            }
            ClientMessage::ConnectionInit { .. } => {
                let mut data = Data::default();
                data.insert(self.state.stopping.clone());
                self.session = Some(Arc::new(data));
                Step::Send(server_message("connection_ack", None))
            }
            ClientMessage::Start { id, payload } => {
                let Some(session) = &self.session else {
                    return Step::Close(1011, "The handshake is not completed.".to_owned());
                };
                // A known id replaces that operation: the count stays.
                let limit = self.state.options.ws.max_subscriptions;
                if !self.operations.contains_key(&id) && self.operations.len() >= limit {
                    return Step::Send(too_many_subscriptions(&id, limit));
                }
                let outs = self.state.feeds.subscribe(
                    &self.state.schema,
                    session,
                    &self.state.store,
                    payload,
                );
                let id_json = serde_json::Value::String(id.clone()).to_string();
                let prefix = format!(
                    r#"{{"type":"{}","id":{id_json},"payload":"#,
                    self.next_kind()
                );
                self.operations.insert(
                    id,
                    Operation {
                        prefix: prefix.into(),
                        outs,
                    },
                );
                Step::Quiet
            }
            ClientMessage::Stop { id } => match self.operations.remove(&id) {
                Some(_) => Step::Send(server_message("complete", Some(&id))),
                None => Step::Quiet,
            },
            ClientMessage::ConnectionTerminate => Step::End,
            ClientMessage::Ping { .. } => Step::Send(server_message("pong", None)),
            ClientMessage::Pong { .. } => Step::Quiet,
        }
    }

    /// The message for one response or end of operation `id`.
    fn sent(&mut self, id: &str, prefix: &str, out: Out) -> String {
        let payload = match out {
            Out::Shared(text) => text,
            Out::Own(response) => match serde_json::to_string(&response) {
                Ok(text) => text.into(),
                Err(err) => {
                    tracing::error!(error = %err, "cannot serialise a response");
                    return server_message("complete", Some(id));
                }
            },
            Out::Done => {
                self.operations.remove(id);
                return server_message("complete", Some(id));
            }
        };
        let mut text = String::with_capacity(prefix.len() + payload.len() + 1);
        text.push_str(prefix);
        text.push_str(&payload);
        text.push('}');
        text
    }
}

/// Runs one WebSocket connection, holding its connection slot. On a stop, the
/// subscription streams end first (each sends `complete`), then reading stops after a
/// short grace and the socket is closed with 1001 (going away), rather than dropped.
async fn serve_socket(
    mut socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    _slot: OwnedSemaphorePermit,
) {
    let limits = state.options.ws.clone();
    let stopping = state.stopping.clone();
    let mut connection = Connection {
        state,
        protocol,
        session: None,
        operations: StreamMap::new(),
    };
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);
    let stop = stopping.clone().wait();
    tokio::pin!(stop);
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let mut stop_seen = false;
    let mut too_big = false;

    loop {
        let step = tokio::select! {
            biased;
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => connection.received(text.as_bytes()),
                Some(Ok(Message::Binary(bytes))) => connection.received(&bytes),
                Some(Ok(_)) => Step::Quiet,
                Some(Err(err)) => {
                    // axum keeps tungstenite's error only as a boxed error; its text is
                    // the one sign of which it was ("Space limit exceeded: Message too
                    // long: …"). Should it change, an oversize message still ends the
                    // connection, only without the 1009 frame.
                    too_big = err.to_string().starts_with("Space limit exceeded");
                    break;
                }
                None => break,
            },
            Some((id, (prefix, out))) = connection.operations.next(), if !connection.operations.is_empty() => {
                Step::Send(connection.sent(&id, &prefix, out))
            }
            () = &mut init_deadline, if connection.session.is_none() => {
                let (code, reason) = INIT_TIMEOUT_CLOSE;
                Step::Close(code, reason.to_owned())
            }
            () = &mut stop, if !stop_seen => {
                // The streams end themselves on a stop; their `complete` messages go
                // out during the grace.
                stop_seen = true;
                grace.as_mut().reset(tokio::time::Instant::now() + WS_CLOSE_GRACE);
                Step::Quiet
            }
            () = &mut grace, if stop_seen => break,
        };
        match step {
            Step::Quiet => {}
            Step::Send(text) => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            Step::Close(code, reason) => {
                let _ = socket.send(close(code, reason)).await;
                return;
            }
            Step::SendAndEnd(text) => {
                let _ = socket.send(Message::Text(text.into())).await;
                return;
            }
            Step::End => return,
        }
    }

    let closing = if too_big {
        Some(TOO_BIG_CLOSE)
    } else if stopping.is_stopping() {
        Some((1001, "server shutting down"))
    } else {
        None
    };
    if let Some((code, reason)) = closing {
        let _ = socket.send(close(code, reason.to_owned())).await;
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
