//! `porledger explain`: how each amount of a finished run came about, on stdout.

use std::io::Write;

use crate::cli::ExplainArgs;
use crate::cmd::{stdout_result, Finish};
use crate::error::Fatal;
use crate::explain::{load, render_explanation, Filter};

pub fn explain(args: &ExplainArgs) -> Result<Finish, Fatal> {
    let filter = Filter {
        partner: args.partner.clone(),
        customer: args.customer.clone(),
        program: args.program.clone(),
    };
    let record = load(&args.out, &filter)?;
    let text = render_explanation(&record, &filter);
    stdout_result(std::io::stdout().lock().write_all(text.as_bytes()))?;
    Ok(Finish::Clean)
}
