//! GraphQL over HTTP, as the GraphQL-over-HTTP specification describes it (and the
//! graphql-http audit checks it):
//!
//! - `POST /graphql` with an `application/json` body: one request object, or a batch (a
//!   JSON array) of at most `max_batch` of them.
//! - `GET /graphql?query=...`: queries only. A mutation or subscription is 405 with
//!   `Allow: POST`, so a link or an image tag can never change anything. A browser that
//!   asks for HTML without a query gets GraphiQL instead.
//! - The response is `application/graphql-response+json` when the client accepts it, else
//!   `application/json`. Under the former a request that fails before execution (it does
//!   not parse, validate, or its variables do not coerce) is 400 and has no `data`; under
//!   the latter it is 200, for clients written before the specification.
//! - Cross-site request forgery: a browser sends a POST whose content type is
//!   `text/plain`, a form encoding or `multipart/form-data` from any page without asking
//!   first (no CORS preflight). Such a POST is refused with 400 CSRF_PREVENTED unless it
//!   carries a header that only a script the server allowed through CORS could set.
//! - A response body is built into a buffer bounded by `max_response_bytes`; past it the
//!   response is replaced by a RESPONSE_TOO_LARGE error, and the rest of a batch is not run.

use std::io::Write;
use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use async_graphql::{Request, Response as GraphQLResponse, ServerError, Variables};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};

use super::{cache, graphiql, request_error, AppState};
use crate::graphql::{select_operation, RequestProbe, MAX_COMPLEXITY};

/// Headers a browser only sends cross-site after a CORS preflight the server allowed;
/// any of them on a POST with a "simple" content type shows a script sent it on purpose.
/// The first two are the ones Apollo clients already send.
pub const PREFLIGHT_HEADERS: [&str; 3] = [
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "x-shiplog-csrf",
];

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const APPLICATION_JSON: &str = "application/json; charset=utf-8";

/// The media type a response is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    GraphQLResponse,
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::GraphQLResponse => GRAPHQL_RESPONSE_JSON,
            Media::Json => APPLICATION_JSON,
        }
    }
}

/// One GraphQL request as the client sent it, checked for shape.
#[derive(Debug, Clone)]
struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Option<Json>,
    extensions: Option<Map<String, Json>>,
}

impl Params {
    fn request(&self, probe: Arc<RequestProbe>) -> Request {
        let mut request = Request::new(self.query.clone()).data(probe);
        if let Some(name) = &self.operation_name {
            request = request.operation_name(name.clone());
        }
        if let Some(variables) = &self.variables {
            request = request.variables(Variables::from_json(variables.clone()));
        }
        if let Some(extensions) = &self.extensions {
            for (key, value) in extensions {
                if let Ok(value) = async_graphql::Value::from_json(value.clone()) {
                    request.extensions.insert(key.clone(), value);
                }
            }
        }
        request
    }
}

/// `GET /graphql`: GraphiQL for a browser, else a query from the URL.
pub async fn get_graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
            Ok(pairs) => pairs,
            Err(_) => return bad_request("The query string is not URL-encoded"),
        };
    let has_query = pairs.iter().any(|(key, _)| key == "query");
    if !has_query && prefers_html(&headers) {
        return graphiql::page();
    }
    let media = match negotiate(&headers) {
        Ok(media) => media,
        Err(refusal) => return refusal.into_response(),
    };
    let params = match params_from_pairs(pairs) {
        Ok(params) => params,
        Err(message) => return bad_request(&message),
    };
    match operation_type(&params) {
        Some(OperationType::Mutation) => {
            return with_allow(
                request_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    "Mutations are only run for POST requests",
                ),
                "POST",
            )
        }
        Some(OperationType::Subscription) => {
            return with_allow(
                request_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    "Subscriptions are served over WebSocket at /graphql/ws",
                ),
                "POST",
            )
        }
        _ => {}
    }
    execute_single(&state, params, media, &headers).await
}

/// Any other method on `/graphql`.
pub async fn method_not_allowed() -> Response {
    with_allow(
        request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "Use GET for queries or POST",
        ),
        "GET, POST",
    )
}

/// `POST /graphql`.
pub async fn post_graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refusal) = check_content_type(&headers) {
        return refusal.into_response();
    }
    let media = match negotiate(&headers) {
        Ok(media) => media,
        Err(refusal) => return refusal.into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "PAYLOAD_TOO_LARGE"
            } else {
                "BAD_REQUEST"
            };
            return request_error(status, code, &rejection.body_text());
        }
    };
    if body.is_empty() {
        return bad_request("The request body is empty; send a GraphQL request as JSON");
    }
    let json: Json = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(err) => return bad_request(&format!("The body is not valid JSON: {err}")),
    };
    match json {
        Json::Object(object) => match params_from_json(object) {
            Ok(params) => execute_single(&state, params, media, &headers).await,
            Err(message) => bad_request(&message),
        },
        Json::Array(items) => {
            let limit = state.options.max_batch;
            if items.is_empty() {
                return bad_request("A batch must hold at least one request");
            }
            if items.len() > limit {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    "BATCH_TOO_LARGE",
                    &format!(
                        "A batch may hold at most {limit} requests; this one holds {}",
                        items.len()
                    ),
                );
            }
            let mut batch = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let params = match item {
                    Json::Object(object) => params_from_json(object),
                    _ => Err("must be an object".to_string()),
                };
                match params {
                    Ok(params) => batch.push(params),
                    Err(message) => {
                        return bad_request(&format!("Request {index} of the batch: {message}"))
                    }
                }
            }
            execute_batch(&state, batch, media).await
        }
        _ => bad_request("The body must be a JSON object (or an array of them for a batch)"),
    }
}

async fn execute_single(
    state: &AppState,
    params: Params,
    media: Media,
    headers: &HeaderMap,
) -> Response {
    let Some(cache) = &state.cache else {
        return execute_uncached(state, &params, media).await.0;
    };
    let if_none_match = headers.get(header::IF_NONE_MATCH);
    let key = cache::Key::new(
        media.content_type(),
        &params.query,
        params.operation_name.as_deref(),
        params.variables.as_ref(),
        params.extensions.as_ref(),
    );
    let generation = state.store.generation();
    if let Some(hit) = cache.get(&key, generation) {
        crate::metrics::response_cache(true);
        return cached(media, hit.etag, hit.body, if_none_match);
    }
    crate::metrics::response_cache(false);
    let (response, keep) = execute_uncached(state, &params, media).await;
    // Kept only if nothing was written meanwhile: the answer is then that of `generation`.
    if !keep
        || response.status() != StatusCode::OK
        || state.store.generation() != generation
        || operation_type(&params) != Some(OperationType::Query)
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return request_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        );
    };
    let etag = cache.put(key, generation, body.clone());
    if cache::matches(if_none_match, &etag) {
        return cached(media, etag, body, if_none_match);
    }
    let mut response = Response::from_parts(parts, axum::body::Body::from(body));
    set_validators(response.headers_mut(), etag);
    response
}

/// Runs one request; also tells whether its answer may be kept for the next identical
/// request (it executed, has no error, and read nothing but stored data).
async fn execute_uncached(state: &AppState, params: &Params, media: Media) -> (Response, bool) {
    let probe = Arc::new(RequestProbe::default());
    let response = state.schema.execute(params.request(probe.clone())).await;
    let executed = probe.executed();
    let mut body = BoundedBuffer::new(state.options.max_response_bytes);
    let mut keep = executed && response.errors.is_empty() && !probe.volatile();
    if write_response(&mut body, &response, executed).is_err() {
        body.clear();
        keep = false;
        // An error object is far smaller than any limit the flags allow.
        let _ = serde_json::to_writer(&mut body, &too_large(state.options.max_response_bytes));
    }
    let status = if media == Media::GraphQLResponse && !executed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    keep &= response.http_headers.is_empty();
    (respond(status, media, body.into_inner(), &response), keep)
}

/// A kept answer: 304 with no body when the client holds it, else the body.
fn cached(
    media: Media,
    etag: HeaderValue,
    body: Bytes,
    if_none_match: Option<&HeaderValue>,
) -> Response {
    let mut response = if cache::matches(if_none_match, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, media.content_type())],
            body,
        )
            .into_response()
    };
    set_validators(response.headers_mut(), etag);
    response
}

/// The tag, and that a client must ask again (with it) before using its copy.
fn set_validators(headers: &mut HeaderMap, etag: HeaderValue) {
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// Runs a batch one request after another, after checking that the batch as a whole is
/// within the complexity limit (each request alone already is, or it fails validation).
async fn execute_batch(state: &AppState, batch: Vec<Params>, media: Media) -> Response {
    let mut total = 0usize;
    for params in &batch {
        let probe = Arc::new(RequestProbe::dry_run());
        let _ = state.schema.execute(params.request(probe.clone())).await;
        total = total.saturating_add(probe.complexity());
    }
    if total > MAX_COMPLEXITY {
        let error = json!({
            "errors": [{
                "message": format!(
                    "The batch costs {total} together, over the limit of {MAX_COMPLEXITY} for one request or one batch"
                ),
                "extensions": { "code": "GRAPHQL_VALIDATION_FAILED", "complexity": total, "limit": MAX_COMPLEXITY },
            }]
        });
        for _ in &batch {
            crate::metrics::graphql_error("GRAPHQL_VALIDATION_FAILED");
        }
        let body = Json::Array(vec![error; batch.len()]);
        let status = match media {
            Media::GraphQLResponse => StatusCode::BAD_REQUEST,
            Media::Json => StatusCode::OK,
        };
        return (
            status,
            [(header::CONTENT_TYPE, media.content_type())],
            body.to_string(),
        )
            .into_response();
    }

    let limit = state.options.max_response_bytes;
    let mut body = BoundedBuffer::new(limit);
    let mut any_executed = false;
    let mut over = false;
    let _ = body.write_all(b"[");
    for (index, params) in batch.iter().enumerate() {
        if index > 0 {
            let _ = body.write_all(b",");
        }
        let mark = body.len();
        if !over {
            let probe = Arc::new(RequestProbe::default());
            let response = state.schema.execute(params.request(probe.clone())).await;
            any_executed |= probe.executed();
            if write_response(&mut body, &response, probe.executed()).is_ok() {
                continue;
            }
            over = true;
        }
        // Past the limit: this and every later request answer RESPONSE_TOO_LARGE (the later
        // ones are not run). The buffer may grow past the limit by these few bytes each.
        body.truncate(mark);
        body.unbounded(|buf| serde_json::to_writer(buf, &too_large(limit)));
    }
    body.unbounded(|buf| buf.write_all(b"]").map_err(serde_json::Error::io));
    let status = if media == Media::GraphQLResponse && !any_executed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.into_inner(),
    )
        .into_response()
}

fn respond(
    status: StatusCode,
    media: Media,
    body: Vec<u8>,
    response: &GraphQLResponse,
) -> Response {
    let mut out = (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response();
    // Headers a resolver or extension asked for (none today; kept for the future).
    for (name, value) in response.http_headers.iter() {
        out.headers_mut().append(name, value.clone());
    }
    out
}

/// A response as the specification shapes it: `data` only if execution started.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

fn write_response(
    out: &mut BoundedBuffer,
    response: &GraphQLResponse,
    executed: bool,
) -> Result<(), serde_json::Error> {
    let body = Body {
        data: executed.then_some(&response.data),
        errors: &response.errors,
        extensions: &response.extensions,
    };
    serde_json::to_writer(out, &body)
}

fn too_large(limit: usize) -> Json {
    crate::metrics::graphql_error("RESPONSE_TOO_LARGE");
    json!({
        "data": null,
        "errors": [{
            "message": format!("The response is larger than the limit of {limit} bytes; ask for fewer items or fields"),
            "extensions": { "code": "RESPONSE_TOO_LARGE", "limit": limit },
        }]
    })
}

/// A byte buffer that refuses to grow past its limit, so an oversized response fails
/// while it is written instead of after it is all in memory.
struct BoundedBuffer {
    buf: Vec<u8>,
    limit: usize,
}

impl BoundedBuffer {
    fn new(limit: usize) -> Self {
        Self {
            buf: Vec::with_capacity(4096.min(limit)),
            limit,
        }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn clear(&mut self) {
        self.buf.clear();
    }

    fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Writes past the limit: for the few bytes of an error entry and the closing bracket.
    fn unbounded(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>) {
        let _ = write(&mut self.buf);
    }

    fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl Write for BoundedBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("response too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request refused before any GraphQL runs.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    /// A header that tells the client what would be accepted.
    header: Option<(&'static str, &'static str)>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = request_error(self.status, self.code, self.message);
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        response
    }
}

/// Checks the content type of a POST, including the CSRF rule.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported_media_type(
            "A POST needs a content type: send the request as application/json",
        ));
    };
    let value = value.to_str().unwrap_or("").to_ascii_lowercase();
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "charset")
        .map(|(_, v)| v.trim().trim_matches('"').to_string());
    if matches!(
        essence,
        "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    ) {
        let preflighted = PREFLIGHT_HEADERS
            .iter()
            .any(|name| headers.contains_key(*name));
        if !preflighted {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "CSRF_PREVENTED",
                message: "This request has been blocked as a possible cross-site request forgery: \
                 send it as application/json, or set one of the headers apollo-require-preflight, \
                 x-apollo-operation-name or x-shiplog-csrf",
                header: None,
            });
        }
        // A script that may set the header may as well send JSON as text/plain.
        if essence != "text/plain" {
            return Err(unsupported_media_type(
                "Send the request as application/json",
            ));
        }
    } else if essence != "application/json" {
        return Err(unsupported_media_type(
            "Send the request as application/json",
        ));
    }
    match charset.as_deref() {
        None | Some("utf-8") | Some("utf8") => Ok(()),
        Some(_) => Err(unsupported_media_type("The request body must be UTF-8")),
    }
}

fn unsupported_media_type(message: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "UNSUPPORTED_MEDIA_TYPE",
        message,
        header: Some(("accept-post", "application/json")),
    }
}

/// One media range of an Accept header, e.g. `application/*;q=0.8`.
struct Range<'a> {
    essence: &'a str,
    q: f32,
}

fn ranges(headers: &HeaderMap) -> Option<Vec<Range<'_>>> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    let ranges: Vec<Range<'_>> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let essence = parts.next()?.trim();
            if essence.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "q")
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(Range { essence, q })
        })
        .collect();
    (!ranges.is_empty()).then_some(ranges)
}

/// The quality the client gives `media` (type/subtype) and whether it named it exactly.
fn quality(ranges: &[Range<'_>], media: &str) -> (f32, bool) {
    let (kind, _) = media.split_once('/').unwrap_or((media, ""));
    let mut best: Option<(u8, f32)> = None;
    for range in ranges {
        let essence = range.essence.to_ascii_lowercase();
        let specificity = if essence == media {
            3
        } else if essence.strip_suffix("/*") == Some(kind) {
            2
        } else if essence == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, range.q));
        }
    }
    match best {
        Some((specificity, q)) => (q, specificity == 3),
        None => (0.0, false),
    }
}

/// The response media type: `application/graphql-response+json` when the client prefers
/// it, `application/json` otherwise and when it says nothing; 406 when it accepts neither.
fn negotiate(headers: &HeaderMap) -> Result<Media, Refusal> {
    let Some(ranges) = ranges(headers) else {
        return Ok(Media::Json);
    };
    let (graphql, graphql_named) = quality(&ranges, "application/graphql-response+json");
    let (json, _) = quality(&ranges, "application/json");
    if graphql <= 0.0 && json <= 0.0 {
        return Err(Refusal {
            status: StatusCode::NOT_ACCEPTABLE,
            code: "NOT_ACCEPTABLE",
            message: "Accept application/graphql-response+json or application/json",
            header: None,
        });
    }
    if graphql > json || (graphql == json && graphql_named) {
        Ok(Media::GraphQLResponse)
    } else {
        Ok(Media::Json)
    }
}

/// Whether a GET comes from a browser window: it names text/html and ranks it above
/// any JSON type it names.
fn prefers_html(headers: &HeaderMap) -> bool {
    let Some(ranges) = ranges(headers) else {
        return false;
    };
    let (html, named) = quality(&ranges, "text/html");
    if !named || html <= 0.0 {
        return false;
    }
    let named_q = |media: &str| match quality(&ranges, media) {
        (q, true) => q,
        _ => 0.0,
    };
    html > named_q("application/json").max(named_q("application/graphql-response+json"))
}

fn params_from_json(mut object: Map<String, Json>) -> Result<Params, String> {
    let query = match object.remove("query") {
        Some(Json::String(query)) => query,
        Some(_) => return Err("`query` must be a string".into()),
        None => return Err("`query` is missing".into()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name),
        Some(_) => return Err("`operationName` must be a string or null".into()),
    };
    let variables = match object.remove("variables") {
        None | Some(Json::Null) => None,
        Some(Json::Object(map)) => Some(Json::Object(map)),
        Some(_) => return Err("`variables` must be an object or null".into()),
    };
    let extensions = match object.remove("extensions") {
        None | Some(Json::Null) => None,
        Some(Json::Object(map)) => Some(map),
        Some(_) => return Err("`extensions` must be an object or null".into()),
    };
    Ok(Params {
        query,
        operation_name,
        variables,
        extensions,
    })
}

/// The parameters of a GET; `variables` and `extensions` are JSON in the URL.
fn params_from_pairs(pairs: Vec<(String, String)>) -> Result<Params, String> {
    let mut object = Map::new();
    for (key, value) in pairs {
        let value = match key.as_str() {
            "query" | "operationName" => Json::String(value),
            "variables" | "extensions" => serde_json::from_str(&value)
                .map_err(|_| format!("`{key}` must be JSON in the URL"))?,
            _ => continue,
        };
        if object.insert(key.clone(), value).is_some() {
            return Err(format!("`{key}` is given more than once"));
        }
    }
    params_from_json(object)
}

/// The type of the operation a GET would run, when the document parses and names one.
fn operation_type(params: &Params) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(&params.query).ok()?;
    match select_operation(&document, params.operation_name.as_deref()) {
        Some((_, operation)) => Some(operation.ty),
        // No operation to run (validation will say why): refuse if any of them writes.
        None => document
            .operations
            .iter()
            .map(|(_, operation)| operation.node.ty)
            .find(|ty| *ty != OperationType::Query),
    }
}

fn bad_request(message: &str) -> Response {
    request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

fn with_allow(mut response: Response, allow: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
