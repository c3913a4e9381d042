//! Allocations per event on the HTTP path (parse, stamp, batch), counted by
//! a counting allocator: the same objects as canonical NDJSON lines, a JSON
//! array and a Mezmo body (the text path), and as a pretty-printed JSON
//! array and Mezmo body (not in canonical form: the map path).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use serde_json::json;

use super::budget::MemoryBudget;
use super::chunks::{prepare, Prepared, Request};
use super::decode::Format;

/// The system allocator, counting this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + bytes as u64));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Few enough for the map path to keep them in one batch too.
const EVENTS: usize = 500;

/// Allocations and bytes allocated per event to prepare `body`.
fn per_event(body: Vec<u8>, format: Format) -> (f64, f64) {
    let budget = MemoryBudget::new(64 << 20);
    let mut reservation = budget.reserve();
    let request = Request {
        body: Bytes::from(body),
        encoding: None,
        format,
        max_body_size: 64 << 20,
        timestamp_fields: ["timestamp", "@timestamp", "time", "ts"]
            .map(String::from)
            .to_vec(),
        meta: json!({"source": "http_in", "source_type": "http", "remote_addr": "127.0.0.1:40000"}),
        trust_meta: false,
        now_ms: 1_764_000_000_000,
        max_hours: 48,
        max_events: 100_000,
    };
    let (n0, b0) = (ALLOCATIONS.get(), BYTES.get());
    let prepared = prepare(request, &mut reservation).expect("a valid body");
    let (n1, b1) = (ALLOCATIONS.get(), BYTES.get());
    let Prepared::Whole(events, _) = prepared else {
        panic!("one batch");
    };
    assert_eq!(events.len(), EVENTS);
    (
        (n1 - n0) as f64 / EVENTS as f64,
        (b1 - b0) as f64 / EVENTS as f64,
    )
}

#[test]
fn canonical_lines_elements_and_plain_text_cost_no_allocation_per_event() {
    let objects: Vec<_> = (0..EVENTS)
        .map(|i| {
            let level = ["INFO", "WARN", "ERROR", "DEBUG"][i % 4];
            json!({
                "timestamp": format!("2025-11-24T16:{:02}:{:02}+00:00", i / 60 % 60, i % 60),
                "app": "openssh",
                "level": level,
                "message": format!("Dec 10 06:55:46 LabSZ sshd[{i}]: Received disconnect from 173.234.31.186: 11: Bye Bye [preauth]"),
            })
        })
        .collect();
    let mut ndjson = Vec::new();
    for o in &objects {
        serde_json::to_writer(&mut ndjson, o).unwrap();
        ndjson.push(b'\n');
    }
    let array = serde_json::to_vec(&objects).unwrap();
    let pretty_array = serde_json::to_vec_pretty(&objects).unwrap();
    let lines: Vec<_> = objects
        .iter()
        .map(|o| {
            let mut line = o.clone();
            let message = line.as_object_mut().unwrap().remove("message").unwrap();
            let mut mezmo = serde_json::Map::new();
            mezmo.insert("line".into(), message);
            mezmo.extend(line.as_object().unwrap().clone());
            mezmo
        })
        .collect();
    let mezmo = serde_json::to_vec(&json!({ "lines": lines })).unwrap();
    let pretty_mezmo = serde_json::to_vec_pretty(&json!({ "lines": lines })).unwrap();
    let plain: Vec<u8> = objects
        .iter()
        .flat_map(|o| format!("{}\n", o["message"].as_str().unwrap()).into_bytes())
        .collect();
    let (text_n, text_b) = per_event(ndjson, Format::Ndjson);
    let (array_n, array_b) = per_event(array, Format::Json);
    let (mezmo_n, mezmo_b) = per_event(mezmo, Format::Mezmo);
    let (map_n, map_b) = per_event(pretty_array, Format::Json);
    let (map_mezmo_n, map_mezmo_b) = per_event(pretty_mezmo, Format::Mezmo);
    let (plain_n, plain_b) = per_event(plain, Format::Text);
    eprintln!(
        "allocations per event: text path: NDJSON {text_n:.2} ({text_b:.0} bytes), JSON array {array_n:.2} ({array_b:.0} bytes), Mezmo {mezmo_n:.2} ({mezmo_b:.0} bytes), plain text {plain_n:.2} ({plain_b:.0} bytes); map path (pretty-printed): JSON array {map_n:.2} ({map_b:.0} bytes), Mezmo {map_mezmo_n:.2} ({map_mezmo_b:.0} bytes); an event header is {} bytes",
        std::mem::size_of::<sediment_core::Event>()
    );
    assert!(map_n > 10.0, "the map path allocates per field: {map_n}");
    assert!(
        map_mezmo_n > 10.0,
        "the map path allocates per field: {map_mezmo_n}"
    );
    // The batch's Vec grows by doubling, the meta is written once: well under one per event.
    assert!(text_n < 0.1, "the text path allocates per event: {text_n}");
    assert!(array_n < 0.1, "JSON arrays allocate per event: {array_n}");
    assert!(mezmo_n < 0.1, "Mezmo bodies allocate per event: {mezmo_n}");
    assert!(plain_n < 0.1, "plain text allocates per event: {plain_n}");
    // The event headers (one Vec sized from the line count) and nothing else.
    let header = std::mem::size_of::<sediment_core::Event>() as f64;
    assert!(
        text_b < header + 8.0,
        "{text_b} bytes per event, {header} a header"
    );
    // An array's length is not counted first: its Vec grows by doubling,
    // which allocates about twice the headers in all (4 + 8 + … + 512
    // headers for 500 events).
    for (what, bytes) in [("JSON array", array_b), ("Mezmo", mezmo_b)] {
        assert!(
            bytes < 2.5 * header,
            "{what}: {bytes} bytes per event, {header} a header"
        );
    }
}
