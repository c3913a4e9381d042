//! Stamping rules and time parsing.

use super::*;
use serde_json::json;

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn parses_rfc3339_and_epochs() {
    let expected = 1_700_000_000_000;
    assert_eq!(
        parse_time_ms(&json!("2023-11-14T22:13:20Z")),
        Some(expected)
    );
    assert_eq!(
        parse_time_ms(&json!("2023-11-14T23:13:20+01:00")),
        Some(expected)
    );
    assert_eq!(parse_time_ms(&json!(1_700_000_000)), Some(expected));
    assert_eq!(parse_time_ms(&json!(1_700_000_000_000i64)), Some(expected));
    assert_eq!(parse_time_ms(&json!("1700000000.5")), Some(expected + 500));
    assert_eq!(parse_time_ms(&json!("yesterday")), None);
    assert_eq!(parse_time_ms(&json!(12)), None);
    assert_eq!(parse_time_ms(&json!(true)), None);
}

#[test]
fn stamp_adds_reserved_fields_and_keeps_a_restored_identity() {
    let meta = json!({"source": "in"});
    let ts_fields = vec!["time".to_string()];
    let e = Event::stamp(
        fields(json!({"msg": "a", "time": 1_700_000_000})),
        &ts_fields,
        5,
        &meta,
    );
    assert_eq!(e.time_ms, 1_700_000_000_000);
    assert_eq!(e.fields()["_ts"], json!("2023-11-14T22:13:20.000Z"));
    assert_eq!(e.fields()["_meta"], meta);
    assert_eq!(e.fields()["_id"].as_str().unwrap().len(), 36);

    let other = json!({"source": "other"});
    let trusting = Stamp {
        timestamp_fields: &ts_fields,
        now_ms: 5,
        meta: &other,
        trust_meta: true,
    };
    let mut replaced = Replaced::default();
    let again = Event::stamp_with(e.fields().into_owned(), &trusting, &mut replaced);
    assert_eq!(
        again.fields(),
        e.fields(),
        "with trust_meta a restored line keeps _id, _ts and _meta"
    );
    assert_eq!(replaced, Replaced::default());

    let untrusted = Event::stamp(e.fields().into_owned(), &ts_fields, 5, &other);
    assert_eq!(untrusted.fields()["_id"], e.fields()["_id"]);
    assert_eq!(
        untrusted.fields()["_meta"],
        other,
        "sediment's _meta wins by default"
    );

    let no_time = Event::stamp(
        fields(json!({"msg": "b"})),
        &ts_fields,
        1_700_000_000_123,
        &meta,
    );
    assert_eq!(no_time.time_ms, 1_700_000_000_123);
}

#[test]
fn forged_or_malformed_meta_is_replaced_and_counted() {
    let meta = json!({"source": "in", "remote_addr": "10.0.0.1:1"});
    for (trust, client, kept) in [
        (
            false,
            json!({"source": "spoofed", "remote_addr": "1.2.3.4:5"}),
            false,
        ),
        (false, json!("a string"), false),
        (true, json!({"source": "restored"}), true),
        (true, json!("a string"), false),
        (true, Value::Null, false),
        (true, json!([1, 2]), false),
    ] {
        let stamp = Stamp {
            timestamp_fields: &[],
            now_ms: 1_700_000_000_000,
            meta: &meta,
            trust_meta: trust,
        };
        let mut replaced = Replaced::default();
        let e = Event::stamp_with(
            fields(json!({"msg": "x", "_meta": client.clone()})),
            &stamp,
            &mut replaced,
        );
        let expected = if kept { client.clone() } else { meta.clone() };
        assert_eq!(
            e.fields()["_meta"],
            expected,
            "trust {trust}, client {client}"
        );
        assert_eq!(
            replaced.metas,
            u64::from(!kept),
            "trust {trust}, client {client}"
        );
    }
}

#[test]
fn ts_is_always_rfc3339_utc_millis_and_bad_ids_and_times_are_counted() {
    let stamp = Stamp {
        timestamp_fields: &["time".to_string()],
        now_ms: 1_700_000_000_000,
        meta: &Value::Null,
        trust_meta: false,
    };
    let normalised = "2023-11-14T22:13:20.000Z";
    for client_ts in [
        json!(1_700_000_000),
        json!(1_700_000_000_000i64),
        json!("1700000000"),
        json!("2023-11-15T03:13:20+05:00"),
        json!("2023-11-14T22:13:20.000471Z"),
        json!(normalised),
    ] {
        let mut replaced = Replaced::default();
        let e = Event::stamp_with(
            fields(json!({"_ts": client_ts.clone()})),
            &stamp,
            &mut replaced,
        );
        assert_eq!(e.fields()["_ts"], json!(normalised), "from {client_ts}");
        assert_eq!(e.time_ms, 1_700_000_000_000);
        assert_eq!(replaced, Replaced::default(), "from {client_ts}");
    }

    let mut replaced = Replaced::default();
    let e = Event::stamp_with(
        fields(json!({"_ts": "last tuesday", "time": 1_600_000_000, "_id": 42})),
        &stamp,
        &mut replaced,
    );
    assert_eq!(
        e.fields()["_ts"],
        json!("2020-09-13T12:26:40.000Z"),
        "falls back to `time`"
    );
    assert_eq!(e.fields()["_id"].as_str().map(str::len), Some(36));
    for bad in [json!(""), json!(null), json!({"a": 1})] {
        Event::stamp_with(
            fields(json!({"_ts": [], "_id": bad})),
            &stamp,
            &mut replaced,
        );
    }
    assert_eq!(
        replaced,
        Replaced {
            ids: 4,
            timestamps: 4,
            metas: 0
        }
    );
    let kept = Event::stamp_with(
        fields(json!({"_id": "01HZX-restored"})),
        &stamp,
        &mut replaced,
    );
    assert_eq!(kept.fields()["_id"], "01HZX-restored");
    assert_eq!(replaced.ids, 4);
}

#[test]
fn hour_of_floors_in_utc_even_before_epoch() {
    assert_eq!(Partition::hour_of(3_599_999), 0);
    assert_eq!(Partition::hour_of(3_600_000), 3600);
    assert_eq!(Partition::hour_of(-1), -3600);
}
