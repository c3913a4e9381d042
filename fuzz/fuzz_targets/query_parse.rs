//! The exclusion-rule query language: any text parses or fails with a column,
//! and a parsed query evaluates against events without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sediment_query::Query;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Query::parse(text) {
        Ok(query) => {
            for event in [
                json!({"message": "GET /health 200", "app": "healthcheck", "status": 404,
                       "nested": {"a": [1, "x", null], "b": {"c": true}}, "level": "warn"}),
                json!({"line": text, "status": "500", "ts": 1.5e300}),
                json!({}),
            ] {
                std::hint::black_box(query.matches(event.as_object().unwrap()));
            }
        }
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
});
