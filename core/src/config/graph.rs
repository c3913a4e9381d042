//! Topology checks: inputs exist, no cycles, nothing dangling.

use std::collections::{HashMap, HashSet};

use super::error::{suggestion, ConfigError};
use super::join;
use crate::component::ComponentKind;

/// A component's place in the topology, known even when its options are invalid.
#[derive(Debug)]
pub(super) struct Node {
    pub kind: ComponentKind,
    pub id: String,
    pub inputs: Vec<String>,
}

/// Checks every component's inputs; pushes errors and returns warnings.
pub(super) fn check(
    components: &[Node],
    ids: &HashMap<String, ComponentKind>,
    errors: &mut Vec<ConfigError>,
) -> Vec<ConfigError> {
    let upstream: Vec<&str> = ids
        .iter()
        .filter(|(_, k)| **k != ComponentKind::Sink)
        .map(|(id, _)| id.as_str())
        .collect();
    let mut consumed = HashSet::new();
    for c in components {
        let path = join(c.kind.section(), &c.id);
        for (i, input) in c.inputs.iter().enumerate() {
            let at = format!("{path}.inputs[{i}]");
            match ids.get(input) {
                Some(ComponentKind::Sink) => errors.push(ConfigError::new(
                    at,
                    format!("`{input}` is a sink; sinks cannot be inputs"),
                )),
                Some(_) if input == &c.id => errors.push(ConfigError::new(
                    at,
                    format!("`{input}` cannot read from itself"),
                )),
                Some(_) => {
                    consumed.insert(input.as_str());
                }
                None => errors.push(ConfigError::new(
                    at,
                    format!(
                        "unknown input `{input}`{}",
                        suggestion(input, upstream.iter().copied())
                    ),
                )),
            }
        }
    }
    if let Some(cycle) = find_cycle(components) {
        errors.push(ConfigError::new(
            join("transforms", &cycle[0]),
            format!("the transforms form a cycle: {}", cycle.join(" -> ")),
        ));
    }
    components
        .iter()
        .filter(|c| c.kind != ComponentKind::Sink && !consumed.contains(c.id.as_str()))
        .map(|c| {
            ConfigError::new(
                join(c.kind.section(), &c.id),
                format!(
                    "this {} feeds nothing; no component lists it in `inputs`",
                    c.kind.as_str()
                ),
            )
        })
        .collect()
}

/// A cycle among transforms, as ids with the first repeated at the end.
fn find_cycle(components: &[Node]) -> Option<Vec<String>> {
    let inputs: HashMap<&str, &[String]> = components
        .iter()
        .filter(|c| c.kind == ComponentKind::Transform)
        .map(|c| (c.id.as_str(), c.inputs.as_slice()))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        id: &'a str,
        inputs: &HashMap<&'a str, &'a [String]>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(id) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(id.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(id, Mark::Visiting);
        stack.push(id);
        for input in inputs.get(id).copied().unwrap_or_default() {
            if inputs.contains_key(input.as_str()) {
                if let Some(cycle) = visit(input, inputs, marks, stack) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    let mut ids: Vec<&str> = inputs.keys().copied().collect();
    ids.sort_unstable();
    ids.into_iter()
        .find_map(|id| visit(id, &inputs, &mut marks, &mut Vec::new()))
}
