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
    /// SQLite database: a `sqlite:` URL or a file path. Created and migrated on start.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://shiplog.db")]
    pub database_url: String,
    /// Environments whose deployments must state their risk (comma-separated,
    /// compared trimmed and case-insensitively).
    #[arg(
        long,
        env = "SHIPLOG_PRODUCTION_ENVIRONMENTS",
        default_value = "production",
        value_delimiter = ','
    )]
    pub production_environments: Vec<String>,
}

impl Cli {
    /// What to do: the subcommand, or `serve` with the top-level flags.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}
