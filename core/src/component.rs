//! The component contract: config → validate → build → run, and the registry of types.
//!
//! A component type registers a [`Factory`] under its `type:` name. The factory's
//! `parse` deserialises and validates the YAML into a plain validated value (a
//! `Validated*` trait object); `build` consumes only that, so a running component
//! never meets an unchecked option. Sources get an [`Output`]; transforms are plain
//! functions over a batch's events (the runtime moves batches and acknowledgements);
//! sinks get the receiving end of their input channel.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::ConfigError;
use crate::event::Event;
use crate::metrics::ComponentMetrics;
use crate::output::{BatchReceiver, Output};

/// Which section of the config a component lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// Produces events.
    Source,
    /// Reads and annotates or drops events.
    Transform,
    /// Writes events out.
    Sink,
}

impl ComponentKind {
    /// `source`, `transform` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }

    /// `sources`, `transforms` or `sinks`: the YAML section.
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Transform => "transforms",
            ComponentKind::Sink => "sinks",
        }
    }
}

/// What a component's `parse` knows besides its own YAML.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// The component id (its YAML key).
    pub id: String,
    /// The component's YAML path, e.g. `sources.http_in`.
    pub path: String,
}

/// What every component gets when it is built.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The component id.
    pub id: String,
    /// Metric handles labelled for this component.
    pub metrics: ComponentMetrics,
    /// The global `data_dir` (staging files and state).
    pub data_dir: PathBuf,
    /// Time, injectable for tests.
    pub clock: SharedClock,
    /// How long shutdown may spend finalising.
    pub shutdown_timeout: Duration,
    /// Cancelled when the topology starts shutting down. Sources get their own
    /// token in [`Source::run`]; a sink that may wait on a peer without limit (the
    /// HTTP sink) starts its `shutdown_timeout` from this, not from its input closing.
    pub shutdown: CancellationToken,
    /// What archive sinks stored of replayable streams, shared with the sources
    /// that commit them (see [`crate::stream`]).
    pub progress: std::sync::Arc<crate::stream::Progress>,
}

/// A validated source config, ready to build.
#[async_trait]
pub trait ValidatedSource: Send + Sync + std::fmt::Debug {
    /// Binds sockets and prepares state; errors here stop start-up.
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Source>>;
}

/// A running source.
#[async_trait]
pub trait Source: Send {
    /// Produces events into `out` until `shutdown` fires, then stops intake and returns.
    async fn run(self: Box<Self>, out: Output, shutdown: CancellationToken) -> anyhow::Result<()>;
}

/// A validated transform config, ready to build.
pub trait ValidatedTransform: Send + Sync + std::fmt::Debug {
    /// Builds the transform.
    fn build(self: Box<Self>, cx: &BuildContext) -> Box<dyn Transform>;
}

/// A synchronous transform over the events of one batch.
///
/// It may edit, annotate or remove events in place; the runtime forwards what is
/// left with the batch's acknowledgement, and completes the acknowledgement of a
/// batch left empty (its events were handled by being dropped).
pub trait Transform: Send {
    /// Transforms the events of one batch.
    fn transform(&mut self, events: &mut Vec<Event>);
}

/// A validated sink config, ready to build.
#[async_trait]
pub trait ValidatedSink: Send + Sync + std::fmt::Debug {
    /// Opens storage, recovers staged state; errors here stop start-up.
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>>;

    /// The key layout of an archive sink, for `restore`: its key template with
    /// `{account_id}` filled in, and the account id. `None` for sinks that do not
    /// archive.
    fn archive_layout(&self) -> Option<(String, String)> {
        None
    }

    /// The archive storage this sink writes to, for `check-storage` and `restore`;
    /// `None` for sinks that do not archive.
    async fn open_store(
        &self,
    ) -> Option<anyhow::Result<std::sync::Arc<dyn crate::storage::ObjectStore>>> {
        None
    }
}

/// A running sink.
#[async_trait]
pub trait Sink: Send {
    /// Consumes batches until the input closes (every upstream stopped), then
    /// finishes its work within the shutdown timeout and returns.
    async fn run(self: Box<Self>, input: BatchReceiver) -> anyhow::Result<()>;
}

/// A validated component of any kind.
#[derive(Debug)]
pub enum Validated {
    /// A source.
    Source(Box<dyn ValidatedSource>),
    /// A transform.
    Transform(Box<dyn ValidatedTransform>),
    /// A sink.
    Sink(Box<dyn ValidatedSink>),
}

/// Parses a component's YAML (without `type` and `inputs`) into its validated form.
pub type ParseFn = fn(&ParseContext, serde_yaml::Value) -> Result<Validated, Vec<ConfigError>>;

/// One registered component type.
#[derive(Debug, Clone, Copy)]
pub struct Factory {
    /// Section the type belongs to.
    pub kind: ComponentKind,
    /// The `type:` name, equal to the module name.
    pub type_name: &'static str,
    /// Validates a config of this type.
    pub parse: ParseFn,
}

/// Every component type this build of sediment knows.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    factories: Vec<Factory>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers component types.
    pub fn register(&mut self, factories: impl IntoIterator<Item = Factory>) -> &mut Registry {
        self.factories.extend(factories);
        self
    }

    /// The factory for `type_name` in `kind`'s section.
    pub fn get(&self, kind: ComponentKind, type_name: &str) -> Option<&Factory> {
        self.factories
            .iter()
            .find(|f| f.kind == kind && f.type_name == type_name)
    }

    /// The known type names of a section.
    pub fn names(&self, kind: ComponentKind) -> Vec<&'static str> {
        self.factories
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.type_name)
            .collect()
    }
}
