//! The tar walker fuzz target's body on mutated layers (plain, gzip, zstd), in a plain loop.
//! Long run: `RCROSS_FUZZ_ITERS=500000 cargo test --release --test verify_fuzz_loop`.

mod common;
#[path = "common/mutate.rs"]
mod mutate;
mod prereq;

use common::*;
use std::io::Write;

fn layer(elf: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], t: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(t);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("bin/", b"", tar::EntryType::Directory);
    add("bin/app", elf, tar::EntryType::Regular);
    add("usr/.wh..wh..opq", b"", tar::EntryType::Regular);
    add("bin/.wh.old", b"", tar::EntryType::Regular);
    add(
        &format!("opt/{}/x", "long".repeat(40)),
        b"text",
        tar::EntryType::Regular,
    );
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "bin/alias", "bin/app").unwrap();
    b.into_inner().unwrap()
}

#[test]
fn tar_walker_survives_mutated_layers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = compile(ARMHF, &["-s"], dir.path(), "app") else {
        return;
    };
    let elf = std::fs::read(p).unwrap();
    let plain = layer(&elf[..elf.len().min(4096)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 1).unwrap();
    mutate::run_loop("tar_walk", &[plain, gz, zst], 3_000, rcross::walk::fuzz_one);
}
