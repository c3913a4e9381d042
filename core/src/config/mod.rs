//! Loading `pipeline.yaml`: interpolation, parsing, per-component validation and
//! topology checks. Every problem is collected and reported with its YAML path.

mod error;
mod graph;
mod interpolate;
mod typed;
mod units;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use error::{did_you_mean, suggestion, ConfigError, ConfigErrors};
pub use interpolate::{interpolate, Interpolated};
pub use typed::{join, known_fields, parse_typed, unknown_fields};
pub use units::{
    parse_address, parse_duration, parse_size, ByteSize, ConfigDuration, ListenAddress,
};

use crate::component::{ComponentKind, ParseContext, Registry, Validated};

/// A loaded, fully validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Where staging files and state live.
    pub data_dir: PathBuf,
    /// How long shutdown may spend finalising open partitions.
    pub shutdown_timeout: Duration,
    /// The metrics and health endpoint, if enabled.
    pub api_address: Option<std::net::SocketAddr>,
    /// Every component, in file order (sources, transforms, sinks).
    pub components: Vec<ComponentConfig>,
    /// Problems that do not stop the pipeline (a source that feeds nothing).
    pub warnings: Vec<ConfigError>,
    /// What `${VAR}` interpolation put into the file: run-time messages that may
    /// quote configured values should go through [`Interpolated::redact`].
    pub interpolated: Interpolated,
}

/// One validated component and its place in the topology.
#[derive(Debug)]
pub struct ComponentConfig {
    /// The id (YAML key).
    pub id: String,
    /// Its section.
    pub kind: ComponentKind,
    /// Its `type:`.
    pub type_name: &'static str,
    /// Ids of the components it reads from (empty for sources).
    pub inputs: Vec<String>,
    /// The validated options.
    pub validated: Validated,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    /// Staging files and state; created if missing.
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    /// How long SIGTERM may spend finalising open partitions.
    #[serde(default = "default_shutdown_timeout")]
    shutdown_timeout: ConfigDuration,
    /// The metrics and health endpoint.
    #[serde(default)]
    api: ApiSection,
    /// Components that produce events.
    #[serde(default)]
    sources: serde_yaml::Mapping,
    /// Components that read and drop or annotate events.
    #[serde(default)]
    transforms: serde_yaml::Mapping,
    /// Components that write events out.
    #[serde(default)]
    sinks: serde_yaml::Mapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    /// Serve the API at all.
    #[serde(default = "default_true")]
    enabled: bool,
    /// Where `GET /metrics` and `GET /health` listen.
    #[serde(default = "default_api_address")]
    address: ListenAddress,
}

impl Default for ApiSection {
    fn default() -> ApiSection {
        ApiSection {
            enabled: true,
            address: default_api_address(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_shutdown_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_true() -> bool {
    true
}
fn default_api_address() -> ListenAddress {
    ListenAddress(std::net::SocketAddr::from(([127, 0, 0, 1], 9598)))
}

/// Loads and validates `file`, reading `${VAR}`s from the process environment.
pub fn load(file: &Path, registry: &Registry) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigErrors {
        file: file.to_owned(),
        errors: vec![ConfigError::new(
            "",
            format!("cannot read the configuration file: {e}"),
        )],
    })?;
    from_str(&text, file, registry, |name| std::env::var(name).ok())
}

/// Validates configuration `text` (named `file` in messages).
pub fn from_str(
    text: &str,
    file: &Path,
    registry: &Registry,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let interpolated = interpolate(text, env).map_err(|errors| ConfigErrors {
        file: file.to_owned(),
        errors,
    })?;
    // No message may quote an interpolated value (a secret, often): each names
    // the variable instead.
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        file: file.to_owned(),
        errors: errors
            .into_iter()
            .map(|e| interpolated.redact_error(e))
            .collect(),
    };
    let root: serde_yaml::Value =
        serde_yaml::from_str(&interpolated.text).map_err(|e| fail(vec![yaml_syntax_error(&e)]))?;
    let root = match root {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        other => other,
    };
    let top: TopLevel = parse_typed("", root).map_err(fail)?;

    let mut errors = Vec::new();
    let mut components = Vec::new();
    let mut nodes = Vec::new();
    let mut seen: HashMap<String, ComponentKind> = HashMap::new();
    for (kind, section) in [
        (ComponentKind::Source, top.sources),
        (ComponentKind::Transform, top.transforms),
        (ComponentKind::Sink, top.sinks),
    ] {
        for (key, value) in section {
            let Some(id) = key.as_str().map(str::to_owned) else {
                errors.push(ConfigError::new(
                    kind.section(),
                    format!("component id {key:?} must be a string"),
                ));
                continue;
            };
            let path = join(kind.section(), &id);
            if let Some(other) = seen.insert(id.clone(), kind) {
                errors.push(ConfigError::new(
                    &path,
                    format!(
                        "duplicate component id `{id}` (also used in `{}`)",
                        other.section()
                    ),
                ));
                continue;
            }
            if !valid_id(&id) {
                errors.push(ConfigError::new(&path, "component ids may only use letters, digits, `_`, `-` and `.`, and start with a letter or digit"));
                continue;
            }
            let (inputs, parsed) = parse_component(registry, kind, &id, &path, value);
            nodes.push(graph::Node { kind, id, inputs });
            match parsed {
                Ok(c) => components.push(c),
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    let warnings = graph::check(&nodes, &seen, &mut errors);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let warnings = warnings
        .into_iter()
        .map(|e| interpolated.redact_error(e))
        .collect();
    Ok(Config {
        file: file.to_owned(),
        data_dir: top.data_dir,
        shutdown_timeout: top.shutdown_timeout.get(),
        api_address: top.api.enabled.then_some(top.api.address.0),
        components,
        warnings,
        interpolated,
    })
}

/// Parses one component; its inputs are returned even when its options are bad,
/// so the topology checks still cover it.
fn parse_component(
    registry: &Registry,
    kind: ComponentKind,
    id: &str,
    path: &str,
    value: serde_yaml::Value,
) -> (Vec<String>, Result<ComponentConfig, Vec<ConfigError>>) {
    let serde_yaml::Value::Mapping(mut map) = value else {
        let e = ConfigError::new(path, "expected a mapping with at least a `type` field");
        return (Vec::new(), Err(vec![e]));
    };
    let mut errors = Vec::new();
    let inputs = if kind == ComponentKind::Source {
        Vec::new()
    } else {
        let needs = |what: &str| format!("a {} needs {what}", kind.as_str());
        match map
            .remove("inputs")
            .map(serde_yaml::from_value::<Vec<String>>)
        {
            None => {
                errors.push(ConfigError::new(
                    path,
                    needs("`inputs`: the ids of the components it reads from"),
                ));
                Vec::new()
            }
            Some(Ok(inputs)) => {
                if inputs.is_empty() {
                    errors.push(ConfigError::new(
                        join(path, "inputs"),
                        needs("at least one input"),
                    ));
                }
                inputs
            }
            Some(Err(_)) => {
                errors.push(ConfigError::new(
                    join(path, "inputs"),
                    "expected a list of component ids",
                ));
                Vec::new()
            }
        }
    };
    let parsed = parse_options(registry, kind, id, path, map, inputs.clone(), errors);
    (inputs, parsed)
}

/// Parses `type` and the component's own options.
fn parse_options(
    registry: &Registry,
    kind: ComponentKind,
    id: &str,
    path: &str,
    mut map: serde_yaml::Mapping,
    inputs: Vec<String>,
    mut errors: Vec<ConfigError>,
) -> Result<ComponentConfig, Vec<ConfigError>> {
    let known = registry.names(kind);
    let known_list = format!("known {} types: {}", kind.as_str(), known.join(", "));
    let type_name = match map.remove("type") {
        Some(serde_yaml::Value::String(t)) => t,
        Some(_) => {
            errors.push(ConfigError::new(join(path, "type"), "expected a string"));
            return Err(errors);
        }
        None => {
            errors.push(ConfigError::new(
                path,
                format!("missing field `type` ({known_list})"),
            ));
            return Err(errors);
        }
    };
    let Some(factory) = registry.get(kind, &type_name) else {
        let hint = suggestion(&type_name, known.iter().copied());
        let message = format!(
            "unknown {} type `{type_name}`{hint} ({known_list})",
            kind.as_str()
        );
        errors.push(ConfigError::new(join(path, "type"), message));
        return Err(errors);
    };
    let cx = ParseContext {
        id: id.to_owned(),
        path: path.to_owned(),
    };
    match (factory.parse)(&cx, serde_yaml::Value::Mapping(map)) {
        Ok(validated) if errors.is_empty() => Ok(ComponentConfig {
            id: id.to_owned(),
            kind,
            type_name: factory.type_name,
            inputs,
            validated,
        }),
        Ok(_) => Err(errors),
        Err(mut e) => {
            errors.append(&mut e);
            Err(errors)
        }
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn yaml_syntax_error(e: &serde_yaml::Error) -> ConfigError {
    let message = e.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    match e.location() {
        Some(loc) => ConfigError::new(
            format!("line {} column {}", loc.line(), loc.column()),
            format!("invalid YAML: {message}"),
        ),
        None => ConfigError::new("", format!("invalid YAML: {message}")),
    }
}

#[cfg(test)]
mod tests;
