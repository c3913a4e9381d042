//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--help` and the man page add after the options.
const AFTER_LONG_HELP: &str = "\
Exit codes: 0 ok, 1 a runtime or validation failure, 2 a usage error (restore: 130 when interrupted).

Signals: the first SIGINT or SIGTERM stops intake, stages what is in flight and uploads the open \
hours within shutdown_timeout; a second one exits at once, and staged data is uploaded at the next start.

Environment: SEDIMENT_CONFIG (the pipeline file), RUST_LOG (the log filter, e.g. info or \
sediment_sinks=debug), NOTIFY_SOCKET (systemd's readiness socket: READY=1 once /health answers \
200, STOPPING=1 when shutdown starts).

Metrics: GET /metrics (Prometheus) and GET /health on api.address (127.0.0.1:9598 by default).";

/// sediment: receive logs over HTTP and syslog, archive them hourly as gzip NDJSON.
#[derive(Debug, Parser)]
#[command(
    name = "sediment",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_long_help = AFTER_LONG_HELP
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
    /// Read a sink's archive back for a time range, to stdout, a file or a URL.
    Restore(Box<RestoreArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page sediment(1) on stdout, or write every page into a folder.
    Man(ManArgs),
}

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell whose completion script is printed.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write sediment.1 and one page per subcommand (sediment-run.1, ...) into this folder.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where the configuration is.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The archive sink whose archive is read (its storage and key layout).
    #[arg(long, value_name = "ID")]
    pub sink: String,
    /// Start of the range, included: RFC 3339, a date, epoch seconds, `now`, or `-6h`.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: String,
    /// End of the range, excluded (same forms as --from).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub to: String,
    /// Only lines matching this query (the exclusion rules' language, docs/queries.md).
    #[arg(long, value_name = "QUERY")]
    pub query: Option<String>,
    /// `-` (stdout), a file (gzip when it ends in `.gz`), or an http(s):// URL to POST to.
    #[arg(long, value_name = "-|PATH|URL", default_value = "-")]
    pub output: String,
    /// List what would be read (objects, bytes, requests, storage classes) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop after this many lines written.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Objects downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub parallel: usize,
    /// Write at most this many lines per second.
    #[arg(long, value_name = "LINES_PER_S")]
    pub rate: Option<f64>,
    /// Key layout of another vendor's archive: strftime fields, {account_id}, {part}, `*`
    /// [default: the sink's key_template].
    #[arg(long, value_name = "TEMPLATE")]
    pub layout: Option<String>,
    /// The field holding each line's id.
    #[arg(long, value_name = "FIELD", default_value = "_id")]
    pub id_field: String,
    /// The field holding each line's time.
    #[arg(long, value_name = "FIELD", default_value = "_ts")]
    pub time_field: String,
    /// Skip objects in cold storage (S3 Glacier, Azure Archive) instead of refusing.
    #[arg(long)]
    pub skip_cold: bool,
    /// Write every copy of a line, not only the first of each id.
    #[arg(long)]
    pub no_dedup: bool,
    /// Memory for the ids of one hour before they spill to disk under data_dir.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub dedup_memory: String,
    /// Ignore this restore's checkpoint and start over (overwriting a file output).
    #[arg(long)]
    pub fresh: bool,
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
