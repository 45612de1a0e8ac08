//! Per-operation metrics: one count and one duration per GraphQL operation, by type and
//! name, and one count per error code. The names of the metrics and the bounds of their
//! labels live in `crate::metrics`.
//!
//! `Hooks` (the schema's one extension) drives a `Recording` through a request's steps. It
//! times the whole request and counts the response after every error has its code and a
//! panic has become INTERNAL_SERVER_ERROR.
//!
//! Over HTTP an operation goes through the `request` hook. Over WebSocket it goes through
//! `subscribe` instead (async-graphql never calls `request` there): a query or mutation is
//! counted when its one response comes, a subscription once it is accepted (it may send
//! nothing for hours), and the errors of every response of the stream are counted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerError, Value};

use crate::metrics;

/// What one request's metrics need to know, gathered step by step; shared with the
/// stream of a WebSocket operation, which outlives the request's `Hooks`.
#[derive(Default, Clone)]
pub(super) struct Recording {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// The operation name the client asked for, if any.
    requested: Option<String>,
    /// The operation that runs, once the document is parsed and it is found there.
    operation: Option<(OperationType, Option<String>)>,
    /// Whether the document passed validation.
    validated: bool,
    /// A rehearsal that the HTTP handler runs to learn a batch's complexity: not an
    /// operation of its own, since the real run follows.
    dry_run: bool,
    /// Set on the WebSocket path: when the stream began, and whether the operation has
    /// been counted yet.
    stream: Option<StreamState>,
}

struct StreamState {
    started: Instant,
    counted: bool,
}

impl Recording {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The state is plain data; a panic elsewhere cannot leave it half-written.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Counts the operation as it is known now: `unknown` if it never got that far.
    fn count(&self, took: Duration) {
        let (kind, name) = match &self.operation {
            Some((kind, name)) => (type_label(*kind), name.as_deref()),
            None => ("unknown", self.requested.as_deref()),
        };
        let name = metrics::operation_name_label(name, self.validated);
        metrics::graphql_request(kind, name, took);
    }

    /// Counts the stream's operation once, if it has not been counted yet.
    fn count_stream_once(&mut self) {
        let took = match &mut self.stream {
            Some(stream) if !stream.counted => {
                stream.counted = true;
                stream.started.elapsed()
            }
            _ => return,
        };
        self.count(took);
    }
}

fn type_label(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The operation the request will run and its name, as `select_operation` finds it.
fn select(
    doc: &ExecutableDocument,
    requested: Option<&str>,
) -> Option<(OperationType, Option<String>)> {
    super::select_operation(doc, requested).map(|(name, op)| (op.ty, name.map(|n| n.to_string())))
}

fn count_errors(response: &Response) {
    for err in &response.errors {
        metrics::graphql_error(code_of(err));
    }
}

fn code_of(err: &ServerError) -> &str {
    match err.extensions.as_ref().and_then(|ext| ext.get("code")) {
        Some(Value::String(code)) => code,
        Some(Value::Enum(code)) => code.as_str(),
        // ErrorCodes, inside this extension, gives every error a code; this would be a
        // bug there, and `other` is where it shows.
        _ => "",
    }
}

/// The steps of a request, as `Hooks` sees them.
impl Recording {
    pub(super) fn prepared(&self, request: &Request) {
        self.state().requested = request.operation_name.clone();
    }

    /// Before parsing; the request's own data is attached by now (not yet when prepared).
    pub(super) fn parsing(&self, dry_run: bool) {
        self.state().dry_run = dry_run;
    }

    pub(super) fn parsed(&self, doc: &ExecutableDocument) {
        let mut state = self.state();
        state.operation = select(doc, state.requested.as_deref());
    }

    pub(super) fn validated(&self, ok: bool) {
        let mut state = self.state();
        state.validated = ok;
        let subscription = matches!(state.operation, Some((OperationType::Subscription, _)));
        if ok && subscription {
            // Accepted: count it now rather than at its first event.
            state.count_stream_once();
        }
    }

    /// The name async-graphql settled on; it agrees with `select`, and wins if not.
    pub(super) fn executing(&self, operation_name: Option<&str>) {
        if let Some((_, name)) = &mut self.state().operation {
            *name = operation_name.map(str::to_owned);
        }
    }

    /// The request's response, `took` after it began.
    pub(super) fn answered(&self, response: &Response, took: Duration) {
        let state = self.state();
        if !state.dry_run {
            state.count(took);
            count_errors(response);
        }
    }

    /// A WebSocket operation begins: its responses come through `streamed`.
    pub(super) fn stream_started(&self) {
        self.state().stream = Some(StreamState {
            started: Instant::now(),
            counted: false,
        });
    }

    /// One response of a WebSocket operation. The first response of a query or mutation
    /// is its answer; any response before a subscription was accepted is its failure.
    pub(super) fn streamed(&self, response: &Response) {
        self.state().count_stream_once();
        count_errors(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("a document")
    }

    #[test]
    fn the_operation_is_chosen_as_async_graphql_chooses_it() {
        let anonymous = doc("{ a }");
        assert_eq!(select(&anonymous, None), Some((OperationType::Query, None)));
        assert_eq!(select(&anonymous, Some("A")), None);

        let one = doc("mutation M { a }");
        assert_eq!(
            select(&one, None),
            Some((OperationType::Mutation, Some("M".into())))
        );

        let two = doc("query Q { a } subscription S { b }");
        assert_eq!(select(&two, None), None);
        assert_eq!(
            select(&two, Some("S")),
            Some((OperationType::Subscription, Some("S".into())))
        );
        assert_eq!(select(&two, Some("X")), None);
    }
}
