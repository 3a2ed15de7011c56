#![no_main]
//! The tar walker (with gzip/zstd sniffing) and the whiteout-aware layer merge on arbitrary bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rcross::walk::fuzz_one(data);
});
