//! libdeflate compressors kept per thread, for every sink that compresses
//! whole buffers (archive members, HTTP request bodies).
//!
//! Creating a libdeflate compressor allocates its match-finder tables (a
//! megabyte at the lazy levels), and a fresh allocation of that size is fresh
//! pages for the kernel to clear; compressing on the blocking pool's
//! long-lived threads with one compressor per thread and level costs that once
//! per level.

use std::cell::RefCell;

use libdeflater::{CompressionLvl, Compressor};

/// Levels libdeflate has (0 to 12).
const LEVELS: usize = 13;

/// Runs `f` with this thread's compressor of `level` (0 to 12; higher is clamped).
///
/// One per level: archive members (level 6 by default) and HTTP bodies
/// (level 1) are compressed on the same blocking pool, and a single cached
/// compressor would be rebuilt at every switch.
pub fn with_compressor<T>(level: u32, f: impl FnOnce(&mut Compressor) -> T) -> T {
    thread_local! {
        static COMPRESSORS: RefCell<[Option<Compressor>; LEVELS]> =
            RefCell::new(std::array::from_fn(|_| None));
    }
    let level = level.min(LEVELS as u32 - 1);
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let compressor = compressors[level as usize].get_or_insert_with(|| {
            Compressor::new(CompressionLvl::new(level as i32).expect("levels 0 to 12 are valid"))
        });
        f(compressor)
    })
}

/// `data` as one gzip member at `level`.
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    with_compressor(level, |compressor| {
        let mut out = vec![0; compressor.gzip_compress_bound(data.len())];
        let n = compressor
            .gzip_compress(data, &mut out)
            .expect("the output buffer has the compress bound");
        out.truncate(n);
        out
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn gzip_round_trips_at_every_level_on_one_thread() {
        let data = b"{\"message\":\"hello\"}\n".repeat(1000);
        for level in [1, 6, 9, 1, 6, 12, 13] {
            let body = super::gzip(&data, level);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "level {level}");
        }
    }
}
