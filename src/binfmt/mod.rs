//! STUB — replaced by the binfmt branch (handler catalog, register-line encoding, kernel entry
//! parsing, self-test programs). Only the signatures matter here.
#![allow(dead_code, unused_variables)]

use crate::Platform;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Handler {
    pub name: String,
    pub platforms: Vec<Platform>,
    pub offset: u32,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
    pub emulators: Vec<String>,
    pub preserve_argv0: bool,
    pub source: String,
}

impl Handler {
    pub fn matches(&self, file_header: &[u8]) -> bool {
        false
    }
    pub fn kernel_name(&self) -> String {
        format!("rcross-{}", self.name)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("catalog")]
pub struct CatalogError;
#[derive(Debug, thiserror::Error)]
#[error("encode")]
pub struct EncodeError;
#[derive(Debug, thiserror::Error)]
#[error("parse")]
pub struct ParseError;

#[derive(Debug, Clone)]
pub struct Catalog {
    pub handlers: Vec<Handler>,
}

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Err(CatalogError)
    }
    pub fn load(user_dir: &Path) -> Result<Catalog, CatalogError> {
        Err(CatalogError)
    }
    pub fn for_platform(&self, p: &Platform) -> Option<&Handler> {
        None
    }
    pub fn matching(&self, file_header: &[u8]) -> Vec<&Handler> {
        vec![]
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub fix_binary: bool,
    pub preserve_argv0: bool,
    pub credentials: bool,
    pub open_binary: bool,
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

pub fn register_line(
    name: &str,
    h: &Handler,
    interpreter: &Path,
    flags: &Flags,
) -> Result<String, EncodeError> {
    Err(EncodeError)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Magic {
        offset: u32,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    Extension(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: Flags,
    pub kind: EntryKind,
}

impl KernelEntry {
    pub fn same_format(&self, h: &Handler) -> bool {
        false
    }
    pub fn identical(&self, h: &Handler, interpreter: &str, flags: &Flags) -> bool {
        false
    }
}

pub fn parse_kernel_entry(name: &str, text: &str) -> Result<KernelEntry, ParseError> {
    Err(ParseError)
}

pub fn binfmt_d_file(line: &str) -> String {
    String::new()
}

pub mod selftest {
    use crate::Platform;
    pub const EXIT_CODE: i32 = 42;
    pub fn program(p: &Platform) -> Option<Vec<u8>> {
        None
    }
}
