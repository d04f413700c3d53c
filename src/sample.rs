//! `porledger sample`: a realistic, deterministic input set of any size.

use crate::cli::SampleArgs;
use crate::error::Fatal;

pub fn command(_args: &SampleArgs) -> Result<(), Fatal> {
    Err(Fatal::Input("sample: being written".into()))
}
