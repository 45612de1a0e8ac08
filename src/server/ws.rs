//! WebSocket subscriptions: `GET /graphql/ws`, both subprotocols.

use async_graphql::http::{WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage};
use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

use super::{request_error, AppState};

/// After a stop is asked for, how long a WebSocket stays open so that the `complete`
/// messages of its subscriptions reach the client before the close frame.
const WS_CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Read and write buffer of each WebSocket.
const WS_BUFFER_BYTES: usize = 4 * 1024;

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
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        // Messages here are small (an event is well under 1 KiB); the 128 KiB defaults
        // would cost every idle subscriber more than everything else it needs.
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| serve_socket(socket, state, protocol))
}

/// Runs one WebSocket connection. On a stop, the subscription streams end first (each
/// sends `complete`), then the input is cut after a short grace and the socket is closed
/// with 1001 (going away), rather than dropped.
async fn serve_socket(socket: WebSocket, state: AppState, protocol: WebSocketProtocols) {
    let (mut sink, source) = socket.split();
    let stopping = state.stopping.clone();
    let input = Box::pin(
        source
            .take_while(|msg| std::future::ready(msg.is_ok()))
            .filter_map(|msg| {
                std::future::ready(match msg {
                    Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                    Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                    _ => None,
                })
            })
            .take_until(async move {
                stopping.wait().await;
                tokio::time::sleep(WS_CLOSE_GRACE).await;
            }),
    );
    let mut data = Data::default();
    data.insert(state.stopping.clone());
    let mut output = GraphQLWebSocket::new(state.schema.clone(), input, protocol)
        .connection_data(data)
        .map(|msg| match msg {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        });
    while let Some(msg) = output.next().await {
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    if state.stopping.is_stopping() {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1001,
                reason: "server shutting down".into(),
            })))
            .await;
    }
}
