//! Registry entries for the cloud sinks a build left out (cargo features `s3`,
//! `gcs`, `azure_blob`): the type stays known, and using it is an error that
//! says how to get it back instead of "unknown sink type".

use sediment_core::component::{ComponentKind, Factory, ParseContext, Validated};
use sediment_core::config::{join, ConfigError};

fn left_out(cx: &ParseContext, type_name: &str) -> Result<Validated, Vec<ConfigError>> {
    Err(vec![ConfigError::new(
        join(&cx.path, "type"),
        format!(
            "this sediment was built without `{type_name}` sinks; rebuild it with `cargo build --features {type_name}` (or with the default features)"
        ),
    )])
}

fn entry(type_name: &'static str, parse: sediment_core::component::ParseFn) -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name,
        parse,
    }
}

/// `type: s3` in a build without the `s3` feature.
#[cfg(not(feature = "s3"))]
pub fn s3() -> Factory {
    entry("s3", |cx, _| left_out(cx, "s3"))
}

/// `type: gcs` in a build without the `gcs` feature.
#[cfg(not(feature = "gcs"))]
pub fn gcs() -> Factory {
    entry("gcs", |cx, _| left_out(cx, "gcs"))
}

/// `type: azure_blob` in a build without the `azure_blob` feature.
#[cfg(not(feature = "azure_blob"))]
pub fn azure_blob() -> Factory {
    entry("azure_blob", |cx, _| left_out(cx, "azure_blob"))
}
