use super::{image_failure, open_image, parse_target, Target};
use crate::cli::ElfArgs;
use crate::elf::{ElfInfo, Linkage};
use crate::exit::{self, Failure};
use crate::walk::{self, contents::Record, FileClass};
use serde::Serialize;

#[derive(Serialize)]
struct Row {
    path: String,
    /// For files read from an image: the platform of the manifest they belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    image_platform: Option<String>,
    #[serde(flatten)]
    info: ElfInfo,
}

fn describe(info: &ElfInfo) -> String {
    let mut parts = vec![
        info.describe(),
        format!(
            "ELF{} {}-endian {}",
            info.class,
            if info.endian == crate::elf::Endian::Big {
                "big"
            } else {
                "little"
            },
            info.machine
        ),
    ];
    parts.push(
        match info.linkage {
            Linkage::Static => "static",
            Linkage::StaticPie => "static-pie",
            Linkage::Dynamic => "dynamic",
            Linkage::None => "not executable",
        }
        .to_string(),
    );
    if let Some(i) = &info.interpreter {
        let libc = info
            .libc
            .map(|l| format!("{l:?}").to_ascii_lowercase())
            .unwrap_or_else(|| "unknown libc".into());
        let mismatch = if info.interpreter_matches == Some(false) {
            ", NOT this file's ABI"
        } else {
            ""
        };
        parts.push(format!("loader {i} ({libc}{mismatch})"));
    }
    if let Some(a) = &info.arm_arch {
        parts.push(format!("ARM{a}"));
    }
    if let Some(f) = info.float_abi {
        parts.push(format!("{f:?}-float").to_ascii_lowercase());
    }
    if let Some(m) = info.mips_abi {
        parts.push(format!("{m:?}").to_ascii_lowercase());
    }
    if let Some(v) = info.ppc64_abi {
        parts.push(format!("ELFv{v}"));
    }
    if info.partial {
        parts.push("partly read".into());
    }
    parts.join(", ")
}

pub fn run(args: ElfArgs, json: bool) -> exit::Result<u8> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let (mut non_elf, mut symlinks) = (0u64, 0u64);
    for arg in &args.paths {
        match parse_target(arg) {
            Target::Image(spec) => {
                let source = open_image(&spec)?;
                let contents = walk::read_image(source.as_ref(), None).map_err(image_failure)?;
                for pc in contents.platforms {
                    for (path, rec) in pc.files {
                        match rec {
                            Record::Elf { info, .. } => rows.push(Row {
                                path,
                                image_platform: Some(pc.platform.to_string()),
                                info: *info,
                            }),
                            Record::Corrupt { error: e, .. } => errors.push(format!(
                                "{}: corrupt ELF header in {path}: {e}",
                                pc.platform
                            )),
                        }
                    }
                }
            }
            Target::Path(path) => {
                walk::walk_path(&path, &mut |p: &str, found: FileClass| match found {
                    FileClass::Elf(info) => rows.push(Row {
                        path: p.to_string(),
                        image_platform: None,
                        info: *info,
                    }),
                    FileClass::Corrupt(e) => errors.push(format!("corrupt ELF header in {p}: {e}")),
                    FileClass::Unreadable(e) => errors.push(format!("cannot read {p}: {e}")),
                    FileClass::NotElf => non_elf += 1,
                    FileClass::Symlink(t) => {
                        symlinks += 1;
                        if !json {
                            println!("{p}: symlink to {t} (not followed)");
                        }
                    }
                })
                .map_err(Failure::usage)?;
            }
        }
    }
    if json {
        super::print_json(&rows)?;
    } else {
        for r in &rows {
            match &r.image_platform {
                Some(ip) => println!("{ip} {}: {}", r.path, describe(&r.info)),
                None => println!("{}: {}", r.path, describe(&r.info)),
            }
        }
        println!(
            "{} ELF files, {non_elf} non-ELF files skipped, {symlinks} symlinks not followed",
            rows.len()
        );
    }
    for e in &errors {
        eprintln!("rcross: {e}");
    }
    Ok(if errors.is_empty() {
        exit::OK
    } else {
        exit::CHECK_FAILED
    })
}
