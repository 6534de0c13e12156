//! `onepoll-client`: a client for each onepoll protocol.
//!
//! `onepoll-client [-h HOST] [-p PORT] [-t SECS] [-v] PROTOCOL [ARGS]`. Exit codes:
//! 0 on success, 1 when the server cannot be reached or answers an error,
//! 2 on usage errors.
#![deny(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use getopts::{Options, ParsingStyle};
use onepoll::client::{self, ClientError, ClientOptions};
use onepoll::config::Protocol;

fn usage(opts: &Options) -> String {
    let subcommands = [
        client::tne::USAGE,
        client::cmd::USAGE,
        client::chat::USAGE,
        client::upload::USAGE,
        client::transform::USAGE,
        client::stats::USAGE,
    ];
    let brief = format!(
        "Usage: onepoll-client [-h HOST] [-p PORT] [-t SECS] [-v] PROTOCOL [ARGS]\n\n\
         A client for each onepoll protocol:\n  {}",
        subcommands.join("\n").replace('\n', "\n  ")
    );
    opts.usage(&brief)
}

fn run(args: &[String]) -> Result<(), ClientError> {
    let mut opts = Options::new();
    opts.parsing_style(ParsingStyle::StopAtFirstFree);
    opts.optopt("h", "host", "server host (default localhost)", "HOST");
    opts.optopt("p", "port", "server port (default: the protocol's)", "PORT");
    opts.optflag("v", "verbose", "print more detail");
    opts.optflag("", "help", "print this help and exit");
    opts.optopt(
        "t",
        "timeout",
        "seconds to wait to connect and for each reply (default 10)",
        "SECS",
    );
    opts.optflag("V", "version", "print the version and exit");
    let m = opts
        .parse(args)
        .map_err(|e| ClientError::Usage(format!("{e}\n{}", usage(&opts))))?;
    if m.opt_present("help") {
        print!("{}", usage(&opts));
        return Ok(());
    }
    if m.opt_present("version") {
        println!("onepoll-client {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let timeout = match m.opt_str("t") {
        Some(t) => match t.parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Duration::from_secs_f64(secs),
            _ => {
                return Err(ClientError::Usage(format!(
                    "invalid timeout '{t}': expected seconds, more than 0 and at most 86400"
                )))
            }
        },
        None => client::TIMEOUT,
    };
    let port = match m.opt_str("p") {
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            ClientError::Usage(format!(
                "invalid port '{p}': expected a number from 0 to 65535"
            ))
        })?),
        None => None,
    };
    let options = ClientOptions {
        host: m.opt_str("h").unwrap_or_else(|| "localhost".to_string()),
        port,
        verbose: m.opt_present("v"),
        timeout,
    };
    let Some((protocol, rest)) = m.free.split_first() else {
        return Err(ClientError::Usage(format!(
            "missing PROTOCOL\n{}",
            usage(&opts)
        )));
    };
    let result = match protocol.as_str() {
        "tne" => client::tne::run(&options, rest),
        "cmd" => client::cmd::run(&options, rest),
        "chat" => client::chat::run(&options, rest),
        "transform" => client::transform::run(&options, rest),
        "upload" => client::upload::run(&options, rest),
        "stats" => client::stats::run(&options, rest),
        other => {
            return Err(ClientError::Usage(format!(
                "unknown or unavailable protocol '{other}'
{}",
                usage(&opts)
            )))
        }
    };
    let port = protocol
        .parse::<Protocol>()
        .map_or(0, Protocol::default_port);
    result.map_err(|e| e.waiting_on(&options, port, protocol))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onepoll-client: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
