//! A driver for counting the matcher's instructions with callgrind, which
//! is repeatable on a busy machine where timings are not:
//!
//! ```text
//! cargo build --release -p sediment-query --example matcher_profile
//! valgrind --tool=callgrind --toggle-collect='*matcher_profile::run*' \
//!     target/release/examples/matcher_profile pipeline 20000
//! ```
//!
//! The first argument picks the rules: `pipeline` (the ten of
//! `scripts/bench`) or a count of the bench's mixed rules (`1`, `10`,
//! `100`); the second how many events to match (after one warm-up pass
//! over them, which is not collected). Instructions per event are the
//! collected total divided by that number.

use std::hint::black_box;

use sediment_query::RuleSet;
use serde_json::{Map, Value};

#[path = "../benches/support/mod.rs"]
mod support;

#[inline(never)]
fn run(set: &RuleSet, events: &[Map<String, Value>]) -> usize {
    events
        .iter()
        .filter(|e| set.first_match(black_box(e)).is_some())
        .count()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "pipeline".into());
    let count: usize = args
        .next()
        .map_or(20_000, |n| n.parse().expect("event count"));
    let (set, mut events) = if which == "pipeline" {
        (
            RuleSet::new(support::pipeline_rules()),
            support::pipeline_events(),
        )
    } else {
        let n: usize = which.parse().expect("`pipeline` or a rule count");
        (
            RuleSet::new(support::rules()[..n].to_vec()),
            support::events(),
        )
    };
    events.truncate(count);
    warm(&set, &events);
    let matched = run(&set, &events);
    println!("{which}: {matched} of {} events match a rule", events.len());
}

/// The first pass, which grows the scratch buffers and regex caches.
#[inline(never)]
fn warm(set: &RuleSet, events: &[Map<String, Value>]) {
    black_box(run_uncollected(set, events));
}

fn run_uncollected(set: &RuleSet, events: &[Map<String, Value>]) -> usize {
    events
        .iter()
        .filter(|e| set.first_match(e).is_some())
        .count()
}
