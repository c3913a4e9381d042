//! Matching must not allocate: a counting allocator checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::json;

use super::{event, query};
use crate::RuleSet;

/// The system allocator, counting this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn matching_does_not_allocate_once_warm() {
    let rules = [
        "level:error AND app:web*",
        "\"connection refused\" OR timeout",
        "conn*lost OR /.*disk (full|error).*/",
        "message:/.*blk_[0-9]+ corrupt.*/",
        "status:[500 TO 599] AND NOT _meta.source:test",
        "tags:urgent OR users.name:ann",
        "city:é* AND \"ÉCHEC\"",
        "_exists_:kubernetes.namespace AND code:4??",
        // Enough values on one key for its equality table to be hashed.
        "app:(a0 OR a1 OR a2 OR a3 OR a4 OR a5 OR a6 OR a7 OR a8 OR a9 OR a10 \
         OR a11 OR a12 OR a13 OR a14 OR a15 OR a16 OR évry) AND level:debug",
    ];
    let set = RuleSet::new(
        rules
            .iter()
            .enumerate()
            .map(|(i, text)| (i.to_string(), query(text)))
            .collect(),
    );
    let single = query(rules.join(" OR ").as_str());
    let events: Vec<_> = [
        json!({"message": "GET / 200 connection refused", "level": "ERROR", "app": "web-1"}),
        json!({"message": "Un ÉCHEC de la connexion: disk full", "city": "Évry", "app": "ÉVRY", "status": 503}),
        json!({"line": "blk_42 corrupt", "tags": ["a", "URGENT"], "users": [{"name": "Ann"}]}),
        json!({"message": 404, "code": 404, "kubernetes": {"namespace": "prod"}}),
        json!({"message": "x".repeat(5000), "_meta": {"source": "test"}, "status": "550"}),
    ]
    .into_iter()
    .map(event)
    .collect();
    let run = || {
        let hits: usize = events.iter().filter_map(|e| set.first_match(e)).sum();
        hits + events.iter().filter(|e| single.matches(e)).count()
    };
    // The first pass grows the thread's scratch buffers and regex caches.
    let expected = run();
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..10 {
        assert_eq!(run(), expected);
    }
    assert_eq!(
        ALLOCATIONS.with(Cell::get) - before,
        0,
        "allocations while matching"
    );
}
