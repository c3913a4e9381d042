//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sediment: receive logs over HTTP and syslog, archive them hourly as gzip NDJSON.
#[derive(Debug, Parser)]
#[command(
    name = "sediment",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, accepted without the word `run`.
    #[command(flatten)]
    pub run: ConfigArgs,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline.
    Run(ConfigArgs),
    /// Check the configuration and topology; print `ok` or every error.
    Validate(ConfigArgs),
    /// Test each archive sink's storage: write, list and read back `sediment-verified`.
    CheckStorage(CheckStorageArgs),
}

/// Arguments of `check-storage`.
#[derive(Debug, Args)]
pub struct CheckStorageArgs {
    /// Where the configuration is.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Check only this sink [default: every archive sink]
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
}

/// Where the configuration is.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The pipeline file [default: $SEDIMENT_CONFIG, else ./pipeline.yaml]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// `--config`, else `$SEDIMENT_CONFIG`, else `./pipeline.yaml`.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("SEDIMENT_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("pipeline.yaml"))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
