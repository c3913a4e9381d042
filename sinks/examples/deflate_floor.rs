//! The compression floor of the archive path: libdeflate at a level (6 by
//! default) plus the CRC, on the lines of gzip archive files, 1,000 lines a
//! member as the archive sink writes them per batch, on one core.
//!
//! `cargo run --release -p sediment-sinks --example deflate_floor -- FILE.gz… [LEVEL]`

use std::io::Read;
use std::time::Instant;

use libdeflater::{CompressionLvl, Compressor};

fn main() {
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    let level = match files.last().and_then(|l| l.parse::<i32>().ok()) {
        Some(l) => {
            files.pop();
            l
        }
        None => 6,
    };
    let mut text = Vec::new();
    for f in &files {
        let file = std::fs::File::open(f).expect("an archive file");
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut text)
            .expect("gzip");
    }
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let members: Vec<Vec<u8>> = lines.chunks(1000).map(|c| c.concat()).collect();
    let mut compressor = Compressor::new(CompressionLvl::new(level).expect("a level"));
    let mut out = Vec::new();
    let (mut bytes_out, start) = (0usize, Instant::now());
    for m in &members {
        out.resize(compressor.deflate_compress_bound(m.len()), 0);
        bytes_out += compressor.deflate_compress(m, &mut out).expect("bound");
        let mut crc = crc32fast::Hasher::new();
        crc.update(m);
        std::hint::black_box(crc.finalize());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} lines, {:.0} bytes a line; libdeflate level {level}: {:.0} lines/s on one core ({:.2} µs a line), ratio {:.1}x",
        lines.len(),
        text.len() as f64 / lines.len() as f64,
        lines.len() as f64 / secs,
        secs * 1e6 / lines.len() as f64,
        text.len() as f64 / bytes_out as f64
    );
}
