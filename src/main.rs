use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shiplog::config::{Cli, Command, LogFormat, ServeArgs};
use shiplog::domain::ProductionEnvironments;
use shiplog::store::{Store, StoreConfig};
use shiplog::{graphql, server};
use tracing_subscriber::EnvFilter;

/// How long a stop may take to finish requests in flight before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// mimalloc: a GraphQL response is thousands of small allocations, freed together.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = Cli::parse().into_command();
    match command {
        Command::ExportSchema => {
            print!("{}", graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            init_logging(args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("shiplog: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs to stdout, filtered by RUST_LOG (default `info`): as text for people, or as one
/// JSON object per line for a log pipeline, each with the fields of the span it was
/// logged in (for a request: its request id, method and path).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder
            .json()
            // `message` and the event's fields at the top level, where log pipelines
            // look; the current span under `span`. The list of enclosing spans would
            // repeat it: requests have one span.
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("cannot open the database: {0}")]
    Store(#[from] shiplog::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for SIGINT and SIGTERM: {0}")]
    Signals(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Llm(#[from] shiplog::llm::LlmError),
    #[error("cannot set up the HTTP client for webhooks and executors")]
    Outbox,
    #[error(
        "--response-cache-mb is for SQLite only: on PostgreSQL other instances write too, and an answer kept here would outlive their writes"
    )]
    SharedCache,
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let signals = server::ShutdownSignals::install().map_err(ServeError::Signals)?;
    let production = ProductionEnvironments::new(&args.production_environments);
    let llm = match args.llm_config()? {
        Some(config) => {
            let client = shiplog::llm::Client::new(&config)?;
            tracing::info!(
                model = client.model(),
                "release notes are drafted by a language model"
            );
            Some(std::sync::Arc::new(client))
        }
        None => None,
    };
    let options = args.server_options();
    if options.outbox.is_none() {
        return Err(ServeError::Outbox);
    }
    let store = Store::open(&StoreConfig {
        production: production.clone(),
        retry: args.retry_policy(),
        ..StoreConfig::new(&args.database_url)
    })
    .await?;
    if store.is_shared() && options.response_cache_bytes > 0 {
        return Err(ServeError::SharedCache);
    }
    let schema = graphql::schema_for(store.clone(), production, llm, options.outbox.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.listen,
            source,
        })?;

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        signals.recv().await;
        let _ = stopping_tx.send(());
    };
    let serving = server::run_with(listener, schema, store.clone(), options, signal);
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result.map_err(ServeError::Serve)?,
        // Once asked to stop, in-flight requests get DRAIN_TIMEOUT to finish.
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => tracing::warn!("connections still open after the drain timeout; closing them"),
    }
    store.close().await?;
    tracing::info!("stopped");
    Ok(())
}
