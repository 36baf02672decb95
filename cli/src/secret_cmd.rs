//! `tessera gen-secret`: writes a fresh cluster secret.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use tessera_rpc::Secret;

/// Flags of `tessera gen-secret`.
#[derive(Debug, Args)]
pub struct GenSecretArgs {
    /// File to create. Refuses to overwrite an existing file, so a running cluster's
    /// secret is never replaced by accident.
    #[arg(value_name = "FILE")]
    path: PathBuf,
}

pub fn run(args: GenSecretArgs) -> anyhow::Result<()> {
    Secret::generate_file(&args.path).with_context(|| {
        format!(
            "could not create a secret at {} (remove it first if you mean to replace it)",
            args.path.display()
        )
    })?;
    println!("wrote a new cluster secret to {}", args.path.display());
    Ok(())
}
