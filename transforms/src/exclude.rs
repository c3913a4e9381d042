//! `exclude`: drops the events that match any enabled rule.
//!
//! Rules are queries in sediment's query language (see `docs/queries.md`), compiled
//! once into one [`RuleSet`]. Each dropped event is counted once, under the first
//! rule that matched, in `sediment_component_discarded_events_total{reason="excluded",rule}`.
//!
//! Events are JSON text (see `sediment_core::event`) and are matched without
//! building their map: the line is written into a scratch buffer, and only the
//! top-level values the rules look at ([`RuleSet::top_level_keys`]) are
//! parsed from it, into values reused from event to event.

use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Transform, Validated, ValidatedTransform,
};
use sediment_core::config::{parse_typed, ConfigError};
use sediment_core::event::{key_is, scan, ID_FIELD, META_FIELD, TS_FIELD};
use sediment_core::Event;
use sediment_query::{Fields, Query, RuleSet};
use serde::Deserialize;
use serde_json::Value;

/// `type: exclude` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcludeOptions {
    /// The rules, tried in order.
    rules: Vec<RuleOptions>,
}

/// One exclusion rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleOptions {
    /// Names the rule in metrics and errors.
    name: String,
    /// Events matching this query are dropped.
    query: String,
    /// A disabled rule is kept in the file but drops nothing.
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug)]
struct ValidatedExclude {
    rules: Vec<(String, Query)>,
}

/// Registry entry for `type: exclude`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Transform,
        type_name: "exclude",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let options: ExcludeOptions = parse_typed(&cx.path, value)?;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut names: Vec<String> = Vec::new();
    if options.rules.is_empty() {
        errors.push(ConfigError::new(
            format!("{}.rules", cx.path),
            "needs at least one rule",
        ));
    }
    for (i, rule) in options.rules.into_iter().enumerate() {
        let at = format!("{}.rules[{i}]", cx.path);
        if rule.name.trim().is_empty() {
            errors.push(ConfigError::new(format!("{at}.name"), "must not be empty"));
        } else if names.contains(&rule.name) {
            errors.push(ConfigError::new(
                format!("{at}.name"),
                format!(
                    "`{}` names another rule too; rule names must be unique",
                    rule.name
                ),
            ));
        }
        // Disabled rules are still checked, so enabling one later cannot break the file.
        match Query::parse(&rule.query) {
            Ok(query) if rule.enabled => rules.push((rule.name.clone(), query)),
            Ok(_) => {}
            Err(e) => errors.push(ConfigError::new(format!("{at}.query"), e.to_string())),
        }
        names.push(rule.name);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Validated::Transform(Box::new(ValidatedExclude { rules })))
}

impl ValidatedTransform for ValidatedExclude {
    fn build(self: Box<Self>, cx: &BuildContext) -> Box<dyn Transform> {
        let counters = self
            .rules
            .iter()
            .map(|(name, _)| cx.metrics.discarded("excluded", name))
            .collect();
        let rules = RuleSet::new(self.rules);
        let lookup = Lookup::new(rules.top_level_keys().len());
        Box::new(Exclude {
            rules,
            counters,
            counts: Vec::new(),
            lookup,
        })
    }
}

/// The running transform.
pub struct Exclude {
    rules: RuleSet,
    counters: Vec<prometheus::IntCounter>,
    /// Per-rule drops of the current batch (kept to avoid an allocation per batch).
    counts: Vec<u64>,
    /// Scratch for events kept as text.
    lookup: Lookup,
}

/// The rules' top-level values of one event kept as text, parsed from its
/// line; the buffers are reused from event to event.
struct Lookup {
    line: Vec<u8>,
    /// By index in [`RuleSet::top_level_keys`].
    values: Vec<Value>,
    present: Vec<bool>,
}

impl Lookup {
    fn new(keys: usize) -> Lookup {
        Lookup {
            line: Vec::new(),
            values: vec![Value::Null; keys],
            present: vec![false; keys],
        }
    }

    /// Parses the values of `keys` out of `event`'s line: out of its own
    /// text when no key is a reserved field (the other members are the
    /// same), else out of the written line.
    fn fill(&mut self, event: &Event, keys: &[String], reserved: bool) {
        let text = if reserved {
            self.line.clear();
            event.write_json(&mut self.line);
            &self.line[..]
        } else {
            event.text()
        };
        self.present.fill(false);
        for (key, value) in scan::members(text) {
            let Some(i) = keys.iter().position(|k| key_is(key, k)) else {
                continue;
            };
            self.present[i] = true;
            let slot = &mut self.values[i];
            match (value.first(), &mut *slot) {
                (Some(b'"'), Value::String(s)) if !value.contains(&b'\\') => {
                    // Valid UTF-8: the line is.
                    s.clear();
                    s.push_str(std::str::from_utf8(&value[1..value.len() - 1]).unwrap_or(""));
                }
                _ => *slot = serde_json::from_slice(value).unwrap_or(Value::Null),
            }
        }
    }
}

/// [`Fields`] over a filled [`Lookup`].
struct Found<'a> {
    keys: &'a [String],
    lookup: &'a Lookup,
}

impl Fields for Found<'_> {
    fn field(&self, key: &str) -> Option<&Value> {
        let i = self
            .keys
            .iter()
            .position(|k| std::ptr::eq(k.as_str(), key))
            .or_else(|| self.keys.iter().position(|k| k == key))?;
        self.lookup.present[i].then(|| &self.lookup.values[i])
    }
}

impl Transform for Exclude {
    fn transform(&mut self, events: &mut Vec<Event>) {
        self.counts.clear();
        self.counts.resize(self.counters.len(), 0);
        let (rules, counts, lookup) = (&self.rules, &mut self.counts, &mut self.lookup);
        let keys = rules.top_level_keys();
        let reserved = keys
            .iter()
            .any(|k| matches!(k.as_str(), ID_FIELD | TS_FIELD | META_FIELD));
        events.retain(|event| {
            lookup.fill(event, keys, reserved);
            match rules.first_match(&Found { keys, lookup }) {
                Some(rule) => {
                    counts[rule] += 1;
                    false
                }
                None => true,
            }
        });
        for (counter, n) in self.counters.iter().zip(&self.counts) {
            if *n > 0 {
                counter.inc_by(*n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sediment_core::event::{Replaced, Scanner, Stamp};
    use sediment_core::Bytes;
    use serde_json::json;

    /// The benchmark's rules (scripts/bench, EXCLUDE=1).
    const RULES: [&str; 10] = [
        r#"app:healthcheck OR "GET /health""#,
        "level:debug AND app:spark",
        r#"app:openssh AND "connection closed by""#,
        r#"app:zookeeper AND level:info AND "NIOServerCnxn""#,
        "user_agent:*bot*",
        "status:>=500",
        "app:hdfs AND /.*blk_-?[0-9]+ terminating.*/",
        "app:android AND (WifiService OR WifiStateMachine)",
        "app:(healthapp OR probe)",
        "_exists_:kubernetes.namespace AND NOT kubernetes.namespace:prod",
    ];

    fn exclude() -> Exclude {
        let rules = RuleSet::new(
            RULES
                .iter()
                .enumerate()
                .map(|(i, q)| (i.to_string(), Query::parse(q).unwrap()))
                .collect(),
        );
        Exclude {
            lookup: Lookup::new(rules.top_level_keys().len()),
            counters: (0..rules.len())
                .map(|i| prometheus::IntCounter::new(format!("c{i}"), "test").unwrap())
                .collect(),
            rules,
            counts: Vec::new(),
        }
    }

    #[test]
    fn events_are_matched_as_their_maps_are() {
        let texts = [
            r#"{"app":"healthcheck","message":"x"}"#,
            r#"{"app":"web","message":"GET /health 200"}"#,
            r#"{"app":"spark","level":"DEBUG","message":"m"}"#,
            r#"{"app":"spark","level":"info","message":"m"}"#,
            r#"{"app":"openssh","message":"Connection closed by 1.2.3.4"}"#,
            r#"{"app":"zookeeper","level":"INFO","message":"NIOServerCnxn: x"}"#,
            r#"{"user_agent":"Googlebot/2.1","message":"m"}"#,
            r#"{"status":503,"message":"m"}"#,
            r#"{"status":"404","message":"m"}"#,
            r#"{"app":"hdfs","message":"blk_-42 terminating now"}"#,
            r#"{"app":"android","message":"WifiStateMachine: up"}"#,
            r#"{"app":"probe","message":"m"}"#,
            r#"{"kubernetes":{"namespace":"dev"},"message":"m"}"#,
            r#"{"kubernetes":{"namespace":"prod"},"message":"m"}"#,
            r#"{"message":"nothing to see","level":"warn","app":"x\"y"}"#,
            r#"{"line":"GET /health","app":["a","healthapp"]}"#,
        ];
        let meta = json!({"source": "in"});
        let meta_text = Bytes::from(serde_json::to_vec(&meta).unwrap());
        let stamp = Stamp {
            timestamp_fields: &[],
            now_ms: 1_764_000_000_000,
            meta: &meta,
            trust_meta: false,
        };
        let mut scanner = Scanner::default();
        let mut events = Vec::new();
        for text in texts {
            let e = Event::stamp_json(
                Bytes::from(text),
                &stamp,
                &meta_text,
                &mut scanner,
                &mut Replaced::default(),
            )
            .unwrap_or_else(|| panic!("{text} is canonical"));
            events.push(e);
        }
        let mut x = exclude();
        let by_map: Vec<String> = events
            .iter()
            .filter(|e| x.rules.first_match(&*e.fields()).is_none())
            .map(|e| e.fields()["_id"].to_string())
            .collect();
        x.transform(&mut events);
        let kept: Vec<String> = events
            .iter()
            .map(|e| e.fields()["_id"].to_string())
            .collect();
        assert_eq!(kept, by_map, "the lazy accessor decides as the map does");
        assert_eq!(kept.len(), 4, "{kept:?}");
    }

    #[test]
    fn rules_on_reserved_fields_read_the_written_line() {
        let rules = RuleSet::new(vec![
            (
                "meta".into(),
                Query::parse("_meta.source:in AND level:x").unwrap(),
            ),
            ("ts".into(), Query::parse("_ts:2025*").unwrap()),
        ]);
        let mut x = Exclude {
            lookup: Lookup::new(rules.top_level_keys().len()),
            counters: (0..2)
                .map(|i| prometheus::IntCounter::new(format!("r{i}"), "test").unwrap())
                .collect(),
            rules,
            counts: Vec::new(),
        };
        let meta = json!({"source": "in"});
        let meta_text = Bytes::from(serde_json::to_vec(&meta).unwrap());
        let stamp = Stamp {
            timestamp_fields: &[],
            now_ms: 1_700_000_000_000,
            meta: &meta,
            trust_meta: false,
        };
        let mut events: Vec<Event> = [
            r#"{"level":"x","_meta":{"source":"forged"}}"#,
            r#"{"level":"y","_ts":"2025-01-01T00:00:00Z"}"#,
            r#"{"level":"y","_ts":"junk"}"#,
        ]
        .into_iter()
        .map(|t| {
            Event::stamp_json(
                Bytes::from(t),
                &stamp,
                &meta_text,
                &mut Scanner::default(),
                &mut Replaced::default(),
            )
            .unwrap()
        })
        .collect();
        x.transform(&mut events);
        assert_eq!(
            events.len(),
            1,
            "sediment's _meta and the normalised _ts are matched"
        );
        assert_eq!(events[0].fields()["_ts"], "2023-11-14T22:13:20.000Z");
    }
}
