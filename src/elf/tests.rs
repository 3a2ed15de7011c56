//! Classifier tests on hand-made ELF images (real compiler output is tested in tests/elf_*.rs).

use super::*;

/// A 32-bit little-endian ARM executable: PT_INTERP, one PT_LOAD covering everything,
/// PT_DYNAMIC with two DT_NEEDED, and an .ARM.attributes section.
fn arm_exe(interp: &str, e_flags: u32, attrs: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 52];
    f[..4].copy_from_slice(MAGIC);
    f[4] = 1;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
    f[18..20].copy_from_slice(&EM_ARM.to_le_bytes());
    f[36..40].copy_from_slice(&e_flags.to_le_bytes());
    f[40..42].copy_from_slice(&52u16.to_le_bytes());
    let phoff = 52u32;
    let phnum = 3u16;
    f[28..32].copy_from_slice(&phoff.to_le_bytes());
    f[42..44].copy_from_slice(&32u16.to_le_bytes());
    f[44..46].copy_from_slice(&phnum.to_le_bytes());
    let interp_off = 52 + 32 * 3;
    let strtab_off = interp_off + interp.len() + 1;
    let strtab = b"\0libc.so.6\0libm.so.6\0";
    let dyn_off = strtab_off + strtab.len();
    let dynamic: Vec<(u32, u32)> = vec![
        (DT_NEEDED as u32, 1),
        (DT_NEEDED as u32, 11),
        (DT_STRTAB as u32, 0x1000 + strtab_off as u32),
        (0, 0),
    ];
    let attr_off = dyn_off + dynamic.len() * 8;
    let shoff = attr_off + attrs.len();
    let total = shoff + 2 * 40;
    let ph = |t: u32, off: usize, va: u32, sz: usize| {
        let mut e = vec![0u8; 32];
        e[0..4].copy_from_slice(&t.to_le_bytes());
        e[4..8].copy_from_slice(&(off as u32).to_le_bytes());
        e[8..12].copy_from_slice(&va.to_le_bytes());
        e[16..20].copy_from_slice(&(sz as u32).to_le_bytes());
        e
    };
    f.extend(ph(PT_INTERP, interp_off, 0, interp.len() + 1));
    f.extend(ph(PT_LOAD, 0, 0x1000, total));
    f.extend(ph(PT_DYNAMIC, dyn_off, 0, dynamic.len() * 8));
    f.extend_from_slice(interp.as_bytes());
    f.push(0);
    f.extend_from_slice(strtab);
    for (t, v) in dynamic {
        f.extend_from_slice(&t.to_le_bytes());
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(attrs);
    // Section headers: null + attributes.
    f[32..36].copy_from_slice(&(shoff as u32).to_le_bytes());
    f[46..48].copy_from_slice(&40u16.to_le_bytes());
    f[48..50].copy_from_slice(&2u16.to_le_bytes());
    f.extend(vec![0u8; 40]);
    let mut sh = vec![0u8; 40];
    sh[4..8].copy_from_slice(&SHT_ARM_ATTRIBUTES.to_le_bytes());
    sh[16..20].copy_from_slice(&(attr_off as u32).to_le_bytes());
    sh[20..24].copy_from_slice(&(attrs.len() as u32).to_le_bytes());
    f.extend(sh);
    assert_eq!(f.len(), total);
    f
}

fn attrs(cpu_arch: u8, vfp_args: u8) -> Vec<u8> {
    let body = [6, cpu_arch, 8, 1, 28, vfp_args];
    let mut file = vec![1u8];
    file.extend_from_slice(&((body.len() + 5) as u32).to_le_bytes());
    file.extend_from_slice(&body);
    let mut s = vec![b'A'];
    s.extend_from_slice(&((file.len() + 4 + 6) as u32).to_le_bytes());
    s.extend_from_slice(b"aeabi\0");
    s.extend_from_slice(&file);
    s
}

fn p(s: &str) -> Platform {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn arm_v7_hard_float_dynamic() {
    let f = arm_exe("/lib/ld-linux-armhf.so.3", 0x0500_0400, &attrs(10, 1));
    let i = classify(&f).unwrap();
    assert_eq!(i.platform, Some(p("linux/arm/v7")));
    assert_eq!(i.float_abi, Some(FloatAbi::Hard));
    assert_eq!(i.arm_eabi, Some(5));
    assert_eq!(i.arm_arch.as_deref(), Some("v7"));
    assert_eq!(i.linkage, Linkage::Dynamic);
    assert_eq!(i.kind, Kind::Executable);
    assert_eq!(i.libc, Some(Libc::Glibc));
    assert_eq!(i.interpreter_matches, Some(true));
    assert_eq!(i.needed, ["libc.so.6", "libm.so.6"]);
    assert!(!i.partial);
    let j = serde_json::to_value(&i).unwrap();
    assert_eq!(j["platform"], "linux/arm/v7");
    assert_eq!(j["class"], 32);
    assert_eq!(j["endian"], "little");
    assert_eq!(j["linkage"], "dynamic");
    assert_eq!(j["float_abi"], "hard");
    assert_eq!(j["interpreter"], "/lib/ld-linux-armhf.so.3");
}

#[test]
fn arm_v6_and_v5_soft_float() {
    let i = classify(&arm_exe(
        "/lib/ld-musl-armhf.so.1",
        0x0500_0400,
        &attrs(7, 1),
    ))
    .unwrap();
    assert_eq!(i.platform, Some(p("linux/arm/v6")));
    assert_eq!(i.libc, Some(Libc::Musl));
    let i = classify(&arm_exe("/lib/ld-linux.so.3", 0x0500_0200, &attrs(4, 0))).unwrap();
    assert_eq!(i.platform, Some(p("linux/arm/v5")));
    assert_eq!(i.float_abi, Some(FloatAbi::Soft));
    assert_eq!(i.interpreter_matches, Some(true));
    // Soft-float code asking for the hard-float loader.
    let i = classify(&arm_exe(
        "/lib/ld-linux-armhf.so.3",
        0x0500_0200,
        &attrs(4, 0),
    ))
    .unwrap();
    assert_eq!(i.interpreter_matches, Some(false));
}

#[test]
fn arm_without_attributes_falls_back_to_float_abi() {
    let i = classify(&arm_exe("/lib/ld-linux-armhf.so.3", 0x0500_0400, &[])).unwrap();
    assert_eq!(i.platform, Some(p("linux/arm/v6")));
    assert_eq!(i.arm_arch, None);
}

#[test]
fn every_prefix_is_an_error_or_a_partial_answer() {
    let f = arm_exe("/lib/ld-linux-armhf.so.3", 0x0500_0400, &attrs(10, 1));
    for n in 0..f.len() {
        match classify(&f[..n]) {
            Ok(i) => assert!(n >= 52 + 96, "classified {n} bytes: {i:?}"),
            Err(ElfError::NotElf) => assert!(n < 4),
            Err(e) => assert!(e.to_string().contains("truncated"), "{n}: {e}"),
        }
    }
}

#[test]
fn hostile_counts_are_refused_without_reading() {
    let mut f = arm_exe("/lib/ld-linux-armhf.so.3", 0x0500_0400, &attrs(10, 1));
    // Program header table claimed far beyond the data.
    f[28..32].copy_from_slice(&0xffff_0000u32.to_le_bytes());
    assert!(matches!(classify(&f), Err(ElfError::Truncated { .. })));
    f[28..32].copy_from_slice(&52u32.to_le_bytes());
    f[42..44].copy_from_slice(&4u16.to_le_bytes());
    assert!(matches!(classify(&f), Err(ElfError::Invalid { .. })));
    // Huge section and attribute sizes are capped, not allocated.
    let mut f = arm_exe("/lib/ld-linux-armhf.so.3", 0x0500_0400, &attrs(10, 1));
    f[48..50].copy_from_slice(&0xffffu16.to_le_bytes());
    let i = classify(&f).unwrap();
    assert!(i.partial);
    // Bad class / byte order bytes.
    let mut g = f.clone();
    g[4] = 9;
    assert!(classify(&g).unwrap_err().to_string().contains("EI_CLASS"));
    let mut g = f;
    g[5] = 0;
    assert!(classify(&g).is_err());
    assert!(matches!(classify(b"#!/bin/sh\n"), Err(ElfError::NotElf)));
}

#[test]
fn machine_names() {
    assert_eq!(machine_name(EM_X86_64), "x86_64");
    assert_eq!(machine_name(2), "sparc");
    assert_eq!(machine_name(0xfff0), "e_machine 65520");
}
