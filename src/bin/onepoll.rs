//! `onepoll`: the server. Parses the command line, sets up logging, and
//! runs the event loop. Exit codes: 0 after a clean shutdown, 1 when a
//! port cannot be bound or the loop fails, 2 on a usage error.
#![deny(unsafe_code)]

use std::process::ExitCode;

use onepoll::cli::{self, Command};
use onepoll::server::Server;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&args) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("onepoll {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("onepoll: {e}\n{}", cli::short_usage());
            return ExitCode::from(2);
        }
    };
    let mut logger = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .with_utc_timestamps();
    if config.trace {
        logger = logger.with_module_level(onepoll::server::trace::TARGET, log::LevelFilter::Trace);
    }
    if let Err(e) = logger.init() {
        eprintln!("onepoll: cannot start logging: {e}");
        return ExitCode::from(1);
    }
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}
