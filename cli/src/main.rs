//! The `tessera` binary: parses flags and hands a config to the component crates.
//!
//! Each process role and admin command is a subcommand; every one of them arrives together
//! with the component that implements it.

mod chunk_cmd;
mod meta_cmd;
mod secret_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Tessera: a distributed POSIX file system with erasure-coded, content-addressed storage.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new cluster secret file (mode 0600) for --secret-file / TESSERA_SECRET_FILE.
    GenSecret(secret_cmd::GenSecretArgs),
    /// Run a chunkserver: store, verify, serve and scrub shards; heartbeat to the metadata leader.
    Chunk(chunk_cmd::ChunkArgs),
    /// Run a metadata server: one member of the Raft group that holds the namespace.
    Meta(meta_cmd::MetaArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs redirected to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::GenSecret(args) => secret_cmd::run(args),
        Command::Chunk(args) => chunk_cmd::run(args),
        Command::Meta(args) => meta_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain, never a backtrace.
            eprintln!("tessera: {e:#}");
            ExitCode::FAILURE
        }
    }
}
