//! Options shared by every archive sink, whatever its storage backend.

use std::time::Duration;

use sediment_core::config::{
    join, known_fields, parse_typed, unknown_fields, ByteSize, ConfigDuration, ConfigError,
};
use serde::Deserialize;

use super::naming::{KeyTemplate, DEFAULT_KEY_TEMPLATE};

/// The archive options as written in a sink's YAML (defaults shown in SPEC §2).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveOptions {
    /// Account name in object keys (`{account_id}`).
    #[serde(default = "default_account_id")]
    pub account_id: String,
    /// Object key layout: strftime fields plus `{account_id}` and `{part}`.
    #[serde(default = "default_key_template")]
    pub key_template: String,
    /// gzip level, 1 (fastest) to 9 (smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: u32,
    /// Compressed size at which an hour continues in its next `.N` part.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: ByteSize,
    /// How often late events of already-written hours are written out.
    #[serde(default = "default_late_flush_interval")]
    pub late_flush_interval: ConfigDuration,
}

fn default_account_id() -> String {
    "local".into()
}
fn default_key_template() -> String {
    DEFAULT_KEY_TEMPLATE.into()
}
fn default_compression_level() -> u32 {
    6
}
fn default_max_object_size() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_late_flush_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}

/// Validated archive options.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// Key naming, bound to the account.
    pub template: KeyTemplate,
    /// gzip level.
    pub compression_level: u32,
    /// Part size limit in bytes.
    pub max_object_size: u64,
    /// Late-event flush interval.
    pub late_flush_interval: Duration,
}

impl ArchiveSettings {
    /// The key template (account filled in) and the account id, for restore.
    pub fn layout(&self) -> Option<(String, String)> {
        Some((
            self.template.as_str().to_owned(),
            self.template.account_id().to_owned(),
        ))
    }
}

/// Smallest accepted `max_object_size`: below this objects become absurdly many.
const MIN_OBJECT_SIZE: u64 = 64 * 1024;

/// Parses an archive sink's YAML into its backend options `B` and the shared
/// [`ArchiveSettings`], reporting unknown fields against both sets at once.
pub fn parse_archive_sink<B>(
    path: &str,
    value: serde_yaml::Value,
) -> Result<(B, ArchiveSettings), Vec<ConfigError>>
where
    B: serde::de::DeserializeOwned,
{
    let shared = known_fields::<ArchiveOptions>();
    let backend = known_fields::<B>();
    let all: Vec<&str> = backend.iter().chain(shared).copied().collect();
    let errors = unknown_fields(path, &value, &all);
    if !errors.is_empty() {
        return Err(errors);
    }
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(vec![ConfigError::new(path, "expected a mapping")]);
    };
    let (shared_map, backend_map): (serde_yaml::Mapping, serde_yaml::Mapping) = map
        .into_iter()
        .partition(|(k, _)| k.as_str().is_some_and(|k| shared.contains(&k)));
    let options = parse_typed::<ArchiveOptions>(path, serde_yaml::Value::Mapping(shared_map));
    let backend = parse_typed::<B>(path, serde_yaml::Value::Mapping(backend_map));
    match (options, backend) {
        (Ok(options), Ok(backend)) => Ok((backend, options.validate(path)?)),
        (options, backend) => Err(options
            .err()
            .into_iter()
            .chain(backend.err())
            .flatten()
            .collect()),
    }
}

impl ArchiveOptions {
    /// Checks the options.
    pub fn validate(self, path: &str) -> Result<ArchiveSettings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let template = KeyTemplate::new(&self.key_template, &self.account_id);
        if let Err(e) = &template {
            errors.push(ConfigError::new(join(path, e.field()), e.to_string()));
        }
        if !(1..=9).contains(&self.compression_level) {
            errors.push(ConfigError::new(
                join(path, "compression_level"),
                format!("must be 1 to 9, not {}", self.compression_level),
            ));
        }
        if self.max_object_size.get() < MIN_OBJECT_SIZE {
            errors.push(ConfigError::new(
                join(path, "max_object_size"),
                "must be at least 64KiB",
            ));
        }
        if self.late_flush_interval.get() < Duration::from_secs(1) {
            errors.push(ConfigError::new(
                join(path, "late_flush_interval"),
                "must be at least 1s",
            ));
        }
        match template {
            Ok(template) if errors.is_empty() => Ok(ArchiveSettings {
                template,
                compression_level: self.compression_level,
                max_object_size: self.max_object_size.get(),
                late_flush_interval: self.late_flush_interval.get(),
            }),
            _ => Err(errors),
        }
    }
}
