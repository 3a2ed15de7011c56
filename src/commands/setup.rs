use crate::cli::SetupArgs;
use crate::exit::{self, Failure};

pub fn run(_args: SetupArgs, _json: bool) -> exit::Result<u8> {
    Err(Failure::usage(anyhow::anyhow!(
        "`rcross setup` is not implemented yet"
    )))
}
