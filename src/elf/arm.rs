//! The `.ARM.attributes` section (ARM IHI 0045, "Addenda to the ABI for the Arm Architecture"):
//! only the public "aeabi" file-scope attributes rcross needs.

/// What the build attributes say about the code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Tag_CPU_arch (6).
    pub cpu_arch: Option<u64>,
    /// Tag_CPU_arch_profile (7): b'A', b'R', b'M', b'S' or 0.
    pub profile: Option<u64>,
    /// Tag_ARM_ISA_use (8): 0 means Thumb only.
    pub arm_isa_use: Option<u64>,
    /// Tag_ABI_VFP_args (28): 0 base (soft), 1 VFP (hard), 2 toolchain, 3 compatible with both.
    pub vfp_args: Option<u64>,
}

const TAG_FILE: u64 = 1;
const TAG_CPU_ARCH: u64 = 6;
const TAG_CPU_ARCH_PROFILE: u64 = 7;
const TAG_ARM_ISA_USE: u64 = 8;
const TAG_ABI_VFP_ARGS: u64 = 28;
const TAG_COMPATIBILITY: u64 = 32;

fn uleb(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *data.get(*pos)?;
        *pos += 1;
        if shift < 64 {
            v |= u64::from(b & 0x7f) << shift;
        }
        shift = shift.saturating_add(7);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
}

fn skip_ntbs(data: &[u8], pos: &mut usize) -> Option<()> {
    let rest = data.get(*pos..)?;
    let n = rest.iter().position(|&b| b == 0)?;
    *pos += n + 1;
    Some(())
}

fn u32_at(data: &[u8], pos: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = data.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// Parse the section content. Malformed data yields whatever was read before the damage.
pub fn parse(data: &[u8], big_endian: bool) -> Attributes {
    let mut out = Attributes::default();
    if data.first() != Some(&b'A') {
        return out;
    }
    let mut pos = 1usize;
    while pos < data.len() {
        let Some(len) = u32_at(data, pos, big_endian) else {
            break;
        };
        let len = len as usize;
        if len < 4 {
            break;
        }
        let end = pos.saturating_add(len).min(data.len());
        let sub = &data[pos + 4..end];
        if let Some(n) = sub.iter().position(|&b| b == 0) {
            if &sub[..n] == b"aeabi" {
                parse_vendor(&sub[n + 1..], big_endian, &mut out);
            }
        }
        pos = end;
    }
    out
}

fn parse_vendor(data: &[u8], big_endian: bool, out: &mut Attributes) {
    let mut pos = 0usize;
    while pos < data.len() {
        let start = pos;
        let Some(tag) = uleb(data, &mut pos) else {
            return;
        };
        let Some(size) = u32_at(data, pos, big_endian) else {
            return;
        };
        let size = size as usize;
        if size < 5 {
            return;
        }
        let end = start.saturating_add(size).min(data.len());
        if tag == TAG_FILE {
            parse_attrs(data.get(pos + 4..end).unwrap_or(&[]), out);
        }
        pos = end;
    }
}

fn parse_attrs(data: &[u8], out: &mut Attributes) {
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(tag) = uleb(data, &mut pos) else {
            return;
        };
        // Tags 4, 5 and 67 and odd tags above 32 hold strings, 32 (Tag_compatibility) an
        // integer and a string, every other tag an integer.
        let is_string = tag == 4 || tag == 5 || tag == 67 || (tag > 32 && tag % 2 == 1);
        if tag == TAG_COMPATIBILITY {
            if uleb(data, &mut pos).is_none() || skip_ntbs(data, &mut pos).is_none() {
                return;
            }
            continue;
        }
        if is_string {
            if skip_ntbs(data, &mut pos).is_none() {
                return;
            }
            continue;
        }
        let Some(v) = uleb(data, &mut pos) else {
            return;
        };
        match tag {
            TAG_CPU_ARCH => out.cpu_arch = Some(v),
            TAG_CPU_ARCH_PROFILE => out.profile = Some(v),
            TAG_ARM_ISA_USE => out.arm_isa_use = Some(v),
            TAG_ABI_VFP_ARGS => out.vfp_args = Some(v),
            _ => {}
        }
    }
}

/// Architecture version of a Tag_CPU_arch value, as the OCI variant level it needs (5, 6, 7, 8)
/// and a human name. v6T2 adds Thumb-2, which ARMv6 CPUs in Linux devices (ARM1176) lack, so it
/// counts as 7.
pub fn arch_level(cpu_arch: u64) -> Option<(u8, &'static str)> {
    Some(match cpu_arch {
        0 => (5, "pre-v4"),
        1 => (5, "v4"),
        2 => (5, "v4T"),
        3 => (5, "v5T"),
        4 => (5, "v5TE"),
        5 => (5, "v5TEJ"),
        6 => (6, "v6"),
        7 => (6, "v6KZ"),
        8 => (7, "v6T2"),
        9 => (6, "v6K"),
        10 => (7, "v7"),
        11 => (6, "v6-M"),
        12 => (6, "v6S-M"),
        13 => (7, "v7E-M"),
        14 => (8, "v8-A"),
        15 => (8, "v8-R"),
        16 => (8, "v8-M.baseline"),
        17 => (8, "v8-M.mainline"),
        18 => (8, "v8.1-A"),
        19 => (8, "v8.2-A"),
        20 => (8, "v8.3-A"),
        21 => (8, "v8.1-M.mainline"),
        22 => (8, "v9-A"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(attrs: &[u8]) -> Vec<u8> {
        let mut file = vec![TAG_FILE as u8];
        file.extend_from_slice(&((attrs.len() + 5) as u32).to_le_bytes());
        file.extend_from_slice(attrs);
        let mut sub = Vec::new();
        sub.extend_from_slice(&((file.len() + 4 + 6) as u32).to_le_bytes());
        sub.extend_from_slice(b"aeabi\0");
        sub.extend_from_slice(&file);
        let mut s = vec![b'A'];
        s.extend_from_slice(&sub);
        s
    }

    #[test]
    fn reads_cpu_arch_and_vfp_args() {
        // Tag_CPU_name "6KZ", Tag_CPU_arch 7, Tag_ARM_ISA_use 1, Tag_ABI_VFP_args 1,
        // Tag_compatibility 0 "", an unknown string tag 65.
        let s = section(&[
            5, b'6', b'K', b'Z', 0, 6, 7, 8, 1, 28, 1, 32, 0, 0, 65, b'x', 0,
        ]);
        let a = parse(&s, false);
        assert_eq!(a.cpu_arch, Some(7));
        assert_eq!(a.arm_isa_use, Some(1));
        assert_eq!(a.vfp_args, Some(1));
    }

    #[test]
    fn damaged_sections_do_not_panic() {
        let s = section(&[6, 10, 28, 1]);
        for n in 0..s.len() {
            let _ = parse(&s[..n], false);
        }
        assert_eq!(
            parse(&[b'A', 0xff, 0xff, 0xff, 0xff], false),
            Attributes::default()
        );
        assert_eq!(
            parse(&[b'A', 0xff, 0xff, 0xff, 0xff, 0x80, 0x80], true).cpu_arch,
            None
        );
        let mut pos = 0;
        assert_eq!(uleb(&[0xff; 20], &mut pos), None);
    }
}
