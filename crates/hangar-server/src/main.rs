//! `hangar`: one binary for the server, migrations and administration.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hangar_server::cli::Cli::parse();
    hangar_server::cli::run(cli)
}
