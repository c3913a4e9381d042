//! `RuleSet::first_match` over 100,000 events built from the real LogHub
//! samples and shaped like the pipeline's (see `support`): with 1, 10 and
//! 100 rules of mixed kinds, with the ten rules of `scripts/bench`, and a
//! single `Query::matches` for comparison.
//!
//! Run: `cargo bench -p sediment-query -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sediment_query::{Query, RuleSet};
use serde_json::{Map, Value};

mod support;

/// Benchmarks `set` over `events` as `group/id`.
fn bench_set(
    c: &mut Criterion,
    group: &str,
    id: &str,
    set: &RuleSet,
    events: &[Map<String, Value>],
) {
    let matched = events
        .iter()
        .filter(|e| set.first_match(e).is_some())
        .count();
    println!(
        "{group}/{id}: {matched} of {} events match a rule",
        events.len()
    );
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_with_input(BenchmarkId::from_parameter(id), set, |b, set| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| set.first_match(black_box(e)).is_some())
                .count()
        })
    });
    group.finish();
}

fn first_match(c: &mut Criterion) {
    let events = support::events();
    let rules = support::rules();
    for count in [1, 10, 100] {
        let set = RuleSet::new(rules[..count].to_vec());
        bench_set(c, "ruleset_first_match", &count.to_string(), &set, &events);
    }

    let pipeline = RuleSet::new(support::pipeline_rules());
    let pipeline_events = support::pipeline_events();
    bench_set(c, "pipeline_rules", "10", &pipeline, &pipeline_events);

    let mut group = c.benchmark_group("query_matches");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    let query = Query::parse("level:error AND NOT app:apache OR \"connection refused\"")
        .expect("valid query");
    group.bench_function("one_query", |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| query.matches(black_box(e)))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, first_match);
criterion_main!(benches);
