//! Command line and environment. Every flag can also be set by an environment variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "shiplog",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving is the default when no command is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Built once, at start: the size of `Serve` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve(ServeArgs),
    /// Print the GraphQL schema (SDL) and exit.
    ExportSchema,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "SHIPLOG_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// The database: a `sqlite:` URL or a file path (SQLite, created if missing; one
    /// shiplog process per file), or a `postgres://` URL (PostgreSQL; several instances
    /// may share it). Migrated on start.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://shiplog.db")]
    pub database_url: String,
    /// Environments that get tier PRODUCTION when first used, so that their deployments
    /// must state their risk (comma-separated, compared trimmed and case-insensitively).
    /// `configureEnvironment` can change a tier later.
    #[arg(
        long,
        env = "SHIPLOG_PRODUCTION_ENVIRONMENTS",
        default_value = "production",
        value_delimiter = ','
    )]
    pub production_environments: Vec<String>,
    /// Origins allowed to call the API from a browser page (CORS), comma-separated, e.g.
    /// `https://dash.example.com`. None by default: CORS is off.
    #[arg(
        long = "cors-origin",
        env = "SHIPLOG_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Operations one batched request (a JSON array) may hold.
    #[arg(long, env = "SHIPLOG_MAX_BATCH", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_batch: u32,
    /// Largest response body in bytes; a larger one is cut off with RESPONSE_TOO_LARGE.
    #[arg(long, env = "SHIPLOG_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_response_bytes: u64,
    /// Subscriptions one WebSocket connection may hold open at once.
    #[arg(long, env = "SHIPLOG_WS_MAX_SUBSCRIPTIONS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_subscriptions: u32,
    /// Seconds a new WebSocket connection has to send `connection_init`.
    #[arg(long, env = "SHIPLOG_WS_INIT_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub ws_init_timeout_seconds: u32,
    /// Largest WebSocket message a client may send, in bytes.
    #[arg(long, env = "SHIPLOG_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub ws_max_message_bytes: u32,
    /// Open WebSocket connections, all clients together; beyond it new ones are refused.
    #[arg(long, env = "SHIPLOG_WS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_connections: u32,
    /// Megabytes of query answers to keep for identical requests until the next write,
    /// served with an ETag (and 304 to If-None-Match). 0, the default: no cache.
    #[arg(long, env = "SHIPLOG_RESPONSE_CACHE_MB", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    pub response_cache_mb: u32,
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(long, env = "SHIPLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Base URL of an Anthropic Messages API (`POST {url}/v1/messages`) that drafts
    /// release notes. With the key and the model set too; otherwise drafts are templates.
    #[arg(long, env = "SHIPLOG_LLM_URL")]
    pub llm_url: Option<String>,
    /// API key of the language model (sent as `x-api-key`; never logged).
    #[arg(long, env = "SHIPLOG_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<crate::llm::ApiKey>,
    /// Model that drafts release notes, e.g. `claude-sonnet-4-5`.
    #[arg(long, env = "SHIPLOG_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Wait before the first retry of a webhook delivery or executor trigger, in
    /// milliseconds; doubled after each failed attempt (+/- 20%), at most an hour.
    #[arg(long, env = "SHIPLOG_WEBHOOK_BACKOFF_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_backoff_ms: u64,
    /// Attempts of a webhook delivery or executor trigger before it is FAILED.
    #[arg(long, env = "SHIPLOG_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,
    /// Let webhooks and HTTP executors reach loopback, private and link-local addresses.
    #[arg(long, env = "SHIPLOG_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// The GitHub API that GITHUB_ACTIONS targets are dispatched through.
    #[arg(
        long,
        env = "SHIPLOG_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    /// The language model that drafts release notes: all three settings, or none; an
    /// error when only some are given.
    pub fn llm_config(&self) -> Result<Option<crate::llm::LlmConfig>, crate::llm::LlmError> {
        crate::llm::LlmConfig::from_settings(
            self.llm_url.as_deref(),
            self.llm_api_key.as_ref(),
            self.llm_model.as_deref(),
        )
    }

    /// How webhook deliveries and executor triggers are retried.
    pub fn retry_policy(&self) -> crate::domain::integrations::RetryPolicy {
        crate::domain::integrations::RetryPolicy {
            backoff: std::time::Duration::from_millis(self.webhook_backoff_ms),
            max_attempts: self.webhook_max_attempts,
        }
    }

    /// How webhooks and executors are reached.
    pub fn sender_options(&self) -> crate::integrations::client::SenderOptions {
        crate::integrations::client::SenderOptions {
            allow_private: self.webhook_allow_private,
            github_api_url: self.github_api_url.trim().to_owned(),
            ..Default::default()
        }
    }

    /// The request and connection limits these flags set, and the outbox's sender
    /// (None if its HTTP client cannot be set up).
    pub fn server_options(&self) -> crate::server::ServerOptions {
        crate::server::ServerOptions {
            outbox: crate::outbox::OutboxSender::new(self.sender_options()).ok(),
            max_batch: self.max_batch as usize,
            max_response_bytes: usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX),
            cors_origins: self
                .cors_origins
                .iter()
                .map(|origin| origin.trim().to_string())
                .filter(|origin| !origin.is_empty())
                .collect(),
            response_cache_bytes: self.response_cache_mb as usize * 1024 * 1024,
            ws: crate::server::WsLimits {
                max_subscriptions: self.ws_max_subscriptions as usize,
                init_timeout: std::time::Duration::from_secs(u64::from(
                    self.ws_init_timeout_seconds,
                )),
                max_message_bytes: self.ws_max_message_bytes as usize,
                max_connections: self.ws_max_connections as usize,
                ..Default::default()
            },
        }
    }
}

impl Cli {
    /// What to do: the subcommand, or `serve` with the top-level flags.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}
