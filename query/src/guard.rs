//! Rule guards: a cheap necessary condition per rule, checked before the
//! rule's tree is walked.

use crate::plan::Node;

/// A necessary condition of a rule: it can only match when the string value
/// of top-level `key` equals one of `entries` of the key's equality table,
/// or when that value is not a string (then the guard says nothing). An
/// absent value fails the guard. Checking it skips most rules of the form
/// `app:x AND …` without walking them.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) key: usize,
    pub(crate) entries: Box<[u32]>,
}

/// A guard that holds whenever this node does.
pub(crate) fn guard(node: &Node) -> Option<Guard> {
    match node {
        Node::Equals { key, entry, .. } => Some(Guard {
            key: *key,
            entries: Box::new([*entry]),
        }),
        // Any child's guard holds when all children do.
        Node::And(children) => children.iter().find_map(guard),
        // One child holds, so the union of their guards, if on one key.
        Node::Or(children) => {
            let mut guards = children.iter().map(guard);
            let first = guards.next()??;
            let mut entries = first.entries.into_vec();
            for guard in guards {
                let guard = guard.filter(|g| g.key == first.key)?;
                entries.extend_from_slice(&guard.entries);
            }
            entries.sort_unstable();
            entries.dedup();
            Some(Guard {
                key: first.key,
                entries: entries.into_boxed_slice(),
            })
        }
        Node::Not(_) | Node::Literal(_) | Node::Leaf(_) | Node::SharedLeaf(_) => None,
    }
}
