//! A client of the Anthropic Messages API (`POST {url}/v1/messages`), used to draft
//! release notes. It sends one system prompt and one user message and returns the text
//! of the answer; what the text must say is the caller's business.
//!
//! The API key travels only in the `x-api-key` header (marked sensitive). It is never
//! part of an error, a log line or a `Debug` output: [`ApiKey`] prints as `***`, and
//! errors carry no URL, header or body.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

/// How long one request may take, answer read in full, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Most tokens the model may write in one answer.
pub const DEFAULT_MAX_TOKENS: u32 = 2_048;
/// Largest answer body read, in bytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Requests to the model in flight at once, all clients together; more wait (within
/// their timeout). One document may ask for up to 20 drafts through aliases.
pub const MAX_CONCURRENT_REQUESTS: usize = 4;
/// The API version the requests are written for.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A secret that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one header it goes into.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the model is and how to ask it.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// The base URL; requests go to `{url}/v1/messages`.
    pub url: String,
    pub api_key: ApiKey,
    pub model: String,
    /// Over this, the request is abandoned (and the caller falls back).
    pub timeout: Duration,
    pub max_tokens: u32,
}

impl LlmConfig {
    /// A configuration with the default timeout and answer length.
    pub fn new(url: impl Into<String>, api_key: ApiKey, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key,
            model: model.into(),
            timeout: DEFAULT_TIMEOUT,
            max_tokens: DEFAULT_MAX_TOKENS,
        }
    }

    /// From the three settings, when all are given (blank counts as not given).
    /// `Ok(None)` when none is; an error naming the missing ones when only some are.
    pub fn from_settings(
        url: Option<&str>,
        api_key: Option<&ApiKey>,
        model: Option<&str>,
    ) -> Result<Option<LlmConfig>, LlmError> {
        let url = url.map(str::trim).filter(|v| !v.is_empty());
        let key = api_key.filter(|k| !k.expose().trim().is_empty());
        let model = model.map(str::trim).filter(|v| !v.is_empty());
        match (url, key, model) {
            (Some(url), Some(key), Some(model)) => Ok(Some(LlmConfig::new(
                url,
                ApiKey::new(key.expose().trim()),
                model,
            ))),
            (None, None, None) => Ok(None),
            (url, key, model) => {
                let missing: Vec<&str> = [
                    (url.is_none(), "SHIPLOG_LLM_URL"),
                    (key.is_none(), "SHIPLOG_LLM_API_KEY"),
                    (model.is_none(), "SHIPLOG_LLM_MODEL"),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name))
                .collect();
                Err(LlmError::Config(format!(
                    "the language model needs all three settings; missing: {}",
                    missing.join(", ")
                )))
            }
        }
    }
}

/// Why asking the model failed. Never holds the key, a URL, a header or an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("invalid language model configuration: {0}")]
    Config(String),
    #[error("the request to the model failed: {0}")]
    Transport(String),
    #[error("the model answered with HTTP status {0}")]
    Status(u16),
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the model's answer is malformed: {0}")]
    Malformed(String),
}

/// A client of one model. Cheap to share (`Arc`); one connection pool.
pub struct Client {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    model: String,
    timeout: Duration,
    max_tokens: u32,
    slots: tokio::sync::Semaphore,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    system: &'a str,
    messages: [Message<'a>; 1],
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct MessagesResponse {
    content: Vec<ContentBlock>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl Client {
    /// A client for `config`: checks the URL (http or https) and that the key can be
    /// sent as a header.
    pub fn new(config: &LlmConfig) -> Result<Client, LlmError> {
        let mut endpoint = reqwest::Url::parse(config.url.trim())
            .ok()
            .filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
                    && u.query().is_none()
                    && u.fragment().is_none()
            })
            .ok_or_else(|| {
                LlmError::Config("the URL is not an http(s) URL without a query".to_owned())
            })?;
        let path = format!("{}/v1/messages", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let mut key = HeaderValue::from_str(config.api_key.expose()).map_err(|_| {
            LlmError::Config("the API key holds characters a header cannot carry".to_owned())
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-api-key"), key);
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .timeout(config.timeout)
            .build()
            .map_err(|e| {
                LlmError::Config(format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        Ok(Client {
            http,
            endpoint,
            model: config.model.clone(),
            timeout: config.timeout,
            max_tokens: config.max_tokens,
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks the model once; returns the text of its answer (its text blocks, joined).
    /// Gives up after the configured timeout, everything included (the wait for one of
    /// the `MAX_CONCURRENT_REQUESTS` slots too).
    pub async fn complete(&self, system: &str, user: &str) -> Result<String, LlmError> {
        let asking = async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| LlmError::Transport("the client is closed".to_owned()))?;
            self.exchange(system, user).await
        };
        match tokio::time::timeout(self.timeout, asking).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, system: &str, user: &str) -> Result<String, LlmError> {
        let body = MessagesRequest {
            model: &self.model,
            max_tokens: self.max_tokens,
            system,
            messages: [Message {
                role: "user",
                content: user,
            }],
        };
        let mut response = self
            .http
            .post(self.endpoint.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(LlmError::Status(status.as_u16()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(LlmError::Malformed(format!(
                    "the answer is larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: MessagesResponse = serde_json::from_slice(&bytes).map_err(|_| {
            LlmError::Malformed("the body is not a Messages API response".to_owned())
        })?;
        let texts: Vec<String> = answer
            .content
            .into_iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text)
            .collect();
        if texts.is_empty() {
            return Err(LlmError::Malformed("the answer has no text".to_owned()));
        }
        Ok(texts.concat())
    }

    fn transport(&self, err: reqwest::Error) -> LlmError {
        if err.is_timeout() {
            return LlmError::Timeout(self.timeout);
        }
        // Without the URL: errors never say where the key went.
        let err = err.without_url();
        let kind = if err.is_connect() {
            "cannot connect"
        } else if err.is_body() || err.is_decode() {
            "cannot read the answer"
        } else {
            "cannot send the request"
        };
        LlmError::Transport(kind.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows() {
        let key = ApiKey::new("sk-secret-123");
        let config = LlmConfig::new("http://127.0.0.1:9", key.clone(), "m");
        assert!(!format!("{config:?}").contains("sk-secret-123"));
        assert!(!format!("{key}").contains("sk-secret-123"));
        let client = Client::new(&config).expect("a client");
        assert!(!format!("{client:?}").contains("sk-secret-123"));
        let bad = LlmConfig::new("http://x", ApiKey::new("sk-secret\n123"), "m");
        let err = Client::new(&bad).expect_err("a newline cannot go in a header");
        assert!(!err.to_string().contains("sk-secret"));
    }

    #[test]
    fn all_three_settings_or_none() {
        let key = ApiKey::new("k");
        let blank = ApiKey::new("  ");
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a ApiKey>,
            Option<&'a str>,
            Result<bool, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "all three",
                Some("http://m"),
                Some(&key),
                Some("claude"),
                Ok(true),
            ),
            ("none", None, None, None, Ok(false)),
            (
                "blank is none",
                Some(" "),
                Some(&blank),
                Some(""),
                Ok(false),
            ),
            (
                "a key alone",
                None,
                Some(&key),
                None,
                Err("missing: SHIPLOG_LLM_URL, SHIPLOG_LLM_MODEL"),
            ),
            (
                "no model",
                Some("http://m"),
                Some(&key),
                None,
                Err("missing: SHIPLOG_LLM_MODEL"),
            ),
        ];
        for (case, url, key, model, expected) in cases {
            let got = LlmConfig::from_settings(url, key, model);
            match expected {
                Ok(some) => assert_eq!(got.expect(case).is_some(), some, "{case}"),
                Err(message) => {
                    let err = got.expect_err(case).to_string();
                    assert!(err.contains(message), "{case}: {err}");
                }
            }
        }
    }

    #[test]
    fn the_url_must_be_http() {
        for url in ["ftp://x", "not a url", "", "http://", "http://h/?q=1"] {
            let config = LlmConfig::new(url, ApiKey::new("k"), "m");
            assert!(Client::new(&config).is_err(), "{url:?}");
        }
        let config = LlmConfig::new("https://api.example.com/", ApiKey::new("k"), "m");
        let client = Client::new(&config).expect("a client");
        assert_eq!(
            client.endpoint.as_str(),
            "https://api.example.com/v1/messages"
        );
    }
}
