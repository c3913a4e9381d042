//! The `sediment` binary: command line, logging, the API server and signals.
//! Everything else lives in the library crates (see the README's Layout).

mod api;
mod check_storage;
mod cli;
mod docs;
mod restore;
mod staging_disk;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sediment_core::clock::SystemClock;
use sediment_core::component::Registry;
use sediment_core::config::{self, Config};
use sediment_core::topology::RunningTopology;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, LogFormat};

/// jemalloc: events are parsed on one thread and freed on another, which glibc's
/// arenas handle poorly (a quarter of the CPU in malloc/free, futex contention).
/// Two arenas and prompt purging keep peak RSS bounded (see README, Performance).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's build-time options, read at start-up; `_RJEM_MALLOC_CONF` still overrides.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 47] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    let result = match command {
        // Restore has exit codes of its own (2 for usage, 130 when interrupted).
        Command::Restore(args) => return restore::restore(*args),
        Command::Validate(args) => validate(&args.config_path()),
        Command::Run(args) => run(&args.config_path()),
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
        Command::CheckStorage(args) => {
            match check_storage::check_storage(&args.config.config_path(), args.sink.as_deref()) {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow::anyhow!("a storage check failed")),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: a log file or a journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Every component type this build knows.
fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(sediment_sources::factories())
        .register(sediment_transforms::factories())
        .register(sediment_sinks::factories())
        .register(sediment_restore::factories())
        .register(sediment_kafka::factories());
    registry
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = config::load(path, &registry())?;
    for warning in &config.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    Ok(config)
}

fn validate(path: &std::path::Path) -> anyhow::Result<()> {
    match config::load(path, &registry()) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {}: {warning}", path.display());
            }
            println!("ok");
            Ok(())
        }
        Err(errors) => {
            for line in errors.to_string().lines() {
                println!("{line}");
            }
            anyhow::bail!("{} has {} error(s)", path.display(), errors.errors.len())
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load(path)?;
    // A run-time error may quote a value that came from the environment (a
    // bucket, an address, a credential): it is shown with `${NAME}` instead.
    let interpolated = config.interpolated.clone();
    run_config(path, config).map_err(|e| anyhow::anyhow!(interpolated.redact(&format!("{e:#}"))))
}

fn run_config(path: &std::path::Path, config: sediment_core::config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let api_address = config.api_address;
        let stop = CancellationToken::new();
        let health = api::Health::default();
        let api = match api_address {
            Some(address) => Some(api::serve(address, health.clone()).await?),
            None => None,
        };
        // Watched from before start-up: a SIGTERM during staging recovery stops
        // sediment gracefully as soon as it is up.
        tokio::spawn(watch_signals(stop.clone(), health.clone()));
        staging_disk::watch(&config);
        let topology = RunningTopology::start(config, Arc::new(SystemClock)).await?;
        health.set_running();
        // A signal or a failed component: either way intake stops, so does 200.
        let (shutdown, shutting_down) = (topology.shutdown_token(), health.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            shutting_down.set_shutting_down();
        });
        tracing::info!(config = %path.display(), "sediment is running");
        let result = topology.run_until(stop).await;
        if let Some(api) = api {
            api.stop().await;
        }
        tracing::info!("sediment stopped");
        result
    })
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once (staged data is durable).
async fn watch_signals(stop: CancellationToken, health: api::Health) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop sediment with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: shutting down gracefully (send it again to exit at once)");
    health.set_shutting_down();
    stop.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now; staged data will be uploaded at the next start");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(feature = "s3", feature = "gcs", feature = "azure_blob"))]
    use sediment_core::component::ComponentKind;

    #[cfg(all(feature = "s3", feature = "gcs", feature = "azure_blob"))]
    /// Every registered component type with every one of its options set. A new
    /// component type must be added here, or `every_type_is_covered` fails.
    const EVERY_OPTION: &str = r#"
data_dir: /var/lib/sediment
shutdown_timeout: 90s
api: {enabled: true, address: "127.0.0.1:9598"}
sources:
  http_in:
    type: http
    address: "127.0.0.1:8080"
    path: /ingest
    max_body_size: 4MiB
    max_in_flight: 8
    queue_timeout: 250ms
    memory_limit: 32MiB
    request_timeout: 20s
    max_events_per_request: 500000
    max_hours_per_request: 24
    auth: {strategy: basic, username: u, password: "${PASSWORD:-p}"}
    headers: [X-Request-Id]
    timestamp_fields: [ts]
    header_timeout: 5s
    idle_timeout: 30s
    max_connections: 256
  syslog_in:
    type: syslog
    mode: tcp
    address: "127.0.0.1:5514"
    max_message_size: 128KiB
    connection_limit: 100
    keepalive: 60s
    receive_buffer_bytes: 4MiB
    permit_origin: [10.0.0.0/8, 192.0.2.7]
    timezone: "+02:00"
    idle_timeout: 10m
  from_kafka:
    type: kafka
    bootstrap_servers: [kafka-1:9092, kafka-2:9092]
    topics: [logs, audit]
    group_id: sediment
    client_id: sediment-1
    group_instance_id: sediment-1
    auto_offset_reset: earliest
    sasl: {mechanism: SCRAM-SHA-512, username: sediment, password: "${KAFKA_PASSWORD:-secret}"}
    librdkafka_options: {session.timeout.ms: "30000"}
    decoding: json
    timestamp_fields: [timestamp]
  last_week:
    type: archive
    storage: {type: file, path: /srv/archive, account_id: acme}
    from: "2026-11-22T00:00:00Z"
    to: "2026-11-23"
    query: 'level:error'
    layout: "year=%Y/month=%m/day=%d/{account_id}.%Y-%m-%d.%H00{part}.json.gz"
    id_field: _id
    time_field: _ts
    parallel: 4
    dedup: true
    dedup_memory: 64MiB
transforms:
  drop_noise:
    type: exclude
    inputs: [http_in, syslog_in, last_week, from_kafka]
    rules:
      - {name: health, query: 'app:healthcheck OR "GET /health"'}
      - {name: debug, query: 'level:debug AND NOT app:payments', enabled: false}
  hourly: {type: hour_partition, inputs: [drop_noise], late_after: 15m}
sinks:
  archive:
    type: file
    inputs: [hourly]
    path: /srv/archive
    account_id: acme
    key_template: "dt=%Y-%m-%d/hour=%H/{account_id}{part}.json.gz"
    compression_level: 9
    max_object_size: 100MB
    late_flush_interval: 1m
  debug: {type: console, inputs: [http_in]}
  forward:
    type: http
    inputs: [drop_noise]
    uri: "https://logs.example.com/ingest"
    method: put
    headers: {X-Tenant: acme, X-Api-Key: "${API_KEY:-k}"}
    auth: {strategy: bearer, token: "${TOKEN:-t}"}
    encoding: json
    compression: zstd
    batch: {max_events: 500, max_bytes: 512KiB, timeout: 2s}
    request: {timeout: 10s, concurrency: 8, retry_initial_backoff: 500ms, retry_max_backoff: 30s}
    tls: {verify: true}
  s3_archive:
    type: s3
    inputs: [hourly]
    bucket: acme-logs
    prefix: sediment/
    region: eu-west-1
    endpoint: "https://s3.eu-west-1.amazonaws.com"
    force_path_style: false
    access_key_id: "${AWS_ACCESS_KEY_ID:-AKIDEXAMPLE}"
    secret_access_key: "${AWS_SECRET_ACCESS_KEY:-secret}"
    session_token: "${AWS_SESSION_TOKEN:-token}"
    assume_role: "arn:aws:iam::123456789012:role/sediment"
    external_id: acme
    server_side_encryption: "aws:kms"
    kms_key_id: "arn:aws:kms:eu-west-1:123456789012:key/example"
    storage_class: STANDARD_IA
    part_size: 32MiB
    account_id: acme
  gcs_archive:
    type: gcs
    inputs: [hourly]
    bucket: acme-logs
    prefix: sediment/
    endpoint: "https://storage.googleapis.com"
    storage_class: NEARLINE
    credentials_path: /etc/sediment/gcs-key.json
    anonymous: false
    chunk_size: 16MiB
    account_id: acme
  azure_archive:
    type: azure_blob
    inputs: [hourly]
    container: acme-logs
    prefix: sediment/
    account: acmelogs
    endpoint: "https://acmelogs.blob.core.windows.net"
    account_key: "${AZURE_STORAGE_KEY:-a2V5}"
    block_size: 16MiB
    account_id: acme
  azure_sas:
    type: azure_blob
    inputs: [hourly]
    container: acme-logs
    account: acmelogs
    sas_token: "${AZURE_SAS:-sv=2024-01-01&sig=x}"
  azure_connection:
    type: azure_blob
    inputs: [hourly]
    container: acme-logs
    connection_string: "${AZURE_STORAGE_CONNECTION_STRING:-AccountName=acmelogs;AccountKey=a2V5}"
"#;

    fn load(text: &str) -> Config {
        config::from_str(
            text,
            std::path::Path::new("every.yaml"),
            &registry(),
            |_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    // EVERY_OPTION uses every cloud sink: these two need the default features.
    #[cfg(all(feature = "s3", feature = "gcs", feature = "azure_blob"))]
    #[test]
    fn every_option_of_every_type_validates() {
        let config = load(EVERY_OPTION);
        assert_eq!(config.shutdown_timeout, std::time::Duration::from_secs(90));
        assert_eq!(config.components.len(), 14);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[cfg(all(feature = "s3", feature = "gcs", feature = "azure_blob"))]
    #[test]
    fn every_type_is_covered() {
        let config = load(EVERY_OPTION);
        let registry = registry();
        for kind in [
            ComponentKind::Source,
            ComponentKind::Transform,
            ComponentKind::Sink,
        ] {
            for name in registry.names(kind) {
                assert!(
                    config
                        .components
                        .iter()
                        .any(|c| c.kind == kind && c.type_name == name),
                    "{} type `{name}` has no example in EVERY_OPTION",
                    kind.as_str()
                );
            }
        }
    }

    #[test]
    fn the_default_pipeline_validates() {
        let text = include_str!("../pipeline.yaml");
        let config = load(text);
        assert!(config.warnings.is_empty());
    }
}
