use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match acme_dl::cli::Cli::try_parse() {
        Ok(cli) => acme_dl::run(cli).into(),
        Err(error) => acme_dl::client::monitor::usage_error(error),
    }
}
