//! `sediment restore`: the command line in front of `sediment-restore`.
//!
//! Turns the flags into a validated [`sediment_restore::Request`] — usage errors
//! (a bad time, an empty range, a bad query with its column, an unknown sink)
//! exit 2 before anything is read — then runs it with Ctrl-C / SIGTERM
//! stopping it at the next committed position (exit 130; the same command
//! continues it).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sediment_core::component::Validated;
use sediment_restore::layout::Layout;
use sediment_restore::time::{now_ms, parse_time, TimeRange};
use sediment_restore::{Ended, OutputTarget, Request};
use tokio_util::sync::CancellationToken;

use crate::cli::RestoreArgs;

/// A usage error (exit 2) or a runtime failure (exit 1).
enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Runtime(e)
    }
}

/// Runs `sediment restore`.
pub fn restore(args: RestoreArgs) -> ExitCode {
    match run(args) {
        Ok(Ended::Done) => ExitCode::SUCCESS,
        Ok(Ended::Damaged) => {
            eprintln!(
                "error: some archive objects are damaged (listed above); the rest was restored"
            );
            ExitCode::FAILURE
        }
        Ok(Ended::Interrupted) => {
            eprintln!("interrupted: what was delivered is checkpointed; run the same command again to continue");
            ExitCode::from(130)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RestoreArgs) -> Result<Ended, Failure> {
    let path = args.config.config_path();
    let now = now_ms();
    let from = parse_time(&args.from, now).map_err(|e| Failure::Usage(format!("--from: {e}")))?;
    let to = parse_time(&args.to, now).map_err(|e| Failure::Usage(format!("--to: {e}")))?;
    let range = TimeRange::new(from, to, now).map_err(Failure::Usage)?;
    let query =
        match &args.query {
            Some(q) => Some(sediment_query::Query::parse(q).map_err(|e| {
                Failure::Usage(format!("--query: column {}: {}", e.column, e.message))
            })?),
            None => None,
        };
    if args.parallel == 0 || args.parallel > 256 {
        return Err(Failure::Usage(
            "--parallel must be between 1 and 256".into(),
        ));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Failure::Usage(
            "--rate must be a positive number of lines per second".into(),
        ));
    }
    let dedup_memory = sediment_core::config::parse_size(&args.dedup_memory)
        .map_err(|e| Failure::Usage(format!("--dedup-memory: {e}")))?;
    if args.id_field.is_empty() || args.time_field.is_empty() {
        return Err(Failure::Usage(
            "--id-field and --time-field must not be empty".into(),
        ));
    }
    let config = crate::load(&path)?;
    let Some(component) = config.components.iter().find(|c| c.id == args.sink) else {
        let sinks: Vec<&str> = config
            .components
            .iter()
            .filter(|c| matches!(c.validated, Validated::Sink(_)))
            .map(|c| c.id.as_str())
            .collect();
        return Err(Failure::Usage(format!(
            "--sink: {} has no sink `{}` (its sinks: {})",
            path.display(),
            args.sink,
            sinks.join(", ")
        )));
    };
    let Validated::Sink(sink) = &component.validated else {
        return Err(Failure::Usage(format!(
            "--sink: `{}` in {} is not a sink",
            args.sink,
            path.display()
        )));
    };
    let Some((template, account)) = sink.archive_layout() else {
        return Err(Failure::Usage(format!(
            "--sink: `{}` (type {}) does not write an archive",
            args.sink, component.type_name
        )));
    };
    let layout = match &args.layout {
        Some(l) => {
            Layout::parse(l, &account).map_err(|e| Failure::Usage(format!("--layout: {e}")))?
        }
        None => Layout::parse(&template, &account).map_err(|e| {
            Failure::Usage(format!(
                "sink `{}`: its key_template cannot be read back: {e}; pass --layout",
                args.sink
            ))
        })?,
    };
    let output = OutputTarget::parse(&args.output);
    let identity = format!(
        "sink={}\nfrom={}\nto={}\nquery={:?}\noutput={:?}\nlayout={:?}\nid={}\ntime={}\ndedup={}\nskip_cold={}\nlimit={:?}\nconfig={}",
        args.sink,
        args.from,
        args.to,
        args.query,
        output,
        args.layout,
        args.id_field,
        args.time_field,
        !args.no_dedup,
        args.skip_cold,
        args.limit,
        std::path::absolute(&path).unwrap_or(path.clone()).display(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store = sink
            .open_store()
            .await
            .expect("an archive sink has a store")
            .with_context(|| format!("cannot open the storage of sink `{}`", args.sink))?;
        let cancel = CancellationToken::new();
        tokio::spawn(watch_signals(cancel.clone()));
        let request = Request {
            store: Arc::clone(&store),
            layout,
            range,
            query,
            id_field: args.id_field,
            time_field: args.time_field,
            output,
            dry_run: args.dry_run,
            limit: args.limit,
            parallel: args.parallel,
            rate: args.rate,
            skip_cold: args.skip_cold,
            dedup_memory: (!args.no_dedup).then_some(dedup_memory as usize),
            fresh: args.fresh,
            data_dir: config.data_dir.clone(),
            identity,
        };
        sediment_restore::execute(request, cancel)
            .await
            .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))
    })
}

/// First signal: stop at the next commit. Second: exit at once (the checkpoint holds).
async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!(
        "stopping the restore at its next checkpoint (send the signal again to exit at once)"
    );
    cancel.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    std::process::exit(130);
}
