use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    acme_dl::run(acme_dl::cli::Cli::parse()).into()
}
