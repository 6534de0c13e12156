//! `onepoll-client stats [INFO|CLIENTS|metrics]`: prints what the stats
//! listener (spec section 6) says. `INFO` (the default) and `CLIENTS` are
//! sent as lines and their reply read to its empty line; `metrics` is a
//! `GET /metrics` whose body is printed. See [`crate::proto::stats`].

use std::io::{Read, Write};

use super::lines::{LineReader, MAX_REPLY_LINE};
use super::{ClientError, ClientOptions};
use crate::config::Protocol;

/// The usage of the subcommand.
pub const USAGE: &str = "stats [INFO|CLIENTS|metrics]
  Prints the server's figures from its stats listener (default port 9108):
  INFO (the default), one line per connection (CLIENTS), or the Prometheus
  metrics.";

/// The most a metrics response may hold.
const MAX_RESPONSE: u64 = 64 << 20;

/// What to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The `INFO` sections.
    Info,
    /// One line per open connection.
    Clients,
    /// The Prometheus exposition, over HTTP.
    Metrics,
}

impl Ask {
    /// Parses the subcommand's argument (case-insensitive).
    pub fn parse(word: Option<&str>) -> Result<Ask, ClientError> {
        match word.map(str::to_ascii_lowercase).as_deref() {
            None | Some("info") => Ok(Ask::Info),
            Some("clients") => Ok(Ask::Clients),
            Some("metrics") => Ok(Ask::Metrics),
            Some(other) => Err(ClientError::Usage(format!(
                "stats: unknown request '{other}'\nUsage: {USAGE}"
            ))),
        }
    }
}

/// Runs the subcommand with its arguments (after `stats`).
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    if let Some(extra) = args.get(1) {
        return Err(ClientError::Usage(format!(
            "stats takes one argument, got also '{extra}'\nUsage: {USAGE}"
        )));
    }
    let ask = Ask::parse(args.first().map(String::as_str))?;
    let text = fetch(options, ask)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Asks the stats listener for `ask` and returns the text to print.
pub fn fetch(options: &ClientOptions, ask: Ask) -> Result<String, ClientError> {
    let mut stream = super::connect(options, Protocol::Stats.default_port())?;
    match ask {
        Ask::Metrics => {
            let host = &options.host;
            write!(
                stream,
                "GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = Vec::new();
            stream.take(MAX_RESPONSE).read_to_end(&mut response)?;
            let response = String::from_utf8_lossy(&response);
            let (head, body) = response
                .split_once("\r\n\r\n")
                .ok_or_else(|| ClientError::BadReply("no HTTP response head".into()))?;
            let status = head.lines().next().unwrap_or("");
            if !status.contains(" 200 ") {
                return Err(ClientError::ServerError(status.to_string()));
            }
            Ok(body.to_string())
        }
        Ask::Info | Ask::Clients => {
            let command = if ask == Ask::Info { "INFO" } else { "CLIENTS" };
            stream.write_all(format!("{command}\nQUIT\n").as_bytes())?;
            let mut reader = LineReader::new(stream, MAX_REPLY_LINE);
            let mut text = String::new();
            loop {
                let line = String::from_utf8_lossy(&reader.read_line()?).into_owned();
                if line.starts_with("ERR ") {
                    return Err(ClientError::ServerError(line));
                }
                if line.is_empty() {
                    return Ok(text);
                }
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
}
