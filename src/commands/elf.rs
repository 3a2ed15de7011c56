use crate::cli::ElfArgs;
use crate::exit::{self, Failure};

pub fn run(_args: ElfArgs, _json: bool) -> exit::Result<u8> {
    Err(Failure::usage(anyhow::anyhow!(
        "`rcross elf` is not implemented yet"
    )))
}
