//! binfmt_misc handler definitions, register-line encoding and self-test programs.
//!
//! Everything here is pure but [`order::registration_order`]: the catalog is data compiled into
//! the binary (plus files the caller points at), and the kernel formats are built and parsed as
//! strings. Writing to `/proc/sys/fs/binfmt_misc` and running the self-test programs is the
//! caller's business. The order of registration, which decides between entries that match the
//! same program, is only visible in the directory's listing; `order` reads it.

pub mod catalog;
pub mod kernel;
pub mod order;
pub mod selftest;

pub use catalog::{Catalog, CatalogError, Handler};
pub use kernel::{
    binfmt_d_file, magics_overlap, parse_kernel_entry, register_line, BinfmtMatch, EncodeError,
    EntryMagic, Flags, KernelEntry, ParseError,
};

#[cfg(test)]
mod tests;
