//! Setup decisions on made-up facts, and their execution on the recording fake host.

use super::*;
use crate::binfmt::{BinfmtMatch, Flags};
use crate::detect::BinfmtState;
use crate::host::fake::{Call, FakeHost};

fn p(s: &str) -> Platform {
    s.parse().unwrap()
}

fn catalog() -> Catalog {
    Catalog::builtin().expect("built-in catalog loads")
}

fn handler<'c>(c: &'c Catalog, name: &str) -> &'c Handler {
    c.handlers.iter().find(|h| h.name == name).unwrap()
}

const BM: &str = "/proc/sys/fs/binfmt_misc";

fn emulator(name: &str, path: &str, linkage: Linkage) -> Emulator {
    Emulator {
        handler: name.into(),
        path: path.into(),
        linkage,
    }
}

fn facts() -> Facts {
    Facts {
        host_platform: p("linux/amd64"),
        kernel: Some((6, 8)),
        is_root: true,
        binfmt: BinfmtState {
            path: BM.into(),
            mounted: true,
            enabled: Some(true),
            entries: vec![],
            reports: vec![],
            unreadable: vec![],
        },
        emulators: vec![
            emulator("aarch64", "/usr/bin/qemu-aarch64-static", Linkage::Static),
            emulator("arm", "/usr/bin/qemu-arm-static", Linkage::Static),
        ],
        native: vec![p("linux/386")],
        persisted: vec![],
    }
}

fn opts() -> Options {
    Options {
        platforms: None,
        force: false,
        credentials: false,
        fix_binary: true,
        persist: false,
        uninstall: false,
        all_owners: false,
        dry_run: false,
        root: "/".into(),
    }
}

fn action<'a>(plan: &'a SetupPlan, handler: &str) -> &'a Action {
    &plan
        .items
        .iter()
        .find(|i| i.handler == handler)
        .unwrap_or_else(|| panic!("no item for {handler}"))
        .action
}

fn entry(name: &str, h: &Handler, interp: &str, flags: Flags) -> KernelEntry {
    KernelEntry {
        name: name.into(),
        enabled: true,
        interpreter: interp.into(),
        flags,
        kind: BinfmtMatch::Magic {
            offset: h.offset,
            magic: h.magic.clone(),
            mask: Some(h.mask.clone()),
        },
    }
}

const PF: Flags = Flags {
    fix_binary: true,
    preserve_argv0: true,
    credentials: false,
    open_binary: false,
};

#[test]
fn default_mode_registers_installed_foreign_emulators_only() {
    let c = catalog();
    let plan = plan(&facts(), &c, &opts()).unwrap();
    assert!(!plan.mount);
    assert_eq!(action(&plan, "x86_64"), &Action::Native, "host platform");
    assert_eq!(action(&plan, "i386"), &Action::Native, "natively runnable");
    let Action::Register {
        line,
        flags,
        remove,
        interpreter,
    } = action(&plan, "aarch64")
    else {
        panic!("{:?}", action(&plan, "aarch64"))
    };
    assert_eq!(flags, "PF");
    assert!(remove.is_empty());
    assert_eq!(interpreter, "/usr/bin/qemu-aarch64-static");
    assert!(line.starts_with(":rcross-aarch64:M:"), "{line}");
    assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:PF"), "{line}");
    assert!(matches!(action(&plan, "arm"), Action::Register { .. }));
    assert!(matches!(action(&plan, "riscv64"), Action::Skip { .. }));
    let skipped = plan.items.iter().find(|i| i.handler == "riscv64").unwrap();
    assert!(
        !skipped.selected,
        "a missing emulator is no failure in default mode"
    );
}

#[test]
fn explicit_platform_without_emulator_is_refused_naming_the_package() {
    let c = catalog();
    let mut o = opts();
    o.platforms = Some(vec![p("linux/riscv64")]);
    let plan = plan(&facts(), &c, &o).unwrap();
    assert_eq!(plan.items.len(), 1);
    let Action::Refuse { reason } = action(&plan, "riscv64") else {
        panic!()
    };
    assert!(reason.contains("qemu-user-static"), "{reason}");
    assert!(reason.contains("qemu-riscv64-static"), "{reason}");
}

#[test]
fn explicit_host_platform_is_native_not_registered() {
    let c = catalog();
    let mut o = opts();
    o.platforms = Some(vec![p("linux/amd64"), p("linux/386")]);
    let plan = plan(&facts(), &c, &o).unwrap();
    assert_eq!(action(&plan, "x86_64"), &Action::Native);
    assert_eq!(action(&plan, "i386"), &Action::Native);
}

#[test]
fn no_emulators_at_all_is_an_environment_error() {
    let c = catalog();
    let mut f = facts();
    f.emulators.clear();
    let e = plan(&f, &c, &opts()).unwrap_err();
    assert!(matches!(e, SetupError::NoEmulators));
    assert!(e.to_string().contains("apt-get install qemu-user-static"));
}

#[test]
fn identical_entry_is_left_alone_and_a_stale_one_replaced() {
    let c = catalog();
    let h = handler(&c, "aarch64");
    let mut f = facts();
    f.binfmt.entries = vec![entry(
        "rcross-aarch64",
        h,
        "/usr/bin/qemu-aarch64-static",
        PF,
    )];
    let plan1 = plan(&f, &c, &opts()).unwrap();
    assert!(matches!(
        action(&plan1, "aarch64"),
        Action::Unchanged { .. }
    ));

    f.binfmt.entries = vec![entry("rcross-aarch64", h, "/opt/old/qemu-aarch64", PF)];
    let plan2 = plan(&f, &c, &opts()).unwrap();
    let Action::Register { remove, .. } = action(&plan2, "aarch64") else {
        panic!()
    };
    assert_eq!(
        remove,
        &["rcross-aarch64"],
        "our own stale entry needs no --force"
    );
}

#[test]
fn another_tools_entry_is_a_conflict_until_forced() {
    let c = catalog();
    let h = handler(&c, "aarch64");
    let mut f = facts();
    let mut theirs = entry(
        "qemu-aarch64",
        h,
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
        PF,
    );
    // Spelled differently in masked-out bits: still the same format.
    if let BinfmtMatch::Magic { magic, .. } = &mut theirs.kind {
        magic[7] = 0;
    }
    f.binfmt.entries = vec![theirs];
    let plan1 = plan(&f, &c, &opts()).unwrap();
    assert_eq!(
        action(&plan1, "aarch64"),
        &Action::Conflict {
            entry: "qemu-aarch64".into(),
            interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
            flags: "PF".into()
        }
    );
    let mut o = opts();
    o.force = true;
    let plan2 = plan(&f, &c, &o).unwrap();
    let Action::Register { remove, .. } = action(&plan2, "aarch64") else {
        panic!()
    };
    assert_eq!(remove, &["qemu-aarch64"]);
}

#[test]
fn dynamic_emulator_with_fix_binary_is_refused_unless_forced() {
    let c = catalog();
    let mut f = facts();
    f.emulators = vec![emulator(
        "aarch64",
        "/usr/bin/qemu-aarch64",
        Linkage::Dynamic,
    )];
    let mut o = opts();
    o.platforms = Some(vec![p("linux/arm64")]);
    let plan1 = plan(&f, &c, &o).unwrap();
    let Action::Refuse { reason } = action(&plan1, "aarch64") else {
        panic!()
    };
    assert!(reason.contains("dynamically linked"), "{reason}");
    assert!(reason.contains("--no-fix-binary"), "{reason}");

    o.fix_binary = false;
    let plan2 = plan(&f, &c, &o).unwrap();
    let Action::Register { flags, .. } = action(&plan2, "aarch64") else {
        panic!()
    };
    assert_eq!(flags, "P");

    o.fix_binary = true;
    o.force = true;
    assert!(matches!(
        action(&plan(&f, &c, &o).unwrap(), "aarch64"),
        Action::Register { .. }
    ));
}

#[test]
fn credentials_flag_only_when_asked() {
    let c = catalog();
    let mut o = opts();
    o.credentials = true;
    let plan = plan(&facts(), &c, &o).unwrap();
    let Action::Register { flags, line, .. } = action(&plan, "aarch64") else {
        panic!()
    };
    assert_eq!(flags, "POCF");
    assert!(line.ends_with(":POCF"), "{line}");
}

#[test]
fn environment_checks() {
    let c = catalog();
    let mut f = facts();
    f.is_root = false;
    assert!(matches!(
        plan(&f, &c, &opts()).unwrap_err(),
        SetupError::NotRoot
    ));
    let mut o = opts();
    o.dry_run = true;
    assert!(plan(&f, &c, &o).is_ok(), "a dry run needs no root");

    let mut f = facts();
    f.kernel = Some((4, 4));
    let e = plan(&f, &c, &opts()).unwrap_err();
    assert!(e.to_string().contains("4.8"), "{e}");
    let mut o = opts();
    o.fix_binary = false;
    assert!(plan(&f, &c, &o).is_ok());
}

#[test]
fn uninstall_removes_ours_and_only_ours_unless_asked() {
    let c = catalog();
    let a = handler(&c, "aarch64");
    let r = handler(&c, "riscv64");
    let mut f = facts();
    f.binfmt.entries = vec![
        entry("rcross-aarch64", a, "/usr/bin/qemu-aarch64-static", PF),
        entry("qemu-riscv64", r, "/usr/bin/qemu-riscv64-static", PF),
    ];
    f.persisted = vec!["rcross-aarch64.conf".into(), "qemu-riscv64.conf".into()];
    let mut o = opts();
    o.uninstall = true;
    let plan1 = plan(&f, &c, &o).unwrap();
    assert_eq!(plan1.items.len(), 1, "{:?}", plan1.items);
    assert_eq!(
        action(&plan1, "aarch64"),
        &Action::Remove {
            entries: vec!["rcross-aarch64".into()]
        }
    );
    assert_eq!(
        plan1.items[0].persist_remove.as_deref(),
        Some(Path::new("/etc/binfmt.d/rcross-aarch64.conf"))
    );
    o.all_owners = true;
    o.platforms = Some(vec![p("linux/riscv64")]);
    let plan2 = plan(&f, &c, &o).unwrap();
    assert_eq!(
        action(&plan2, "riscv64"),
        &Action::Remove {
            entries: vec!["qemu-riscv64".into()]
        }
    );
}

#[test]
fn unknown_handler_for_platform_is_a_usage_error() {
    let mut c = catalog();
    c.handlers.retain(|h| h.name != "s390x");
    let mut o = opts();
    o.platforms = Some(vec![p("linux/s390x")]);
    let e = plan(&facts(), &c, &o).unwrap_err();
    assert!(matches!(e, SetupError::NoHandler(..)));
    assert!(e.to_string().contains("linux/s390x"));
}

// ---- apply on the fake host ----

fn fake_with_qemu() -> FakeHost {
    let mut h = FakeHost::new();
    h.emulated_exit = crate::binfmt::selftest::EXIT_CODE;
    h.programs.insert(
        "qemu-aarch64-static".into(),
        "/usr/bin/qemu-aarch64-static".into(),
    );
    // Any static ELF will do as the emulator's bytes: only its linkage is read.
    let static_elf = crate::binfmt::selftest::program(&p("linux/amd64")).unwrap();
    h.add_file("/usr/bin/qemu-aarch64-static", static_elf);
    h
}

#[test]
fn apply_mounts_registers_persists_and_self_tests() {
    let host = fake_with_qemu();
    let c = catalog();
    let mut f = facts();
    f.binfmt.mounted = false;
    f.emulators.truncate(1);
    let mut o = opts();
    o.platforms = Some(vec![p("linux/arm64")]);
    o.persist = true;
    o.root = "/r".into();
    let plan1 = plan(&f, &c, &o).unwrap();
    assert!(plan1.mount);
    let out = apply(&host, &plan1, true).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].self_test, SelfTest::Ok, "{:?}", out[0]);
    assert!(!out[0].failed());
    let changes = host.changes();
    assert_eq!(changes[0], Call::Mount(BM.into()));
    let Call::WriteControl(path, line) = &changes[1] else {
        panic!("{changes:?}")
    };
    assert_eq!(path, &Path::new(BM).join("register"));
    assert!(line.starts_with(":rcross-aarch64:M:"));
    assert!(changes.contains(&Call::CreateDir("/r/etc/binfmt.d".into())));
    assert!(changes.iter().any(|c| matches!(c,
        Call::WriteFile(p, content) if p == Path::new("/r/etc/binfmt.d/rcross-aarch64.conf") && content.contains(line.as_str()))));

    // Facts gathered from the fake now say it is there: a second plan changes nothing.
    let f2 = gather(&host, &c, Path::new(BM), Path::new("/r")).unwrap();
    let plan2 = plan(&f2, &c, &o).unwrap();
    assert!(
        matches!(action(&plan2, "aarch64"), Action::Unchanged { .. }),
        "{:?}",
        plan2.items
    );
    let before = host.changes().len();
    let out2 = apply(&host, &plan2, true).unwrap();
    assert_eq!(host.changes().len(), before, "{:?}", host.changes());
    // Already registered and correct, yet still self-tested (issue 13 §3).
    let aarch64 = out2.iter().find(|o| o.item.handler == "aarch64").unwrap();
    assert_eq!(aarch64.self_test, SelfTest::Ok, "{aarch64:?}");
}

#[test]
fn read_only_proc_sys_asks_for_privileged() {
    let host = fake_with_qemu();
    host.fail_on(BM, nix::errno::Errno::EROFS as i32);
    let c = catalog();
    let mut f = facts();
    f.binfmt.mounted = false;
    let e = apply(&host, &plan(&f, &c, &opts()).unwrap(), true).unwrap_err();
    assert!(e.to_string().contains("--privileged"), "{e}");
}

#[test]
fn rejected_registration_and_failed_self_test_fail_the_item() {
    let host = fake_with_qemu();
    host.mount_binfmt(Path::new(BM));
    host.fail_on(
        Path::new(BM).join("register"),
        nix::errno::Errno::EINVAL as i32,
    );
    let c = catalog();
    let mut f = facts();
    f.emulators.truncate(1);
    let mut o = opts();
    o.platforms = Some(vec![p("linux/arm64")]);
    let out = apply(&host, &plan(&f, &c, &o).unwrap(), true).unwrap();
    assert!(out[0].failed());
    assert!(
        out[0].error.as_deref().unwrap().contains("rejected"),
        "{:?}",
        out[0].error
    );

    // Registered, but the emulator misbehaves.
    let mut host = fake_with_qemu();
    host.mount_binfmt(Path::new(BM));
    host.emulated_exit = 0;
    let out = apply(&host, &plan(&f, &c, &o).unwrap(), true).unwrap();
    assert!(out[0].error.is_none());
    assert!(matches!(&out[0].self_test, SelfTest::Failed(w) if w.contains("exited with 0")));
    assert!(out[0].failed());
}

/// An entry of another tool written as (offset, magic, mask).
fn raw_entry(name: &str, offset: u32, magic: &[u8], mask: &[u8]) -> KernelEntry {
    KernelEntry {
        name: name.into(),
        enabled: true,
        interpreter: "/usr/bin/other-emulator".into(),
        flags: PF,
        kind: BinfmtMatch::Magic {
            offset,
            magic: magic.to_vec(),
            mask: Some(mask.to_vec()),
        },
    }
}

/// Entries that match the same aarch64 programs as rcross's handler through another mask, a
/// shorter magic or another offset are conflicts (the old comparison wanted the same offset,
/// length and `magic & mask`, and let all of these through); entries that cannot match an
/// aarch64 program are not.
#[test]
fn conflicts_are_found_on_the_overlap_of_the_masks() {
    let c = catalog();
    let h = handler(&c, "aarch64");
    let overlapping: Vec<KernelEntry> = vec![
        // Only position-independent aarch64 executables (e_type 3, mask ff where ours is fe).
        {
            let mut magic = h.magic.clone();
            let mut mask = h.mask.clone();
            magic[16] = 0x03;
            mask[16] = 0xff;
            raw_entry("pie-aarch64", 0, &magic, &mask)
        },
        // e_type and e_machine only, at offset 16.
        raw_entry(
            "machine-only",
            16,
            &[0x02, 0x00, 0xb7, 0x00],
            &[0xfe, 0xff, 0xff, 0xff],
        ),
        // Every little-endian ELF64 file.
        raw_entry(
            "all-elf64le",
            0,
            b"\x7fELF\x02\x01",
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        // No mask at all (all bits compared): exactly one spelling of an aarch64 header.
        KernelEntry {
            kind: BinfmtMatch::Magic {
                offset: 0,
                magic: {
                    let mut m = h.magic.clone();
                    m[16] = 0x02;
                    m
                },
                mask: None,
            },
            ..raw_entry("exact", 0, &[0], &[0])
        },
    ];
    for theirs in overlapping {
        let mut f = facts();
        let name = theirs.name.clone();
        f.binfmt.entries = vec![theirs];
        let plan1 = plan(&f, &c, &opts()).unwrap();
        assert!(
            matches!(action(&plan1, "aarch64"), Action::Conflict { entry, .. } if *entry == name),
            "{name}: {:?}",
            action(&plan1, "aarch64")
        );
        let mut o = opts();
        o.force = true;
        let plan2 = plan(&f, &c, &o).unwrap();
        let Action::Register { remove, .. } = action(&plan2, "aarch64") else {
            panic!("{name}: {:?}", action(&plan2, "aarch64"))
        };
        assert_eq!(
            remove,
            std::slice::from_ref(&name),
            "--force replaces {name}"
        );
    }

    let disjoint: Vec<KernelEntry> = vec![
        // riscv64 (e_machine 0xf3).
        entry("qemu-riscv64", handler(&c, "riscv64"), "/q", PF),
        // e_machine at offset 18 is arm (0x28), not aarch64.
        raw_entry("machine-arm", 18, &[0x28, 0x00], &[0xff, 0xff]),
        // Big-endian ELF64.
        raw_entry("elf64be", 4, &[0x02, 0x02], &[0xff, 0xff]),
        // A Java class file.
        raw_entry("java", 0, &[0xca, 0xfe, 0xba, 0xbe], &[0xff; 4]),
        KernelEntry {
            kind: BinfmtMatch::Extension("exe".into()),
            ..raw_entry("wine", 0, &[0], &[0])
        },
    ];
    for theirs in disjoint {
        let mut f = facts();
        let name = theirs.name.clone();
        f.binfmt.entries = vec![theirs];
        let plan1 = plan(&f, &c, &opts()).unwrap();
        let Action::Register { remove, .. } = action(&plan1, "aarch64") else {
            panic!("{name}: {:?}", action(&plan1, "aarch64"))
        };
        assert!(remove.is_empty(), "{name} is left alone");
    }
}

/// A handler (here a user file) whose magic matches the host's own programs would hand every
/// program on the machine to an emulator: refused before registration, naming the file, even
/// with --force, and never persisted.
#[test]
fn a_handler_that_matches_host_programs_is_refused() {
    let mut c = catalog();
    let mut evil = handler(&c, "x86_64").clone();
    evil.name = "evil".into();
    evil.platforms = vec![p("linux/riscv64")];
    evil.source = "/etc/rcross/binfmt.d/evil.toml".into();
    c.handlers.push(evil);
    let mut f = facts();
    f.emulators.push(emulator(
        "evil",
        "/usr/bin/qemu-riscv64-static",
        Linkage::Static,
    ));
    let (name, host) = ("evil", "linux/amd64");
    for force in [false, true] {
        let mut o = opts();
        o.force = force;
        o.persist = true;
        o.platforms = Some(vec![p("linux/riscv64")]);
        let plan = plan(&f, &c, &o).unwrap();
        let Action::Refuse { reason } = action(&plan, name) else {
            panic!("{name} (force {force}): {:?}", action(&plan, name))
        };
        assert!(
            reason.contains(&format!("/etc/rcross/binfmt.d/{name}.toml")),
            "{reason}"
        );
        assert!(reason.contains(host), "{reason}");
        let item = plan.items.iter().find(|i| i.handler == name).unwrap();
        assert!(item.selected && item.persist_write.is_none());
    }
    // The built-in handlers for foreign platforms pass the same check.
    let plan = plan(&facts(), &catalog(), &opts()).unwrap();
    assert!(matches!(action(&plan, "aarch64"), Action::Register { .. }));
}
