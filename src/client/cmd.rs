//! `onepoll-client cmd`: runs HELO with this machine's hostname, REQTIME,
//! REQDATE, ECHO, REQIP and BYE in turn, one request and reply at a time,
//! printing each request (`C: `) and reply (`S: `), and checks that the
//! server closes after BYE. Exit code 1 if the server answers ERR. See
//! [`crate::proto::cmd`] for the protocol.

use std::io::Write;
use std::net::TcpStream;

use super::lines::{LineReader, MAX_REPLY_LINE};
use super::{ClientError, ClientOptions};
use crate::config::Protocol;

/// The usage of the subcommand.
pub const USAGE: &str = "cmd
  Runs HELO <this host>, REQTIME, REQDATE, ECHO, REQIP and BYE in turn and
  prints each request and reply.";

/// Runs the subcommand with its arguments (after `cmd`: none).
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    if let Some(arg) = args.first() {
        return Err(ClientError::Usage(format!(
            "cmd takes no arguments, got '{arg}'\nUsage: {USAGE}"
        )));
    }
    let mut client = CmdClient::connect(options)?;
    let mut stdout = std::io::stdout().lock();
    let mut printed = Ok(());
    let result = client.run(&standard_script(&hostname()), |step| {
        if printed.is_ok() {
            printed = writeln!(stdout, "C: {}\nS: {}", step.request, step.reply);
        }
    });
    printed?;
    result
}

/// The text the standard script sends with ECHO.
pub const ECHO_TEXT: &str = "Hello from onepoll-client";

/// A cmd connection.
pub struct CmdClient {
    stream: TcpStream,
    reader: LineReader<TcpStream>,
}

/// One request of a script and its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The request line, without line end.
    pub request: String,
    /// The reply line, without line end (invalid UTF-8 replaced).
    pub reply: String,
}

impl Step {
    /// Whether the server refused the request: its reply is `ERR ...`,
    /// and, for ECHO, not simply the text that was sent.
    pub fn is_error(&self) -> bool {
        if !self.reply.starts_with("ERR ") {
            return false;
        }
        match self.request.split_once(' ') {
            Some((verb, text)) if verb.eq_ignore_ascii_case("ECHO") => self.reply != text,
            _ => true,
        }
    }
}

impl CmdClient {
    /// Connects to the server `options` name (default port 8008).
    pub fn connect(options: &ClientOptions) -> Result<CmdClient, ClientError> {
        let stream = super::connect(options, Protocol::Cmd.default_port())?;
        let reader = LineReader::new(stream.try_clone()?, MAX_REPLY_LINE);
        Ok(CmdClient { stream, reader })
    }

    /// Sends one request line and reads its reply line.
    pub fn request(&mut self, request: &str) -> Result<Step, ClientError> {
        if request.contains('\n') {
            return Err(ClientError::Usage("a request cannot contain LF".into()));
        }
        let mut line = Vec::with_capacity(request.len() + 1);
        line.extend_from_slice(request.as_bytes());
        line.push(b'\n');
        self.stream.write_all(&line)?;
        let reply = self.reader.read_line()?;
        Ok(Step {
            request: request.to_string(),
            reply: String::from_utf8_lossy(&reply).into_owned(),
        })
    }

    /// Runs `requests` in turn, calling `on_step` with each request and its
    /// reply as they come. Stops at the first error reply
    /// ([`ClientError::ServerError`]). After a BYE, checks that the server closes
    /// the connection without sending more.
    pub fn run(
        &mut self,
        requests: &[String],
        mut on_step: impl FnMut(&Step),
    ) -> Result<(), ClientError> {
        for request in requests {
            let step = self.request(request)?;
            on_step(&step);
            if step.is_error() {
                return Err(ClientError::ServerError(step.reply));
            }
            if request.eq_ignore_ascii_case("BYE") {
                let rest = self.reader.read_to_end()?;
                if !rest.is_empty() {
                    return Err(ClientError::BadReply(
                        String::from_utf8_lossy(&rest).into_owned(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The script `onepoll-client cmd` runs: every verb once, BYE last.
pub fn standard_script(hostname: &str) -> Vec<String> {
    vec![
        format!("HELO {hostname}"),
        "REQTIME".to_string(),
        "REQDATE".to_string(),
        format!("ECHO {ECHO_TEXT}"),
        "REQIP".to_string(),
        "BYE".to_string(),
    ]
}

/// This machine's host name, or `localhost` if it has none that is text.
pub fn hostname() -> String {
    match String::from_utf8(crate::sys::process::hostname()) {
        Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_script_runs_every_verb_once_and_ends_with_bye() {
        let script = standard_script("box");
        assert_eq!(script.first().unwrap(), "HELO box");
        assert_eq!(script.last().unwrap(), "BYE");
        for verb in crate::proto::cmd::Verb::ALL {
            assert_eq!(
                script.iter().filter(|r| r.starts_with(verb.name())).count(),
                1,
                "{verb}"
            );
        }
    }

    #[test]
    fn an_err_reply_is_an_error_except_to_echo() {
        let step = |request: &str, reply: &str| Step {
            request: request.into(),
            reply: reply.into(),
        };
        assert!(step("REQTIME", "ERR say HELO first").is_error());
        assert!(!step("ECHO ERR x", "ERR x").is_error());
        assert!(step("echo hi", "ERR say HELO first").is_error());
        assert!(!step("REQTIME", "12:00:00").is_error());
    }

    #[test]
    fn the_hostname_is_text() {
        let name = hostname();
        assert!(!name.is_empty() && !name.contains('\0'));
    }
}

#[cfg(test)]
mod over_tcp {
    use super::*;
    use crate::proto::cmd::CmdSession;
    use crate::proto::testing::serve_one_tcp;

    fn local(addr: std::net::SocketAddr) -> ClientOptions {
        ClientOptions {
            port: Some(addr.port()),
            ..ClientOptions::new("127.0.0.1")
        }
    }

    #[test]
    fn the_standard_script_runs_against_the_cmd_core_and_sees_the_close() {
        let addr = serve_one_tcp(|| CmdSession::new(8192));
        let mut client = CmdClient::connect(&local(addr)).unwrap();
        let mut steps = Vec::new();
        client
            .run(&standard_script("box"), |s| steps.push(s.clone()))
            .unwrap();
        let replies: Vec<&str> = steps.iter().map(|s| s.reply.as_str()).collect();
        assert_eq!(replies.len(), 6);
        assert_eq!(replies[0], "Hello box, pleased to meet you.");
        assert_eq!(replies[3], ECHO_TEXT);
        assert_eq!(replies[4], "127.0.0.1");
        assert_eq!(replies[5], "See ya later");
    }

    #[test]
    fn an_err_reply_stops_the_script_with_a_server_error() {
        let addr = serve_one_tcp(|| CmdSession::new(8192));
        let mut client = CmdClient::connect(&local(addr)).unwrap();
        let mut seen = 0;
        let result = client.run(&["REQTIME".to_string(), "BYE".to_string()], |_| seen += 1);
        assert!(matches!(result, Err(ClientError::ServerError(r)) if r == "ERR say HELO first"));
        assert_eq!(seen, 1);
    }
}
