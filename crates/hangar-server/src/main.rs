//! `hangar`: one binary for the server, migrations and administration — and, re-invoked inside a
//! sandbox as `hangar __sandbox-supervisor <config>`, the sandbox's supervisor (PID 1). That
//! dispatch happens before anything else so the supervisor starts with nothing it does not need.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(hangar_sandbox::supervisor::ARG) {
        let config = args.next().unwrap_or_default();
        return hangar_sandbox::supervisor::main(&config);
    }
    let cli = hangar_server::cli::Cli::parse();
    hangar_server::cli::run(cli)
}
