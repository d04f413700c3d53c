//! The `porledger` binary: parse flags, run the command, choose the exit code.
//! This is the only place that prints a fatal error or picks an exit code.

use std::process::ExitCode;

use clap::Parser;
use porledger::cli::{Cli, Command};
use porledger::cmd::{self, Finish};

/// glibc adapts its mmap threshold upwards as large blocks are freed, after
/// which freed 8 MiB chunk buffers and fold segments stay resident in its
/// arenas: peak memory then grew with the input (390 MB at 20M rows against
/// 247 MB at 5M). A fixed 1 MiB threshold returns every large block to the
/// system when freed (293 MB at 20M, 234 MB at 5M) at no measurable cost.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // mallopt: one allocator tunable, see above
fn tune_allocator() {
    // SAFETY: mallopt only sets a tunable of the allocator; it is called once,
    // before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    porledger::console::start_clock();
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match &cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Validate(a) => cmd::validate::validate(a),
        Command::Explain(a) => cmd::explain::explain(a),
        Command::Render(a) => cmd::render::render(a),
        Command::Sample(a) => cmd::sample::sample(a),
        Command::Close(a) => cmd::close::close(a),
        Command::History(a) => cmd::history::history(a),
        Command::Tieout(a) => cmd::tieout::tieout(a),
    };
    match result {
        Ok(Finish::Clean) => ExitCode::SUCCESS,
        Ok(Finish::WithRejects | Finish::Differences) => ExitCode::from(1),
        Err(e) => {
            eprintln!("porledger: error: {e}");
            ExitCode::from(2)
        }
    }
}
