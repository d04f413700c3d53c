//! `porledger sample`: writes a deterministic input set.

use crate::cli::SampleArgs;
use crate::cmd::Finish;
use crate::console;
use crate::error::Fatal;
use crate::sample::{generate, Plan};

pub fn sample(args: &SampleArgs) -> Result<Finish, Fatal> {
    let plan = Plan::new(args.rows, args.seed, args.files)?;
    let w = generate(&args.out, plan)?;
    console::print_sample(&w, &args.out);
    Ok(Finish::Clean)
}
