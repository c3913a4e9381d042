//! Several named queries compiled together, for callers that test every
//! event against a list of rules (the `exclude` transform).

use crate::plan::Plan;
use crate::{Fields, Query};

/// Named queries compiled into one plan, tried in order.
///
/// Compared with calling [`Query::matches`] rule by rule, a rule set searches
/// the message text for the literals of *all* rules in one pass and looks up
/// each top-level field once per event, however many rules use it.
#[derive(Debug, Clone)]
pub struct RuleSet {
    names: Vec<String>,
    plan: Plan,
}

impl RuleSet {
    /// Compiles the rules; their order is the order [`RuleSet::first_match`]
    /// tries them in.
    pub fn new(rules: Vec<(String, Query)>) -> RuleSet {
        let plan = Plan::compile(rules.iter().map(|(_, query)| query.ast()));
        RuleSet {
            names: rules.into_iter().map(|(name, _)| name).collect(),
            plan,
        }
    }

    /// The index of the first rule, in order, that matches `event`.
    pub fn first_match<F: Fields + ?Sized>(&self, event: &F) -> Option<usize> {
        self.plan.first_match(event)
    }

    /// The distinct top-level keys the rules may look at (see
    /// [`Query::top_level_keys`]).
    pub fn top_level_keys(&self) -> &[String] {
        &self.plan.keys
    }

    /// The name of the rule at `index` (as returned by
    /// [`RuleSet::first_match`]).
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no rules (then nothing matches).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
