//! The classifier fuzz target's body on mutated real binaries, in a plain loop (stable Rust).
//! Long run: `RCROSS_FUZZ_ITERS=2000000 cargo test --release --test elf_fuzz_loop`.

mod common;
#[path = "common/mutate.rs"]
mod mutate;
mod prereq;

use common::*;

#[test]
fn classifier_survives_mutated_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    for (c, flags) in [
        (AARCH64, &[][..]),
        (ARMHF, &[][..]),
        (ARMEL, &[][..]),
        (RISCV64, &[][..]),
        (I686, &[][..]),
    ] {
        let name = format!("s{}", seeds.len());
        let Some(p) = compile(c, flags, dir.path(), &name) else {
            return;
        };
        seeds.push(std::fs::read(p).unwrap());
    }
    mutate::run_loop("classify", &seeds, 20_000, rcross::elf::fuzz_one);
}
