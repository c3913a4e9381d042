//! `exclude`: drops the events that match any enabled rule.
//!
//! Rules are queries in sediment's query language (see `docs/queries.md`), compiled
//! once into one [`RuleSet`]. Each dropped event is counted once, under the first
//! rule that matched, in `sediment_component_discarded_events_total{reason="excluded",rule}`.

use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Transform, Validated, ValidatedTransform,
};
use sediment_core::config::{parse_typed, ConfigError};
use sediment_core::Event;
use sediment_query::{Query, RuleSet};
use serde::Deserialize;

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
        Box::new(Exclude {
            rules: RuleSet::new(self.rules),
            counters,
            counts: Vec::new(),
        })
    }
}

/// The running transform.
pub struct Exclude {
    rules: RuleSet,
    counters: Vec<prometheus::IntCounter>,
    /// Per-rule drops of the current batch (kept to avoid an allocation per batch).
    counts: Vec<u64>,
}

impl Transform for Exclude {
    fn transform(&mut self, events: &mut Vec<Event>) {
        self.counts.clear();
        self.counts.resize(self.counters.len(), 0);
        let (rules, counts) = (&self.rules, &mut self.counts);
        events.retain(|event| match rules.first_match(&event.fields) {
            Some(rule) => {
                counts[rule] += 1;
                false
            }
            None => true,
        });
        for (counter, n) in self.counters.iter().zip(&self.counts) {
            if *n > 0 {
                counter.inc_by(*n);
            }
        }
    }
}
