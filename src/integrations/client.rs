//! [`Sender`]: the HTTP client of webhooks and executors.
//!
//! - Redirects are never followed: a 3xx is a failed attempt.
//! - Every request has a timeout (default 10 s), covering connect, send and answer.
//! - Proxies from the environment are ignored, so the address rule holds.
//! - The address rule (`domain::destination::is_blocked`), unless `allow_private`: a
//!   host name is resolved by our resolver, which drops blocked addresses and fails when
//!   none remain (a name with both kinds is reached only on its allowed addresses); an IP
//!   literal is checked before sending. A host that does not resolve is refused.
//! - GitHub's API URL is set by the operator: it is reached by a second client without the
//!   address rule, otherwise the same.
//!
//! Errors are short sentences for people. They never hold a key, a token, a query string
//! or reqwest's own message (which names the full URL).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, USER_AGENT};
use reqwest::redirect::Policy;
use url::{Host, Url};

use super::signing::signature;
use crate::domain::destination::{blocked_message, check_url, is_blocked};
use crate::domain::integrations::AttemptReport;
use crate::domain::Timestamp;

/// The default timeout of one attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default GitHub API URL.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// How much of an answer's body is kept (for error messages).
const MAX_BODY_BYTES: usize = 4096;

/// How a [`Sender`] is set up.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Send to loopback, private and link-local addresses too
    /// (`SHIPLOG_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// The timeout of one attempt.
    pub timeout: Duration,
    /// `SHIPLOG_GITHUB_API_URL`.
    pub github_api_url: String,
}

impl Default for SenderOptions {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: DEFAULT_TIMEOUT,
            github_api_url: DEFAULT_GITHUB_API_URL.to_owned(),
        }
    }
}

/// The answer to a request that got one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `location`, when it is a redirect: without user, password, query or fragment.
    pub redirect: Option<String>,
    /// The first 4 KiB of the body.
    pub body: Vec<u8>,
}

/// Which rule a request goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A URL a client gave (webhooks, HTTP executors): the address rule applies.
    Guarded,
    /// A URL the operator configured (GitHub's API): no address rule.
    Operator,
}

/// The HTTP client of webhooks and executors. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    guarded: reqwest::Client,
    operator: reqwest::Client,
    options: SenderOptions,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The time an attempt starts, for its report.
#[derive(Debug, Clone, Copy)]
pub struct AttemptClock {
    pub at: Timestamp,
    started: Instant,
}

impl AttemptClock {
    /// Now, truncated to milliseconds.
    pub fn start() -> Self {
        Self {
            at: Utc::now().trunc_subsecs(3),
            started: Instant::now(),
        }
    }

    /// The report of an attempt that ends now.
    pub fn report(
        &self,
        status_code: Option<u16>,
        error: Option<String>,
        succeeded: bool,
        is_final: bool,
    ) -> AttemptReport {
        let elapsed = self.started.elapsed().as_millis();
        AttemptReport {
            at: self.at,
            status_code,
            error,
            duration_ms: u32::try_from(elapsed).unwrap_or(u32::MAX),
            succeeded,
            is_final,
        }
    }

    /// The report of a request that ended with `result`: a 2xx succeeds; anything else
    /// fails, never final (executors decide what is final).
    pub fn report_answer(&self, result: Result<Answer, String>) -> AttemptReport {
        match result {
            Ok(answer) if (200..300).contains(&answer.status) => {
                self.report(Some(answer.status), None, true, false)
            }
            Ok(answer) => self.report(
                Some(answer.status),
                Some(status_error(&answer)),
                false,
                false,
            ),
            Err(error) => self.report(None, Some(error), false, false),
        }
    }
}

/// A sentence for an answer that is not a success: `HTTP 500`, or for a redirect
/// `HTTP 302: redirected to https://host/path`.
pub fn status_error(answer: &Answer) -> String {
    match &answer.redirect {
        Some(to) => format!("HTTP {}: redirected to {to}", answer.status),
        None if (300..400).contains(&answer.status) => {
            format!("HTTP {}: redirected", answer.status)
        }
        None => format!("HTTP {}", answer.status),
    }
}

/// Refused by the address rule, or not resolved: raised by the resolver, found again in
/// reqwest's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refused {}

/// Resolves with tokio and applies the address rule.
#[derive(Debug)]
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs = resolve_allowed(&host, allow_private)
                .await
                .map_err(|e| Box::new(Refused(e)) as Box<dyn StdError + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses of `host` that may be sent to: blocked ones dropped (unless
/// `allow_private`); an error when it does not resolve or none remain.
async fn resolve_allowed(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> = match tokio::net::lookup_host((host, 0)).await {
        Ok(addrs) => addrs.collect(),
        Err(_) => return Err(format!("host {host} does not resolve")),
    };
    if found.is_empty() {
        return Err(format!("host {host} does not resolve"));
    }
    if allow_private {
        return Ok(found);
    }
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| !is_blocked(a.ip()))
        .collect();
    match (allowed.is_empty(), found.first()) {
        (true, Some(first)) => Err(blocked_message(first.ip())),
        _ => Ok(allowed),
    }
}

/// The IP address of a URL whose host is an IP literal.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

impl Sender {
    /// Builds the clients. Fails only if TLS cannot be set up.
    pub fn new(options: SenderOptions) -> Result<Self, String> {
        let base = || {
            reqwest::Client::builder()
                .redirect(Policy::none())
                .timeout(options.timeout)
                .no_proxy()
                .user_agent(user_agent())
        };
        let guarded = base()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: options.allow_private,
            }))
            .build()
            .map_err(|_| "could not set up the HTTP client".to_owned())?;
        let operator = base()
            .build()
            .map_err(|_| "could not set up the HTTP client".to_owned())?;
        Ok(Self {
            guarded,
            operator,
            options,
        })
    }

    pub fn options(&self) -> &SenderOptions {
        &self.options
    }

    /// Whether a client-given URL may be used, when a webhook or target is created: the
    /// URL rule, then (unless `allow_private`) the host must resolve to at least one
    /// address that is not blocked. A host that does not resolve is refused.
    pub async fn check_destination(&self, url: &str) -> Result<(), String> {
        let normalised = check_url(url)?;
        if self.options.allow_private {
            return Ok(());
        }
        let parsed = Url::parse(&normalised).map_err(|_| "url is not valid".to_owned())?;
        if let Some(ip) = literal_ip(&parsed) {
            return if is_blocked(ip) {
                Err(blocked_message(ip))
            } else {
                Ok(())
            };
        }
        let host = parsed.host_str().unwrap_or_default().to_owned();
        match tokio::time::timeout(self.options.timeout, resolve_allowed(&host, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("host {host} did not resolve in time")),
        }
    }

    /// One Standard Webhooks attempt: POST `body` to `url` with `content-type`,
    /// `webhook-id`, `webhook-timestamp` (now) and `webhook-signature`. A 2xx within the
    /// timeout succeeds. Never final.
    pub async fn post_signed(
        &self,
        url: &str,
        key: &[u8],
        msg_id: &str,
        body: &[u8],
    ) -> AttemptReport {
        let clock = AttemptClock::start();
        let result = self.send_signed(&clock, url, key, msg_id, body).await;
        clock.report_answer(result)
    }

    /// The request of [`Sender::post_signed`], timed by `clock`.
    pub async fn send_signed(
        &self,
        clock: &AttemptClock,
        url: &str,
        key: &[u8],
        msg_id: &str,
        body: &[u8],
    ) -> Result<Answer, String> {
        let timestamp = clock.at.timestamp();
        let mut headers = HeaderMap::new();
        let id = HeaderValue::from_str(msg_id).map_err(|_| "webhook id is not a valid header")?;
        headers.insert(HeaderName::from_static("webhook-id"), id);
        headers.insert(
            HeaderName::from_static("webhook-timestamp"),
            HeaderValue::from(timestamp),
        );
        let sig = HeaderValue::from_str(&signature(key, msg_id, timestamp, body))
            .map_err(|_| "signature is not a valid header")?;
        headers.insert(HeaderName::from_static("webhook-signature"), sig);
        self.post_json(Route::Guarded, url, headers, body.to_vec())
            .await
    }

    /// POSTs a JSON body with `headers` (plus `content-type: application/json` and our
    /// `user-agent`, unless given). Returns the answer, whatever its status, or why none
    /// came.
    pub async fn post_json(
        &self,
        route: Route,
        url: &str,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let parsed = match route {
            Route::Guarded => {
                let normalised = check_url(url)?;
                let parsed = Url::parse(&normalised).map_err(|_| "url is not valid".to_owned())?;
                if let Some(ip) = literal_ip(&parsed) {
                    if !self.options.allow_private && is_blocked(ip) {
                        return Err(blocked_message(ip));
                    }
                }
                parsed
            }
            Route::Operator => Url::parse(url.trim()).map_err(|_| "url is not valid".to_owned())?,
        };
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if !headers.contains_key(USER_AGENT) {
            if let Ok(agent) = HeaderValue::from_str(&user_agent()) {
                headers.insert(USER_AGENT, agent);
            }
        }
        let client = match route {
            Route::Guarded => &self.guarded,
            Route::Operator => &self.operator,
        };
        let request = client.post(parsed.clone()).headers(headers).body(body);
        let mut response = request.send().await.map_err(|e| self.describe(&e))?;
        let status = response.status().as_u16();
        let redirect = if response.status().is_redirection() {
            response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| parsed.join(loc).ok())
                .map(|u| shown_url(&u))
        } else {
            None
        };
        let mut kept = Vec::new();
        // The status is what counts: a body that fails or is cut short is let go.
        while kept.len() < MAX_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY_BYTES - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer {
            status,
            redirect,
            body: kept,
        })
    }

    /// A short sentence for a request that got no answer.
    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("timed out after {}", shown_duration(self.options.timeout));
        }
        let mut source = error.source();
        let mut deepest: Option<String> = None;
        while let Some(e) = source {
            if let Some(refused) = e.downcast_ref::<Refused>() {
                return refused.0.clone();
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind;
                match io.kind() {
                    ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                    ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                    ErrorKind::ConnectionAborted => return "connection aborted".to_owned(),
                    ErrorKind::TimedOut => {
                        return format!("timed out after {}", shown_duration(self.options.timeout))
                    }
                    _ => {}
                }
            }
            if e.downcast_ref::<reqwest::Error>().is_none() {
                deepest = Some(e.to_string());
            }
            source = e.source();
        }
        let what = if error.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        match deepest {
            Some(cause) if !cause.contains("://") => format!("{what}: {}", clip(&cause, 200)),
            _ => what.to_owned(),
        }
    }
}

/// `shiplog/<version>`.
pub fn user_agent() -> String {
    format!("shiplog/{}", env!("CARGO_PKG_VERSION"))
}

/// A URL as errors may show it: scheme, host, port and path only.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// `10 s`, or `300 ms` below a second.
fn shown_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// At most `max` characters of `text`.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(shown_duration(Duration::from_secs(10)), "10 s");
        assert_eq!(shown_duration(Duration::from_millis(300)), "300 ms");
        assert_eq!(shown_duration(Duration::from_millis(1500)), "1500 ms");
    }

    #[test]
    fn shown_urls_drop_credentials_and_query() {
        let u = Url::parse("https://a:b@example.com:8443/p/q?token=x#f").expect("url");
        assert_eq!(shown_url(&u), "https://example.com:8443/p/q");
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc...");
        assert_eq!(clip("ééé", 2), "éé...");
    }

    #[test]
    fn status_errors() {
        let a = |status, redirect: Option<&str>| Answer {
            status,
            redirect: redirect.map(str::to_owned),
            body: Vec::new(),
        };
        assert_eq!(status_error(&a(500, None)), "HTTP 500");
        assert_eq!(
            status_error(&a(302, Some("https://x/y"))),
            "HTTP 302: redirected to https://x/y"
        );
        assert_eq!(status_error(&a(301, None)), "HTTP 301: redirected");
    }

    #[test]
    fn reports() {
        let clock = AttemptClock::start();
        assert_eq!(clock.at.timestamp_subsec_nanos() % 1_000_000, 0);
        let ok = clock.report_answer(Ok(Answer {
            status: 204,
            redirect: None,
            body: Vec::new(),
        }));
        assert!(ok.succeeded && ok.error.is_none() && ok.status_code == Some(204));
        let bad = clock.report_answer(Err("connection refused".to_owned()));
        assert!(!bad.succeeded && !bad.is_final && bad.status_code.is_none());
    }

    #[tokio::test]
    async fn resolver_refuses_loopback_names() {
        let err = resolve_allowed("localhost", false).await.unwrap_err();
        assert!(err.contains("is not allowed"), "{err}");
        assert!(!resolve_allowed("localhost", true)
            .await
            .unwrap_or_default()
            .is_empty());
        let err = resolve_allowed("does-not-exist.invalid", false)
            .await
            .unwrap_err();
        assert_eq!(err, "host does-not-exist.invalid does not resolve");
    }

    #[tokio::test]
    async fn literals_are_checked_before_sending() {
        let sender = Sender::new(SenderOptions::default()).expect("sender");
        let err = sender
            .post_json(
                Route::Guarded,
                "http://[::1]:9/x",
                HeaderMap::new(),
                Vec::new(),
            )
            .await
            .unwrap_err();
        assert!(err.starts_with("address ::1 is not allowed"), "{err}");
        let err = sender
            .post_json(
                Route::Guarded,
                "ftp://example.com/",
                HeaderMap::new(),
                Vec::new(),
            )
            .await
            .unwrap_err();
        assert!(err.contains("http"), "{err}");
    }
}
