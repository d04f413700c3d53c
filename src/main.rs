//! The `porledger` binary: parse flags, run the command, choose the exit code.
//! This is the only place that prints a fatal error or picks an exit code.

use std::process::ExitCode;

use clap::Parser;
use porledger::app::{self, Finish};
use porledger::cli::{Cli, Command};

fn main() -> ExitCode {
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
        Command::Run(a) => app::run(a),
        Command::Validate(a) => app::validate(a),
        Command::Explain(a) => app::explain(a),
        Command::Render(a) => app::render(a),
        Command::Sample(a) => porledger::sample::command(a).map(|_| Finish::Clean),
    };
    match result {
        Ok(Finish::Clean) => ExitCode::SUCCESS,
        Ok(Finish::WithRejects) => ExitCode::from(1),
        Err(e) => {
            eprintln!("porledger: error: {e}");
            ExitCode::from(2)
        }
    }
}
