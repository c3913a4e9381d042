//! Configuration error tests: each class of mistake names its YAML path.

use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;

use super::*;
use crate::component::{
    BuildContext, Factory, ParseContext, Sink, Source, Transform, Validated, ValidatedSink,
    ValidatedSource, ValidatedTransform,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenOptions {
    #[allow(dead_code)]
    address: ListenAddress,
    #[serde(default)]
    #[allow(dead_code)]
    max_body_size: Option<ByteSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowOptions {
    #[serde(default)]
    #[allow(dead_code)]
    late_after: Option<ConfigDuration>,
}

#[derive(Debug)]
struct Fixture;

#[async_trait]
impl ValidatedSource for Fixture {
    async fn build(self: Box<Self>, _: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        anyhow::bail!("fixture components only exercise validation")
    }
}
impl ValidatedTransform for Fixture {
    fn build(self: Box<Self>, _: &BuildContext) -> Box<dyn Transform> {
        unreachable!("fixture components only exercise validation")
    }
}
#[async_trait]
impl ValidatedSink for Fixture {
    async fn build(self: Box<Self>, _: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        anyhow::bail!("fixture components only exercise validation")
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register([
        Factory {
            kind: ComponentKind::Source,
            type_name: "http",
            parse: |cx: &ParseContext, v| {
                parse_typed::<ListenOptions>(&cx.path, v)
                    .map(|_| Validated::Source(Box::new(Fixture)))
            },
        },
        Factory {
            kind: ComponentKind::Transform,
            type_name: "hour_partition",
            parse: |cx: &ParseContext, v| {
                parse_typed::<WindowOptions>(&cx.path, v)
                    .map(|_| Validated::Transform(Box::new(Fixture)))
            },
        },
        Factory {
            kind: ComponentKind::Sink,
            type_name: "file",
            parse: |cx: &ParseContext, v| {
                parse_typed::<WindowOptions>(&cx.path, v)
                    .map(|_| Validated::Sink(Box::new(Fixture)))
            },
        },
    ]);
    r
}

const GOOD: &str = "
data_dir: /tmp/x
sources:
  http_in: {type: http, address: '127.0.0.1:8080'}
transforms:
  hourly: {type: hour_partition, inputs: [http_in], late_after: 10m}
sinks:
  archive: {type: file, inputs: [hourly]}
";

fn errors(text: &str) -> Vec<String> {
    let e = from_str(text, Path::new("pipeline.yaml"), &registry(), |_| None).unwrap_err();
    e.errors.iter().map(ToString::to_string).collect()
}

fn has(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no error contains {needle:?}: {errors:#?}"
    );
}

#[test]
fn a_good_config_validates() {
    let c = from_str(GOOD, Path::new("p.yaml"), &registry(), |_| None).unwrap();
    assert_eq!(c.components.len(), 3);
    assert_eq!(c.components[2].inputs, vec!["hourly"]);
    assert!(c.warnings.is_empty());
    assert_eq!(c.shutdown_timeout, Duration::from_secs(60));
}

#[test]
fn unknown_type_lists_known_types() {
    let e = errors(&GOOD.replace("type: file", "type: fil"));
    has(&e, "sinks.archive.type: unknown sink type `fil`; did you mean `file`? (known sink types: file)");
}

#[test]
fn unknown_field_suggests() {
    let e = errors(&GOOD.replace("address:", "adress:"));
    has(
        &e,
        "sources.http_in.adress: unknown field `adress`; did you mean `address`?",
    );
}

#[test]
fn unknown_input_suggests() {
    let e = errors(&GOOD.replace("inputs: [http_in]", "inputs: [http_inn]"));
    has(
        &e,
        "transforms.hourly.inputs[0]: unknown input `http_inn`; did you mean `http_in`?",
    );
}

#[test]
fn cycles_are_reported() {
    let text = "
sources:
  s: {type: http, address: '127.0.0.1:1'}
transforms:
  a: {type: hour_partition, inputs: [s, b]}
  b: {type: hour_partition, inputs: [a]}
sinks:
  out: {type: file, inputs: [b]}
";
    has(
        &errors(text),
        "transforms.a: the transforms form a cycle: a -> b -> a",
    );
}

#[test]
fn duplicate_ids_across_sections() {
    let text = GOOD
        .replace("archive:", "hourly:")
        .replace("inputs: [hourly]}", "inputs: [http_in]}");
    has(
        &errors(&text),
        "sinks.hourly: duplicate component id `hourly` (also used in `transforms`)",
    );
}

#[test]
fn duplicate_keys_in_one_section() {
    let text = format!("{GOOD}  archive: {{type: file, inputs: [hourly]}}\n");
    has(&errors(&text), "duplicate entry");
}

#[test]
fn sink_without_inputs() {
    has(
        &errors(&GOOD.replace("{type: file, inputs: [hourly]}", "{type: file}")),
        "sinks.archive: a sink needs `inputs`",
    );
    has(
        &errors(&GOOD.replace("inputs: [hourly]", "inputs: []")),
        "sinks.archive.inputs: a sink needs at least one input",
    );
}

#[test]
fn bad_duration_size_and_address() {
    has(
        &errors(&GOOD.replace("10m", "10 minutes please")),
        "transforms.hourly.late_after: invalid duration",
    );
    has(
        &errors(&GOOD.replace("'127.0.0.1:8080'", "'127.0.0.1:8080', max_body_size: huge")),
        "sources.http_in.max_body_size: invalid size `huge`",
    );
    has(
        &errors(&GOOD.replace("'127.0.0.1:8080'", "'8080'")),
        "sources.http_in.address: invalid address `8080`",
    );
    has(
        &errors(&format!("shutdown_timeout: forever\n{GOOD}")),
        "shutdown_timeout: invalid duration `forever`",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = GOOD
        .replace("adress", "x")
        .replace("address:", "adress:")
        .replace("type: file", "type: fil");
    let e = from_str(&text, Path::new("pipeline.yaml"), &registry(), |_| None).unwrap_err();
    assert_eq!(e.errors.len(), 2, "{e:#?}");
    let shown = e.to_string();
    assert!(
        shown.lines().all(|l| l.starts_with("pipeline.yaml: ")),
        "{shown}"
    );
}

#[test]
fn sources_feeding_nothing_warn() {
    let text = GOOD.replace(
        "sources:\n",
        "sources:\n  spare: {type: http, address: '127.0.0.1:9'}\n",
    );
    let c = from_str(&text, Path::new("p.yaml"), &registry(), |_| None).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(
        c.warnings[0].to_string(),
        "sources.spare: this source feeds nothing; no component lists it in `inputs`"
    );
}

#[test]
fn interpolation_runs_before_parsing() {
    let text = GOOD
        .replace("'127.0.0.1:8080'", "'127.0.0.1:${PORT:-8080}'")
        .replace("/tmp/x", "${DIR}");
    let c = from_str(&text, Path::new("p.yaml"), &registry(), |n| {
        (n == "DIR").then(|| "/srv/d".into())
    })
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/srv/d"));
    let e = from_str(&text, Path::new("p.yaml"), &registry(), |_| None).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(
        e.to_string()
            .starts_with("p.yaml: line 2: environment variable `DIR` is not set"),
        "{e}"
    );
}

#[test]
fn yaml_syntax_errors_give_the_line() {
    let e = errors("sources:\n  a: [unclosed\n");
    assert!(e[0].starts_with("line 3 column 1: "), "{e:?}");
    assert!(e[0].contains("invalid YAML"), "{e:?}");
}
