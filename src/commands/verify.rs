use crate::cli::VerifyArgs;
use crate::exit::{self, Failure};

pub fn run(_args: VerifyArgs, _json: bool) -> exit::Result<u8> {
    Err(Failure::usage(anyhow::anyhow!(
        "`rcross verify` is not implemented yet"
    )))
}
