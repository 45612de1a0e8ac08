//! Operations: Prometheus metrics (`GET /metrics`) and the request id that ties a
//! response to its log lines.
//!
//! The recorder behind the `metrics` facade is process-global. It is installed the first
//! time anything here is used, so every server in the process (tests start many) renders
//! the same numbers: read them as rates and deltas, never as one server's totals.
//!
//! Every metric is recorded through a function of this module; the modules that record
//! (the GraphQL extension, the writer, the subscription stream) never name a metric.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use metrics::SharedString;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// GraphQL operations, by `operation_type` and `operation_name`.
pub const GRAPHQL_REQUESTS: &str = "shiplog_graphql_requests_total";
/// Seconds per GraphQL operation, by `operation_type` and `operation_name`.
pub const GRAPHQL_REQUEST_DURATION: &str = "shiplog_graphql_request_duration_seconds";
/// GraphQL errors, by `code` (their `extensions.code`).
pub const GRAPHQL_ERRORS: &str = "shiplog_graphql_errors_total";
/// Write groups the writer task finished, by `outcome` (`committed` or `failed`).
pub const WRITE_GROUPS: &str = "shiplog_write_groups_total";
/// Writes per write group.
pub const WRITE_GROUP_SIZE: &str = "shiplog_write_group_size";
/// Seconds the writer spends on a write group, by `phase`: `execute` (every write's
/// statements, up to COMMIT) and `commit` (COMMIT, its WAL write and fsync).
pub const WRITE_GROUP_DURATION: &str = "shiplog_write_group_duration_seconds";
/// Writes queued for the writer task and not yet taken into a group.
pub const WRITES_QUEUED: &str = "shiplog_writes_queued";
/// Open GraphQL subscriptions.
pub const LIVE_SUBSCRIBERS: &str = "shiplog_live_subscribers";
/// Lookups in the HTTP response cache, by `outcome` (`hit`, `miss`).
pub const RESPONSE_CACHE: &str = "shiplog_response_cache_lookups_total";
/// WebSocket operations running, each executed once for all the clients that sent it.
pub const SUBSCRIPTION_FEEDS: &str = "shiplog_subscription_feeds";
/// Attempts of webhook deliveries and executor triggers, by `kind` (`webhook`,
/// `executor`) and `outcome` (`succeeded`, `failed`).
pub const OUTBOX_ATTEMPTS: &str = "shiplog_outbox_attempts_total";

/// From a cache hit to a request that hits every timeout.
/// From 100 µs: a write group's phases are far shorter than a request.
const WRITE_PHASE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Powers of two up to the writer's largest group (64).
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// How often histogram samples are folded into their buckets when nobody scrapes; until
/// then every sample is held in memory.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Operation names are chosen by clients: past this many distinct ones, new names are
/// counted as `other`, so a client cannot grow the exposition (or our memory) at will.
const MAX_OPERATION_NAMES: usize = 100;
/// Codes come from our own errors; the bound only guards against a mistake.
const MAX_ERROR_CODES: usize = 100;
/// The label value for a name or code past its bound or of an unexpected shape.
const OTHER: &str = "other";
/// The label value for an operation without a name.
pub const ANONYMOUS: &str = "anonymous";

/// Content type of the Prometheus text exposition format.
const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static OPERATION_NAMES: LazyLock<LabelValues> =
    LazyLock::new(|| LabelValues::new(MAX_OPERATION_NAMES));
static ERROR_CODES: LazyLock<LabelValues> = LazyLock::new(|| LabelValues::new(MAX_ERROR_CODES));

/// The process-wide recorder, installed on first use. Metrics recorded before the
/// recorder exists would be dropped by the facade, so every recording function calls
/// this first.
fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(install)
}

fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(GRAPHQL_REQUEST_DURATION.to_owned()),
            DURATION_BUCKETS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(WRITE_GROUP_SIZE.to_owned()),
                GROUP_SIZE_BUCKETS,
            )
        })
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(WRITE_GROUP_DURATION.to_owned()),
                WRITE_PHASE_BUCKETS,
            )
        });
    let builder = builder.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "metric buckets refused; histograms render as summaries");
        PrometheusBuilder::new()
    });
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(err) = metrics::set_global_recorder(recorder) {
        // Someone embedding the library installed theirs first; it gets the metrics.
        tracing::warn!(error = %err, "another metrics recorder is installed; /metrics stays empty");
    }
    describe();

    // Nothing drains histogram samples but a scrape or this; without it an unscraped
    // server would hold every sample. A thread, not a task: the recorder outlives any
    // one runtime (tests run many).
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("shiplog-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot start the metrics upkeep thread; only scrapes drain histograms");
    }
    handle
}

fn describe() {
    metrics::describe_counter!(
        GRAPHQL_REQUESTS,
        "GraphQL operations, by operation_type (query, mutation, subscription, unknown) and operation_name"
    );
    metrics::describe_histogram!(
        GRAPHQL_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer a GraphQL operation; for a subscription, the time until it is accepted"
    );
    metrics::describe_counter!(GRAPHQL_ERRORS, "GraphQL errors, by extensions.code");
    metrics::describe_counter!(
        WRITE_GROUPS,
        "Write groups the writer task finished, by outcome (committed, failed)"
    );
    metrics::describe_histogram!(
        WRITE_GROUP_SIZE,
        metrics::Unit::Count,
        "Writes per write group"
    );
    metrics::describe_histogram!(
        WRITE_GROUP_DURATION,
        metrics::Unit::Seconds,
        "Time the writer spends on a write group, by phase (execute: the writes' statements; commit: COMMIT and its fsync)"
    );
    metrics::describe_gauge!(
        WRITES_QUEUED,
        "Writes waiting for the writer task, sampled as it takes and finishes each group"
    );
    metrics::describe_gauge!(LIVE_SUBSCRIBERS, "Open GraphQL subscriptions");
    metrics::describe_counter!(
        RESPONSE_CACHE,
        "Lookups in the HTTP response cache (when on), by outcome (hit, miss)"
    );
    metrics::describe_gauge!(
        SUBSCRIPTION_FEEDS,
        "WebSocket operations running, each executed and serialised once for all the clients that sent the same one"
    );
    metrics::describe_counter!(
        OUTBOX_ATTEMPTS,
        "Attempts of webhook deliveries and executor triggers, by kind (webhook, executor) and outcome (succeeded, failed)"
    );
}

/// The exposition of every metric, in the Prometheus text format.
pub fn render() -> String {
    handle().render()
}

/// `GET /metrics`.
pub async fn scrape() -> Response {
    ([(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)], render()).into_response()
}

// ---------------------------------------------------------------------------------------
// GraphQL
// ---------------------------------------------------------------------------------------

/// The `operation_name` label for a client's operation name: the name itself while it is
/// one of the first `MAX_OPERATION_NAMES` well-formed names seen, else `other`. Only an
/// operation that passed validation (`may_add`) can take one of those places: a name in a
/// request that was refused is used only if it is already known, so broken clients and
/// fuzzers cannot crowd out the names of operations that run.
pub fn operation_name_label(name: Option<&str>, may_add: bool) -> SharedString {
    match name {
        None | Some("") => SharedString::const_str(ANONYMOUS),
        Some(name) => OPERATION_NAMES.admit(name, is_operation_name, may_add),
    }
}

/// One GraphQL operation answered (or, for a subscription, accepted).
pub fn graphql_request(operation_type: &'static str, operation_name: SharedString, took: Duration) {
    handle();
    let labels = [
        ("operation_type", SharedString::const_str(operation_type)),
        ("operation_name", operation_name),
    ];
    metrics::counter!(GRAPHQL_REQUESTS, &labels).increment(1);
    metrics::histogram!(GRAPHQL_REQUEST_DURATION, &labels).record(took.as_secs_f64());
}

/// One GraphQL error with this `extensions.code`.
pub fn graphql_error(code: &str) {
    handle();
    let code = ERROR_CODES.admit(code, is_error_code, true);
    metrics::counter!(GRAPHQL_ERRORS, "code" => code).increment(1);
}

/// `[A-Za-z_][A-Za-z0-9_]{0,63}`: a GraphQL name, of a length worth a label.
fn is_operation_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphabetic() || *b == b'_')
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// `[A-Z][A-Z0-9_]{0,63}`, the shape of every code the contract defines.
fn is_error_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_uppercase())
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
}

/// A label whose values are bounded: the first `limit` distinct well-formed values are
/// kept, the rest become `other`.
struct LabelValues {
    seen: Mutex<HashSet<String>>,
    limit: usize,
}

impl LabelValues {
    fn new(limit: usize) -> Self {
        Self {
            seen: Mutex::new(HashSet::new()),
            limit,
        }
    }

    fn admit(&self, value: &str, well_formed: fn(&str) -> bool, may_add: bool) -> SharedString {
        if !well_formed(value) {
            return SharedString::const_str(OTHER);
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(value) {
            return SharedString::from(value.to_owned());
        }
        if !may_add || seen.len() >= self.limit {
            return SharedString::const_str(OTHER);
        }
        seen.insert(value.to_owned());
        SharedString::from(value.to_owned())
    }
}

// ---------------------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------------------

/// A write group of `writes` writes, committed or not.
pub fn write_group(writes: usize, committed: bool, execute: Duration, commit: Duration) {
    handle();
    metrics::histogram!(WRITE_GROUP_DURATION, "phase" => "execute").record(execute.as_secs_f64());
    metrics::histogram!(WRITE_GROUP_DURATION, "phase" => "commit").record(commit.as_secs_f64());
    let outcome = if committed { "committed" } else { "failed" };
    metrics::counter!(WRITE_GROUPS, "outcome" => outcome).increment(1);
    metrics::histogram!(WRITE_GROUP_SIZE).record(writes as f64);
}

/// One lookup in the HTTP response cache.
pub fn response_cache(hit: bool) {
    handle();
    let outcome = if hit { "hit" } else { "miss" };
    metrics::counter!(RESPONSE_CACHE, "outcome" => outcome).increment(1);
}

/// One attempt of a webhook delivery or executor trigger (`kind`: webhook, executor).
pub fn outbox_attempt(kind: &'static str, succeeded: bool) {
    handle();
    let outcome = if succeeded { "succeeded" } else { "failed" };
    metrics::counter!(OUTBOX_ATTEMPTS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// One writer's share of the queued-writes gauge. Several stores can live in one process
/// (tests open many), each with its own writer, so each moves the gauge by the change in
/// its own queue, and takes its share back when it ends.
pub struct QueuedWrites {
    reported: usize,
    gauge: metrics::Gauge,
}

impl QueuedWrites {
    pub fn new() -> Self {
        handle();
        Self {
            reported: 0,
            gauge: metrics::gauge!(WRITES_QUEUED),
        }
    }

    /// This writer's queue now holds `queued` writes.
    pub fn set(&mut self, queued: usize) {
        if queued >= self.reported {
            self.gauge.increment((queued - self.reported) as f64);
        } else {
            self.gauge.decrement((self.reported - queued) as f64);
        }
        self.reported = queued;
    }
}

impl Default for QueuedWrites {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for QueuedWrites {
    fn drop(&mut self) {
        self.set(0);
    }
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

/// Counts one in a gauge for as long as it lives.
pub struct Held {
    gauge: metrics::Gauge,
}

impl Held {
    fn in_gauge(name: &'static str) -> Self {
        handle();
        let gauge = metrics::gauge!(name);
        gauge.increment(1.0);
        Self { gauge }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// One open subscription, in the live-subscribers gauge.
pub struct LiveSubscriber;

impl LiveSubscriber {
    pub fn start() -> Held {
        Held::in_gauge(LIVE_SUBSCRIBERS)
    }
}

/// One running feed, in the feeds gauge.
pub struct RunningFeed;

impl RunningFeed {
    pub fn start() -> Held {
        Held::in_gauge(SUBSCRIPTION_FEEDS)
    }
}

// ---------------------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------------------

/// The header that carries the request id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-sent request id that is kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Drops a client-sent `x-request-id` that is not one short run of visible ASCII (or
/// comes more than once), so that the id layer makes a fresh one. The id goes into every
/// log line of the request: a client must not be able to forge line breaks or flood the
/// logs through it.
pub async fn drop_unusable_request_id(mut request: Request) -> Request {
    if !request_id_usable(request.headers()) {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

fn request_id_usable(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    match (values.next(), values.next()) {
        (None, _) => true,
        (Some(value), None) => {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID_LEN
                && bytes.iter().all(|b| b.is_ascii_graphic())
        }
        (Some(_), Some(_)) => false,
    }
}

/// The span of one HTTP request: every log line inside it carries the request id, the
/// method and the path (never the query string, which can hold a whole document).
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        target: "shiplog::request",
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn operation_names_take_the_shape_of_a_graphql_name() {
        assert!(is_operation_name("ListDeployments"));
        assert!(is_operation_name("_x9"));
        assert!(is_operation_name(&"a".repeat(64)));
        assert!(!is_operation_name(&"a".repeat(65)));
        assert!(!is_operation_name("9lives"));
        assert!(!is_operation_name("with space"));
        assert!(!is_operation_name("naïve"));
        assert!(!is_operation_name(""));
    }

    #[test]
    fn label_values_past_the_bound_are_other() {
        let values = LabelValues::new(2);
        assert_eq!(&*values.admit("a", is_operation_name, true), "a");
        assert_eq!(&*values.admit("b", is_operation_name, true), "b");
        assert_eq!(&*values.admit("c", is_operation_name, true), OTHER);
        assert_eq!(&*values.admit("a", is_operation_name, true), "a");
        assert_eq!(&*values.admit("no good", is_operation_name, true), OTHER);
    }

    #[test]
    fn only_a_valid_operation_adds_a_name() {
        let values = LabelValues::new(2);
        assert_eq!(&*values.admit("a", is_operation_name, false), OTHER);
        assert_eq!(&*values.admit("a", is_operation_name, true), "a");
        assert_eq!(&*values.admit("a", is_operation_name, false), "a");
    }

    #[test]
    fn an_anonymous_operation_has_its_own_label() {
        assert_eq!(&*operation_name_label(None, true), ANONYMOUS);
        assert_eq!(&*operation_name_label(Some(""), false), ANONYMOUS);
    }

    #[test]
    fn error_codes_are_upper_snake_case() {
        assert!(is_error_code("BAD_USER_INPUT"));
        assert!(is_error_code("E2BIG"));
        assert!(!is_error_code("bad_user_input"));
        assert!(!is_error_code(""));
    }

    #[test]
    fn only_one_short_visible_request_id_is_kept() {
        let with = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    &X_REQUEST_ID,
                    HeaderValue::from_bytes(value).expect("a header value"),
                );
            }
            request_id_usable(&headers)
        };
        assert!(with(&[]));
        assert!(with(&[b"abc-123"]));
        assert!(with(&[&[b'x'; 128]]));
        assert!(!with(&[&[b'x'; 129]]));
        assert!(!with(&[b"two words"]));
        assert!(!with(&[b"tab\there"]));
        assert!(!with(&[b"caf\xc3\xa9"]));
        assert!(!with(&[b"a", b"b"]));
    }
}
