//! Which binfmt_misc entry the kernel uses when several match a program.
//!
//! The kernel keeps its entries in a list, adds each new registration at the head and hands a
//! program to the first enabled entry that matches, walking from the head (`fs/binfmt_misc.c`:
//! `list_add` in `bm_register_write`, `list_for_each_entry` in `search_binfmt_handler`): the
//! newest registration wins. The entries' text files do not say when they were registered; the
//! directory does: binfmt_misc is an in-memory filesystem whose listing is the dcache's list of
//! children, to which every new name is added at the head (`d_alloc`), so `readdir` returns
//! the newest registration first. `register` and `status`, created at mount time, come last.

use super::kernel::KernelEntry;
use std::path::Path;

/// Names in the binfmt_misc directory `dir` in the kernel's order, newest registration first.
/// This reads the live directory (unlike everything else in this module, which is pure).
pub fn registration_order(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != "register" && name != "status" {
            names.push(name);
        }
    }
    Ok(names)
}

/// The entry the kernel hands a program to, among `matching` (the enabled entries that match
/// it), given the directory's names newest first. `None` when `matching` is empty or when the
/// order does not name every matching entry (an entry registered after the listing was read),
/// so the caller cannot tell which one wins.
pub fn entry_in_use<'a>(
    matching: &[&'a KernelEntry],
    newest_first: &[String],
) -> Option<&'a KernelEntry> {
    if !matching.iter().all(|e| newest_first.contains(&e.name)) {
        return None;
    }
    newest_first
        .iter()
        .find_map(|n| matching.iter().find(|e| e.name == *n))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::{BinfmtMatch, Flags};

    fn entry(name: &str) -> KernelEntry {
        KernelEntry {
            name: name.into(),
            enabled: true,
            interpreter: "/q".into(),
            flags: Flags::default(),
            kind: BinfmtMatch::Extension("x".into()),
        }
    }

    #[test]
    fn the_newest_matching_entry_is_used() {
        let (a, b, c) = (entry("a"), entry("b"), entry("c"));
        let names = |s: &[&str]| s.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let order = names(&["c", "a", "other", "b"]);
        assert_eq!(entry_in_use(&[&a, &b], &order).unwrap().name, "a");
        assert_eq!(entry_in_use(&[&b, &a, &c], &order).unwrap().name, "c");
        assert_eq!(entry_in_use(&[&b], &order).unwrap().name, "b");
        assert!(entry_in_use(&[], &order).is_none());
        // An entry the listing does not name: unknown.
        assert!(entry_in_use(&[&a, &entry("new")], &order).is_none());
    }

    #[test]
    fn an_unreadable_directory_is_an_error() {
        assert!(registration_order(Path::new("/nonexistent/binfmt_misc")).is_err());
    }
}
