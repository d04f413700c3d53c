//! `porledger render`: re-renders the PDFs of a finished run.

use crate::cli::RenderArgs;
use crate::cmd::{pool, renderer, Finish};
use crate::console;
use crate::error::Fatal;
use crate::render::pdf;
use crate::settings::RenderSettings;

pub fn render(args: &RenderArgs) -> Result<Finish, Fatal> {
    let s = RenderSettings::new(args)?;
    // Held from reading the run to publishing: a run published meanwhile is
    // not replaced by a copy of the one read before it.
    let _lock = crate::render::publish::OutLock::of_out(&s.out, "--out", None)?;
    // The PDFs of an issued output are the ones that were sent.
    crate::render::closed::refuse_issued(
        &s.out,
        "render",
        "its PDFs",
        "To render the issued statements otherwise (another locale or template), copy the \
         directory, remove closed.json from the copy and render the copy.",
    )?;
    let (r, o) = renderer(&s.pdf)?;
    let pool = pool(s.threads)?;
    let m = pdf::rerender(&s.out, &r, o, &pool)?;
    if !s.quiet {
        console::print_rendered(m.documents, &m.template.locale, &m.template.name, &s.out);
    }
    Ok(Finish::Clean)
}
