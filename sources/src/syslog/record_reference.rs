//! The map-building event of the syslog source as it was before events were
//! written straight as JSON text: the reference the text builder is held to.

use sediment_core::event::{new_id, Replaced, Stamp, ID_FIELD, META_FIELD, TS_FIELD};
use sediment_core::Event;
use serde_json::{Map, Value};

use super::super::parse::Parsed;
use super::{structured_data, text, Arrival, FACILITIES, SEVERITIES};

/// The event the map path built for `p`.
pub(super) fn event(
    source: &str,
    p: &Parsed<'_>,
    error: Option<&'static str>,
    truncated: bool,
    arrival: &Arrival<'_>,
) -> Event {
    let text = |b: &[u8]| text(b).into_owned();
    let source = Value::String(source.to_owned());
    let severity = p.pri.map(|pri| pri & 7);
    let mut fields = Map::with_capacity(10);
    fields.insert("message".into(), Value::String(text(p.message)));
    let host = match p.hostname {
        Some(h) => text(h),
        None => arrival.origin.peer_ip.clone(),
    };
    fields.insert("host".into(), Value::String(host));
    for (name, value) in [("app", p.app), ("procid", p.procid), ("msgid", p.msgid)] {
        if let Some(value) = value {
            fields.insert(name.into(), Value::String(text(value)));
        }
    }
    if let Some(s) = severity {
        fields.insert(
            "level".into(),
            Value::String(SEVERITIES[usize::from(s)].into()),
        );
    }
    fields.insert(ID_FIELD.into(), Value::String(new_id()));
    let time_ms = p.time_ms.unwrap_or(arrival.now_ms);
    fields.insert(
        TS_FIELD.into(),
        Value::String(sediment_core::event::format_time_ms(time_ms)),
    );

    let mut syslog = Map::with_capacity(6);
    if let Some(pri) = p.pri {
        let facility = FACILITIES[usize::from(pri >> 3)];
        syslog.insert("facility".into(), Value::String(facility.into()));
        syslog.insert("severity".into(), Value::from(pri & 7));
    }
    if let Some(version) = p.version {
        syslog.insert("version".into(), Value::from(version));
    }
    if !p.structured_data.is_empty() {
        syslog.insert("structured_data".into(), structured_data(p));
    }
    syslog.insert("peer".into(), Value::String(arrival.origin.peer_ip.clone()));
    if let Some(reason) = error {
        syslog.insert("parse_error".into(), Value::String(reason.into()));
    }
    if truncated {
        syslog.insert("truncated".into(), Value::Bool(true));
    }
    let mut meta = Map::with_capacity(5);
    meta.insert("source".into(), source.clone());
    meta.insert("source_type".into(), Value::String("syslog".into()));
    meta.insert(
        "received_at".into(),
        Value::String(arrival.received_at.to_owned()),
    );
    meta.insert(
        "remote_addr".into(),
        Value::String(arrival.origin.remote_addr.clone()),
    );
    meta.insert("syslog".into(), Value::Object(syslog));
    fields.insert(META_FIELD.into(), Value::Object(meta));
    // `_id` and `_meta` are sediment's own here (built above, never from the
    // sender), so stamping is told to keep them; `_ts` is rewritten and an
    // implausible header time (before 1971, a device without a clock) becomes
    // the receive time, like any other source's.
    let stamp = Stamp {
        timestamp_fields: &[],
        now_ms: arrival.now_ms,
        meta: &Value::Null,
        trust_meta: true,
    };
    Event::stamp_with(fields, &stamp, &mut Replaced::default())
}
