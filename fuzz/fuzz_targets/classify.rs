#![no_main]
//! The ELF classifier and the compatibility rules on arbitrary bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rcross::elf::fuzz_one(data);
});
