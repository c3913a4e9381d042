//! Staging-segment recovery on arbitrary bytes: the scan never panics or reads
//! past the file, every span it keeps is a whole intact member, and the
//! repaired copy it writes is clean on a second scan and valid gzip for a
//! standard reader, decoding to the kept members' data.
#![no_main]

#[path = "shared/archive.rs"]
mod archive;

use std::io::{Read, Seek};

use archive::member;
use archive::recovery::{rewrite, scan};
use libfuzzer_sys::fuzz_target;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a repaired segment is valid gzip");
    out
}

fuzz_target!(|data: &[u8]| {
    // Half the runs start from real members the fuzzer then damages, so the
    // interesting paths (resynchronisation, torn tails) are reached quickly.
    let mut bytes = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend(member::encode_head([7; 16]));
        for chunk in data[1..].chunks(37).take(4) {
            bytes.extend(member::encode_data(chunk, 1));
        }
        for (i, b) in data.iter().enumerate().skip(1).step_by(7).take(8) {
            let at = (usize::from(*b) * 31 + i * 97) % bytes.len();
            bytes[at] ^= data[i.saturating_sub(1)] | 1;
        }
    } else {
        bytes.extend_from_slice(data);
    }
    let s = scan(&bytes[..]).unwrap();
    let mut kept = Vec::new();
    for r in &s.data {
        assert!(r.start < r.end && r.end <= bytes.len() as u64);
        kept.extend(gunzip(&bytes[r.start as usize..r.end as usize]));
    }
    let mut file = tempfile_in_memory();
    let len = rewrite(&bytes[..], &s, [9; 16], &mut file).unwrap();
    let mut out = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, len);
    let again = scan(&out[..]).unwrap();
    assert!(again.is_clean(), "the repaired copy is clean: {again:?}");
    assert_eq!(again.data_members, s.data_members);
    assert_eq!(gunzip(&out), kept);
});

/// A file that lives in memory (libFuzzer runs millions of iterations).
fn tempfile_in_memory() -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create returns a fresh descriptor we own, or -1.
    let fd = unsafe { libc_memfd() };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: `fd` is a valid descriptor owned by nobody else.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

unsafe fn libc_memfd() -> i32 {
    extern "C" {
        fn memfd_create(name: *const std::ffi::c_char, flags: u32) -> i32;
    }
    memfd_create(c"fuzz".as_ptr(), 0)
}
