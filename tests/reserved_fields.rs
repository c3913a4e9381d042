//! Issue 12, items 6 and 7, against the real binary: sediment's `_meta` is
//! authoritative unless a source trusts its clients (`trust_meta: true`, and then
//! only an object), `/logs/ingest` never lets a line replace the server's
//! hostname/tags metadata, and `_ts` is always RFC 3339 UTC with milliseconds;
//! every replaced `_id`, `_ts` and `_meta` is counted.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn meta_is_sediments_own_and_ts_is_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let trusted_port = free_port();
    let topology = format!(
        "
sources:
  http_in: {{type: http, address: '127.0.0.1:{{HTTP}}'}}
  restore_in: {{type: http, address: '127.0.0.1:{trusted_port}', trust_meta: true}}
transforms:
  hourly: {{type: hour_partition, inputs: [http_in, restore_in], late_after: 10m}}
sinks:
  archive: {{type: file, inputs: [hourly], path: '{{ROOT}}/archive', account_id: acme}}
"
    );
    let sediment = Setup::new(dir.path()).topology(&topology).start();
    let forged = json!({"source": "spoofed", "remote_addr": "6.6.6.6:6", "received_at": "1999-01-01T00:00:00.000Z"});
    let ts_forms = [
        json!(1_700_000_000),
        json!("1700000000"),
        json!("2023-11-15T03:13:20+05:00"),
        json!(1_700_000_000_000i64),
    ];
    let mut lines: Vec<Value> = ts_forms
        .iter()
        .enumerate()
        .map(|(i, ts)| json!({"case": format!("ts{i}"), "_ts": ts, "_meta": forged}))
        .collect();
    lines.push(json!({"case": "bad", "_ts": "soon", "_id": 7, "_meta": "a string"}));
    lines.push(json!({"case": "null-meta", "_meta": null, "_id": ""}));
    assert_eq!(post_ndjson(&sediment.url("/"), &lines), Ok(200));

    let trusted_url = format!("http://127.0.0.1:{trusted_port}/");
    let restored = json!({"case": "restored", "_id": "0190c1d2-0000-7000-8000-000000000001", "_ts": "2023-11-14T22:13:20.000Z", "_meta": {"source": "origin", "remote_addr": "10.1.1.1:1"}});
    let not_an_object = json!({"case": "trusted-string", "_meta": "x"});
    assert_eq!(
        post_ndjson(&trusted_url, &[restored.clone(), not_an_object]),
        Ok(200)
    );
    // Mezmo lines never carry a trusted `_meta`, even on a trusting source.
    let mezmo = json!({"lines": [{"line": "mezmo", "app": "web", "_meta": {"query": {"hostname": "forged"}}}]});
    let (status, reply, _) = post(
        &format!("http://127.0.0.1:{trusted_port}/logs/ingest?hostname=web-1&tags=a,b"),
        &[("content-type", "application/json")],
        mezmo.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{reply}");

    let metrics = sediment.metrics();
    let count = |id: &str, error_type: &str| {
        metric(
            &metrics,
            "sediment_component_errors_total",
            &format!("component_id=\"{id}\",component_kind=\"source\",component_type=\"http\",error_type=\"{error_type}\""),
        )
    };
    assert_eq!(count("http_in", "replaced_meta"), Some(6));
    assert_eq!(count("http_in", "replaced_ts"), Some(1));
    assert_eq!(count("http_in", "replaced_id"), Some(2));
    assert_eq!(count("restore_in", "replaced_meta"), Some(2));
    sediment.stop();

    let events: Vec<Value> = read_archive(&dir.path().join("archive"))
        .into_iter()
        .flat_map(|(_, events)| events)
        .collect();
    let by_case = |case: &str| {
        events
            .iter()
            .find(|e| e["case"] == case)
            .unwrap_or_else(|| panic!("{case} archived"))
            .clone()
    };
    for i in 0..ts_forms.len() {
        let e = by_case(&format!("ts{i}"));
        assert_eq!(e["_ts"], "2023-11-14T22:13:20.000Z", "{e}");
        assert_eq!(e["_meta"]["source"], "http_in", "{e}");
        assert_ne!(e["_meta"]["remote_addr"], "6.6.6.6:6");
        assert_ne!(e["_meta"]["received_at"], "1999-01-01T00:00:00.000Z");
    }
    let bad = by_case("bad");
    assert!(
        bad["_id"].as_str().is_some_and(|id| id.len() == 36),
        "{bad}"
    );
    assert!(bad["_ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(bad["_meta"]["source_type"], "http");
    let null_meta = by_case("null-meta");
    assert!(null_meta["_meta"].is_object() && null_meta["_id"] != "");

    assert_eq!(
        by_case("restored"),
        restored,
        "a trusted restored line is archived as it was"
    );
    assert_eq!(by_case("trusted-string")["_meta"]["source"], "restore_in");
    let line = events
        .iter()
        .find(|e| e["line"] == "mezmo")
        .expect("the mezmo line is archived");
    assert_eq!(line["_meta"]["source"], "restore_in");
    assert_eq!(line["_meta"]["query"]["hostname"], "web-1");
    assert_eq!(line["_meta"]["query"]["tags"], "a,b");
}
