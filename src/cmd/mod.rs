//! The commands: thin glue between validated settings ([`crate::settings`]),
//! the pipeline stages, the writers of [`crate::render`] and the console
//! ([`crate::console`]). One module per subcommand; `main` turns a command's
//! [`Finish`] or error into the exit code.

pub mod close;
pub mod explain;
pub mod history;
pub mod render;
pub mod run;
pub mod sample;
pub mod tieout;
pub mod validate;

use std::io;

use crate::cli::PdfArgs;
use crate::error::Fatal;
use crate::pipeline::{self, Inputs};
use crate::render::pdf::{PdfOptions, Renderer};
use crate::settings::InputSettings;

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Everything was usable.
    Clean,
    /// Done, but some rows were rejected (or, for `validate`, problems found).
    WithRejects,
    /// `tieout`: published, and differences (or unreadable earnings rows) found.
    Differences,
}

/// Reads rules, designations, billing headers and usage: everything `run` and
/// `validate` need before streaming.
/// `closed`: the usage marks of closed months (`run --history`), for the
/// prior high-water marks.
fn load(a: &InputSettings, closed: &crate::attain::ClosedMarks) -> Result<Inputs, Fatal> {
    let mut inputs = pipeline::load_inputs(&a.billing, &a.designations, &a.rules)?;
    if !a.allow_duplicate_inputs {
        crate::ingest::check_duplicate_inputs(&inputs.files)?;
    }
    crate::pipeline::prepare_usage(&mut inputs, &a.usage, a.usage_tenant_map.as_deref(), closed)?;
    if !a.allow_duplicate_inputs {
        crate::ingest::check_duplicate_digests(
            inputs
                .usage
                .files
                .iter()
                .map(|f| (f.input.display.as_str(), f.digest.sha256.as_str())),
        )?;
    }
    Ok(inputs)
}

/// Loads the PDF template before any work, so a broken template fails fast.
fn renderer(a: &PdfArgs) -> Result<(Renderer, PdfOptions), Fatal> {
    let r = Renderer::load(a.template.as_deref(), &a.locale)?;
    let o = PdfOptions {
        transparency_by_customer: a.transparency_by_customer,
    };
    Ok((r, o))
}

/// A worker pool of `n` threads.
fn pool(n: usize) -> Result<rayon::ThreadPool, Fatal> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start {n} threads: {e}")))
}

/// The result of writing to stdout: a closed pipe (`| head`) is not an error.
fn stdout_result(r: io::Result<()>) -> Result<(), Fatal> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Fatal::Io {
            path: "stdout".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        let broken = io::Error::new(io::ErrorKind::BrokenPipe, "closed");
        assert!(stdout_result(Err(broken)).is_ok());
        assert!(stdout_result(Ok(())).is_ok());
        let full = io::Error::other("disk full");
        let e = stdout_result(Err(full)).unwrap_err().to_string();
        assert_eq!(e, "stdout: disk full");
    }
}
