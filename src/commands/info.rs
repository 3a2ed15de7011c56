use crate::cli::InfoArgs;
use crate::exit::{self, Failure};

pub fn run(_args: InfoArgs, _json: bool) -> exit::Result<u8> {
    Err(Failure::usage(anyhow::anyhow!(
        "`rcross info` is not implemented yet"
    )))
}
