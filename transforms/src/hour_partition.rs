//! `hour_partition`: files each event under the UTC hour of its `_ts` and marks
//! it late when it arrives more than `late_after` after that hour ended.

use sediment_core::clock::SharedClock;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Transform, Validated, ValidatedTransform,
};
use sediment_core::config::{parse_typed, ConfigDuration, ConfigError};
use sediment_core::{Event, Partition};
use serde::Deserialize;

/// `type: hour_partition` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HourPartitionOptions {
    /// Grace after an hour ends before its primary object is written; later
    /// arrivals are late and go to `.N` parts.
    #[serde(default = "default_late_after")]
    late_after: ConfigDuration,
}

fn default_late_after() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(600))
}

#[derive(Debug)]
struct ValidatedHourPartition {
    late_after_secs: i64,
}

/// Registry entry for `type: hour_partition`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Transform,
        type_name: "hour_partition",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let options: HourPartitionOptions = parse_typed(&cx.path, value)?;
    Ok(Validated::Transform(Box::new(ValidatedHourPartition {
        late_after_secs: options.late_after.get().as_secs() as i64,
    })))
}

impl ValidatedTransform for ValidatedHourPartition {
    fn build(self: Box<Self>, cx: &BuildContext) -> Box<dyn Transform> {
        Box::new(HourPartition {
            late_after_secs: self.late_after_secs,
            clock: cx.clock.clone(),
        })
    }
}

/// The running transform.
#[derive(Debug)]
pub struct HourPartition {
    late_after_secs: i64,
    clock: SharedClock,
}

impl HourPartition {
    /// A partitioner with `late_after` in seconds, reading time from `clock`.
    pub fn new(late_after_secs: i64, clock: SharedClock) -> HourPartition {
        HourPartition {
            late_after_secs,
            clock,
        }
    }
}

impl Transform for HourPartition {
    fn transform(&mut self, events: &mut Vec<Event>) {
        let now = self.clock.now_ms().div_euclid(1000);
        for event in events.iter_mut() {
            let hour_start = Partition::hour_of(event.time_ms);
            let close_at = hour_start + Partition::HOUR_SECS + self.late_after_secs;
            event.partition = Some(Partition {
                hour_start,
                close_at,
                late: now > close_at,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sediment_core::clock::ManualClock;
    use serde_json::json;

    const HOUR_MS: i64 = 1_763_780_400_000; // 2025-11-22T03:00:00Z

    fn event(time_ms: i64) -> Event {
        Event::stamp(
            json!({"m": 1}).as_object().unwrap().clone(),
            &[],
            time_ms,
            &json!({}),
        )
    }

    #[test]
    fn hour_boundaries_and_late_marking_follow_the_clock() {
        let clock = ManualClock::new(HOUR_MS + 3_600_000);
        let mut t = HourPartition::new(600, clock.clone());
        let mut events = vec![
            event(HOUR_MS - 1),
            event(HOUR_MS),
            event(HOUR_MS + 3_599_999),
            event(HOUR_MS + 3_600_000),
        ];
        t.transform(&mut events);
        let hours: Vec<i64> = events
            .iter()
            .map(|e| e.partition.unwrap().hour_start)
            .collect();
        assert_eq!(
            hours,
            vec![
                HOUR_MS / 1000 - 3600,
                HOUR_MS / 1000,
                HOUR_MS / 1000,
                HOUR_MS / 1000 + 3600
            ]
        );
        assert!(
            events[0].partition.unwrap().late,
            "02:00 closed at 03:10; it is 04:00"
        );
        assert!(!events[1].partition.unwrap().late, "03:00 closes at 04:10");

        clock.set(HOUR_MS + 3_600_000 + 600_000);
        let mut again = vec![event(HOUR_MS)];
        t.transform(&mut again);
        assert!(
            !again[0].partition.unwrap().late,
            "exactly late_after after the hour is still on time"
        );

        clock.advance(1000);
        t.transform(&mut again);
        assert!(again[0].partition.unwrap().late, "one second more is late");
        assert_eq!(
            again[0].partition.unwrap().close_at,
            HOUR_MS / 1000 + 3600 + 600
        );
    }
}
