//! `onepoll-client transform`: sends requests pipelined — all of them
//! written before any response is awaited — and prints the responses in
//! order, one per line.
//!
//! Writing and reading run together in one small mio loop, so a large batch
//! never deadlocks against the server's backpressure (a client that only
//! writes until done would stall once the server stops reading it). Every
//! response is checked against its request; an `error` response where data
//! was expected makes the run fail (exit code 1) after all are printed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use mio::{Events, Interest, Poll, Token};

use super::{ClientError, ClientOptions, TIMEOUT};
use crate::proto::transform::{encode_header, Action, ERROR_REPLY, MAX_LENGTH};

/// The usage of the subcommand.
pub const USAGE: &str = "transform [ACTION MESSAGE... | -f FILE]
  ACTION: uppercase, lowercase, title-case, reverse, shuffle, or a number
  0-31 (decimal or 0x hex) to send any action code. MESSAGE words are
  joined by single spaces. FILE (- for stdin) holds one ACTION MESSAGE
  per line; all its requests are sent pipelined.";

/// One request: the action code and the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The 5-bit action code.
    pub code: u8,
    /// The data.
    pub data: Vec<u8>,
}

/// Parses an action name or number.
pub fn parse_action(word: &str) -> Result<u8, ClientError> {
    let by_name = match word.to_ascii_lowercase().as_str() {
        "uppercase" | "upper" => Some(Action::Uppercase),
        "lowercase" | "lower" => Some(Action::Lowercase),
        "title-case" | "titlecase" | "title" => Some(Action::TitleCase),
        "reverse" => Some(Action::Reverse),
        "shuffle" => Some(Action::Shuffle),
        _ => None,
    };
    if let Some(action) = by_name {
        return Ok(action.code());
    }
    let number = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => word.parse::<u8>().ok(),
    };
    match number {
        Some(code) if code < 32 => Ok(code),
        _ => Err(ClientError::Usage(format!(
            "unknown action '{word}' (expected uppercase, lowercase, title-case, reverse, shuffle or 0-31)"
        ))),
    }
}

/// Parses one `ACTION MESSAGE` line of a request file.
pub fn parse_line(line: &str) -> Result<Request, ClientError> {
    let (action, message) = line.split_once(' ').unwrap_or((line, ""));
    let data = message.as_bytes().to_vec();
    if data.len() > MAX_LENGTH as usize {
        return Err(ClientError::Usage(
            "message longer than 2^27-1 bytes".into(),
        ));
    }
    Ok(Request {
        code: parse_action(action)?,
        data,
    })
}

fn read_requests(source: impl Read) -> Result<Vec<Request>, ClientError> {
    let mut requests = Vec::new();
    for line in BufReader::new(source).lines() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if !line.is_empty() {
            requests.push(parse_line(line)?);
        }
    }
    Ok(requests)
}

/// Turns the subcommand's arguments into requests.
pub fn parse_args(args: &[String]) -> Result<Vec<Request>, ClientError> {
    match args {
        [] => Err(ClientError::Usage(format!(
            "missing requests\nUsage: onepoll-client {USAGE}"
        ))),
        [flag, file] if flag == "-f" => {
            if file == "-" {
                read_requests(io::stdin().lock())
            } else {
                let f = File::open(file)
                    .map_err(|e| ClientError::Usage(format!("cannot read {file}: {e}")))?;
                read_requests(f)
            }
        }
        [flag, ..] if flag == "-f" => Err(ClientError::Usage("-f takes one FILE".into())),
        [action, words @ ..] => Ok(vec![parse_line(&format!("{action} {}", words.join(" ")))?]),
    }
}

/// Encodes requests back to back, as they go on the wire.
pub fn encode(requests: &[Request]) -> Vec<u8> {
    let total = requests.iter().map(|r| 4 + r.data.len()).sum();
    let mut wire = Vec::with_capacity(total);
    for r in requests {
        wire.extend_from_slice(&encode_header(r.code, r.data.len() as u32));
        wire.extend_from_slice(&r.data);
    }
    wire
}

/// Splits complete responses off the front of `buf`; returns how many
/// bytes they took.
fn take_responses(buf: &[u8], into: &mut Vec<Vec<u8>>) -> usize {
    let mut at = 0;
    while let Some(&[a, b, c, d]) = buf.get(at..at + 4) {
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        let Some(data) = buf.get(at + 4..at + 4 + len) else {
            break;
        };
        into.push(data.to_vec());
        at += 4 + len;
    }
    at
}

/// Sends `wire` (holding `count` requests) and reads `count` responses,
/// writing and reading at once.
pub fn exchange(stream: TcpStream, wire: &[u8], count: usize) -> Result<Vec<Vec<u8>>, ClientError> {
    stream.set_nonblocking(true)?;
    let mut stream = mio::net::TcpStream::from_std(stream);
    let mut poll = Poll::new()?;
    poll.registry().register(
        &mut stream,
        Token(0),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut events = Events::with_capacity(4);
    let mut sent = 0;
    let mut inbox = Vec::new();
    let mut responses = Vec::with_capacity(count);
    let mut chunk = vec![0u8; 64 * 1024];
    while responses.len() < count {
        while sent < wire.len() {
            match stream.write(wire.get(sent..).unwrap_or_default()) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ClientError::BadReply(format!(
                        "connection closed after {} of {count} responses",
                        responses.len()
                    )))
                }
                Ok(n) => {
                    inbox.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    let used = take_responses(&inbox, &mut responses);
                    inbox.drain(..used);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if responses.len() < count {
            poll.poll(&mut events, Some(TIMEOUT))?;
            if events.is_empty() {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no progress for 30 s",
                )));
            }
        }
    }
    Ok(responses)
}

/// Whether `response` answers `request` as the server should, or is the
/// `error` reply (`Err`).
pub fn check(request: &Request, response: &[u8]) -> Result<(), String> {
    match Action::from_code(request.code) {
        Some(action) if action.is_valid_response(&request.data, response) => Ok(()),
        Some(action) if response == ERROR_REPLY => Err(format!(
            "{action} of {} bytes refused (server over its --max-buffer?)",
            request.data.len()
        )),
        Some(action) => Err(format!("{action}: wrong response")),
        None if response == ERROR_REPLY => Err(format!("unknown action {:#04x}", request.code)),
        None => Err(format!("action {:#04x}: unexpected response", request.code)),
    }
}

/// Runs the subcommand: sends every request pipelined, prints each
/// response on its own line, and fails if any was an error.
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    let requests = parse_args(args)?;
    let stream = super::connect(options, crate::config::Protocol::Transform.default_port())?;
    let responses = exchange(stream, &encode(&requests), requests.len())?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut first_error = None;
    for (request, response) in requests.iter().zip(&responses) {
        out.write_all(response)?;
        out.write_all(b"\n")?;
        if let Err(e) = check(request, response) {
            first_error.get_or_insert(e);
        }
    }
    out.flush()?;
    match first_error {
        Some(e) => Err(ClientError::ServerError(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_by_name_and_number() {
        assert_eq!(parse_action("uppercase").unwrap(), 1);
        assert_eq!(parse_action("Title-Case").unwrap(), 4);
        assert_eq!(parse_action("0x10").unwrap(), 16);
        assert_eq!(parse_action("3").unwrap(), 3);
        assert!(matches!(parse_action("32"), Err(ClientError::Usage(_))));
        assert!(matches!(
            parse_action("explode"),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn lines_and_words_become_requests() {
        assert_eq!(
            parse_line("reverse ab c").unwrap(),
            Request {
                code: 8,
                data: b"ab c".to_vec()
            }
        );
        assert_eq!(
            parse_line("lower").unwrap(),
            Request {
                code: 2,
                data: vec![]
            }
        );
        let args: Vec<String> = ["upper", "a", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            parse_args(&args).unwrap(),
            vec![Request {
                code: 1,
                data: b"a b".to_vec()
            }]
        );
        let requests = read_requests(&b"upper x\r\n\nreverse yz\n"[..]).unwrap();
        assert_eq!(requests.len(), 2);
    }

    #[test]
    fn responses_are_split_only_when_complete() {
        let mut got = Vec::new();
        let wire = [&[0, 0, 0, 2][..], b"ok", &[0, 0, 0, 3], b"ab"].concat();
        assert_eq!(take_responses(&wire, &mut got), 6);
        assert_eq!(got, vec![b"ok".to_vec()]);
    }

    #[test]
    fn error_replies_are_told_from_data() {
        let upper = Request {
            code: 1,
            data: b"abc".to_vec(),
        };
        assert!(check(&upper, b"ABC").is_ok());
        assert!(check(&upper, b"error").is_err());
        let lower_of_error = Request {
            code: 2,
            data: b"ERROR".to_vec(),
        };
        assert!(
            check(&lower_of_error, b"error").is_ok(),
            "lowercase of ERROR is data"
        );
        assert!(check(
            &Request {
                code: 3,
                data: vec![]
            },
            b"error"
        )
        .is_err());
    }
}
