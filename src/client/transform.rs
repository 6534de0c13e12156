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
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use super::{ClientError, ClientOptions};
use crate::proto::transform::{encode_header, Action, Table, ERROR_REPLY, MAX_LENGTH};

/// The usage of the subcommand.
pub const USAGE: &str = "transform [--table 2021|2023] [ACTION MESSAGE... | -f FILE]
  ACTION: a name in the server's action table, or a number 0-31
  (decimal or 0x hex) to send any action code. --table names the
  table the server speaks (its --transform-table; default 2021):
    2021: uppercase 0x01, lowercase 0x02, title-case 0x04,
          reverse 0x08, shuffle 0x10
    2023: uppercase 0x01, lowercase 0x02, reverse 0x04,
          shuffle 0x08, random 0x10
  (upper, lower and title are short for uppercase, lowercase and
  title-case). shuffle and random give a different result each time.
  MESSAGE words are joined by single spaces. FILE (- for stdin) holds
  one ACTION MESSAGE per line; all its requests are sent pipelined.";

/// One request: the action code and the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The 5-bit action code.
    pub code: u8,
    /// The data.
    pub data: Vec<u8>,
}

/// Parses an action name (of `table`) or number.
pub fn parse_action(word: &str, table: Table) -> Result<u8, ClientError> {
    let name = match word.to_ascii_lowercase().as_str() {
        "upper" => "uppercase".to_string(),
        "lower" => "lowercase".to_string(),
        "title" | "titlecase" => "title-case".to_string(),
        other => other.to_string(),
    };
    if let Some(action) = Action::ALL.into_iter().find(|a| a.name() == name) {
        return table.code(action).ok_or_else(|| {
            let other = Table::ALL.into_iter().find(|t| t.code(action).is_some());
            ClientError::Usage(format!(
                "the {table} action table has no {action}{}",
                other.map_or(String::new(), |t| format!(" (it is in --table {t})"))
            ))
        });
    }
    let number = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => word.parse::<u8>().ok(),
    };
    match number {
        Some(code) if code < 32 => Ok(code),
        _ => {
            let names: Vec<&str> = table.actions().iter().map(|a| a.name()).collect();
            Err(ClientError::Usage(format!(
                "unknown action '{word}' (expected {} or 0-31)",
                names.join(", ")
            )))
        }
    }
}

/// Parses one `ACTION MESSAGE` line of a request file.
pub fn parse_line(line: &str, table: Table) -> Result<Request, ClientError> {
    let (action, message) = line.split_once(' ').unwrap_or((line, ""));
    let data = message.as_bytes().to_vec();
    if data.len() > MAX_LENGTH as usize {
        return Err(ClientError::Usage(
            "message longer than 2^27-1 bytes".into(),
        ));
    }
    Ok(Request {
        code: parse_action(action, table)?,
        data,
    })
}

fn read_requests(source: impl Read, table: Table) -> Result<Vec<Request>, ClientError> {
    let mut requests = Vec::new();
    for line in BufReader::new(source).lines() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if !line.is_empty() {
            requests.push(parse_line(line, table)?);
        }
    }
    Ok(requests)
}

/// Turns the subcommand's arguments into the table and the requests.
pub fn parse_args(args: &[String]) -> Result<(Table, Vec<Request>), ClientError> {
    let (table, args) = match args {
        [flag, year, rest @ ..] if flag == "--table" => {
            let table = year
                .parse::<Table>()
                .map_err(|e| ClientError::Usage(format!("{e}\nUsage: onepoll-client {USAGE}")))?;
            (table, rest)
        }
        [flag] if flag == "--table" => {
            return Err(ClientError::Usage("--table takes 2021 or 2023".into()))
        }
        _ => (Table::default(), args),
    };
    let requests = match args {
        [] => {
            return Err(ClientError::Usage(format!(
                "missing requests\nUsage: onepoll-client {USAGE}"
            )))
        }
        [flag, file] if flag == "-f" => {
            if file == "-" {
                read_requests(io::stdin().lock(), table)?
            } else {
                let f = File::open(file)
                    .map_err(|e| ClientError::Usage(format!("cannot read {file}: {e}")))?;
                read_requests(f, table)?
            }
        }
        [flag, ..] if flag == "-f" => return Err(ClientError::Usage("-f takes one FILE".into())),
        [action, words @ ..] => vec![parse_line(&format!("{action} {}", words.join(" ")), table)?],
    };
    Ok((table, requests))
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
/// writing and reading at once; fails with [`ClientError::Timeout`] (and
/// the bytes of the response not completed) when `timeout` passes without
/// progress.
pub fn exchange(
    stream: TcpStream,
    wire: &[u8],
    count: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ClientError> {
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
            poll.poll(&mut events, Some(timeout))?;
            if events.is_empty() {
                return Err(ClientError::timeout_after(&inbox));
            }
        }
    }
    Ok(responses)
}

/// Whether `response` answers `request` as the server should, or is the
/// `error` reply (`Err`).
pub fn check(table: Table, request: &Request, response: &[u8]) -> Result<(), String> {
    match table.action(request.code) {
        Some(action) if action.is_valid_response(&request.data, response) => Ok(()),
        Some(action) if response == ERROR_REPLY => Err(format!(
            "{action} of {} bytes refused (server over its --max-buffer?)",
            request.data.len()
        )),
        Some(action) => {
            // A server speaking the other table answers this code with
            // another action: say so, it is the likely mistake.
            let other = Table::ALL.into_iter().find(|&t| {
                t != table
                    && t.action(request.code)
                        .is_some_and(|a| a.is_valid_response(&request.data, response))
            });
            Err(match other {
                Some(t) => format!(
                    "{action}: wrong response, but a right one for the {t} action table (try --table {t})"
                ),
                None => format!("{action}: wrong response"),
            })
        }
        None if response == ERROR_REPLY => Err(format!("unknown action {:#04x}", request.code)),
        None => Err(format!("action {:#04x}: unexpected response", request.code)),
    }
}

/// Runs the subcommand: sends every request pipelined, prints each
/// response on its own line, and fails if any was an error.
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    let (table, requests) = parse_args(args)?;
    let stream = super::connect(options, crate::config::Protocol::Transform.default_port())?;
    let responses = exchange(stream, &encode(&requests), requests.len(), options.timeout)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut first_error = None;
    for (request, response) in requests.iter().zip(&responses) {
        out.write_all(response)?;
        out.write_all(b"\n")?;
        if let Err(e) = check(table, request, response) {
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
        assert_eq!(parse_action("uppercase", Table::Y2021).unwrap(), 1);
        assert_eq!(parse_action("Title-Case", Table::Y2021).unwrap(), 4);
        assert_eq!(parse_action("0x10", Table::Y2021).unwrap(), 16);
        assert_eq!(parse_action("3", Table::Y2021).unwrap(), 3);
        assert!(matches!(
            parse_action("32", Table::Y2021),
            Err(ClientError::Usage(_))
        ));
        assert!(matches!(
            parse_action("explode", Table::Y2021),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn names_follow_the_table() {
        assert_eq!(parse_action("reverse", Table::Y2021).unwrap(), 0x08);
        assert_eq!(parse_action("reverse", Table::Y2023).unwrap(), 0x04);
        assert_eq!(parse_action("shuffle", Table::Y2023).unwrap(), 0x08);
        assert_eq!(parse_action("random", Table::Y2023).unwrap(), 0x10);
        let Err(ClientError::Usage(why)) = parse_action("random", Table::Y2021) else {
            panic!("random is not in the 2021 table");
        };
        assert!(why.contains("--table 2023"), "{why}");
        assert!(parse_action("title-case", Table::Y2023).is_err());
        let args: Vec<String> = ["--table", "2023", "random", "hello"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (table, requests) = parse_args(&args).unwrap();
        assert_eq!(table, Table::Y2023);
        assert_eq!(requests[0].code, 0x10);
    }

    #[test]
    fn lines_and_words_become_requests() {
        assert_eq!(
            parse_line("reverse ab c", Table::Y2021).unwrap(),
            Request {
                code: 8,
                data: b"ab c".to_vec()
            }
        );
        assert_eq!(
            parse_line("lower", Table::Y2021).unwrap(),
            Request {
                code: 2,
                data: vec![]
            }
        );
        let args: Vec<String> = ["upper", "a", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            parse_args(&args).unwrap().1,
            vec![Request {
                code: 1,
                data: b"a b".to_vec()
            }]
        );
        let requests = read_requests(&b"upper x\r\n\nreverse yz\n"[..], Table::Y2021).unwrap();
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
        assert!(check(Table::Y2021, &upper, b"ABC").is_ok());
        assert!(check(Table::Y2021, &upper, b"error").is_err());
        let lower_of_error = Request {
            code: 2,
            data: b"ERROR".to_vec(),
        };
        assert!(
            check(Table::Y2021, &lower_of_error, b"error").is_ok(),
            "lowercase of ERROR is data"
        );
        assert!(check(
            Table::Y2021,
            &Request {
                code: 3,
                data: vec![]
            },
            b"error"
        )
        .is_err());
    }
}
