//! What a request/reply workload sends and what it must get back: the
//! request bytes of each protocol, and the exact reply the spec demands,
//! computed here independently of the server's own cores so that the bench
//! checks the server rather than agreeing with it.

use crate::config::Protocol;
use crate::proto::transform::{Action, Table};

use super::args::BenchConfig;

/// The reply a request must get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// These bytes exactly.
    Exact(Vec<u8>),
    /// This 4-byte header, then any permutation of `data` (shuffle).
    Permutation {
        /// The response header.
        header: [u8; 4],
        /// How often each byte value occurs in the data.
        counts: Box<[u32; 256]>,
        /// The data length.
        len: usize,
    },
    /// A 4-byte length, then that many bytes that are a possible random
    /// edit of `data` (spec 1.5: each byte 0 to 16 times, in order).
    Edit {
        /// The request's data.
        data: Vec<u8>,
    },
}

impl Expect {
    /// Bytes in one reply.
    pub fn len(&self) -> usize {
        match self {
            Expect::Exact(bytes) => bytes.len(),
            Expect::Permutation { len, .. } => 4 + len,
            // Unknown until it arrives; at least the header.
            Expect::Edit { .. } => 4,
        }
    }

    /// Whether a reply is empty (never, for a protocol of the spec).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One conversation of a request/reply workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Sent once after connecting, with the reply it must get (cmd's
    /// `HELO`), before any measured request.
    pub hello: Option<(Vec<u8>, Vec<u8>)>,
    /// The server greets first with one line starting with this (chat's
    /// `WELCOME `), skipped before anything else.
    pub greeting: Option<&'static [u8]>,
    /// The request, sent over and over (empty: the greeting is the whole
    /// exchange, as for chat in idle and churn).
    pub request: Vec<u8>,
    /// Its reply.
    pub expect: Expect,
}

/// The fixed payload of `size` bytes: mixed-case words, so that every
/// transform action changes it.
pub fn payload(size: usize) -> Vec<u8> {
    const WORDS: &[u8] = b"the Quick bROWN fox jumps OVER the lazy DOG 0123 ";
    WORDS.iter().copied().cycle().take(size).collect()
}

/// Host name sent in cmd's `HELO`.
pub const HELO_HOST: &str = "bench";

/// The script of `protocol` with `config`'s sizes.
pub fn script(protocol: Protocol, config: &BenchConfig) -> Script {
    let size = config.size;
    match protocol {
        Protocol::Transform => transform(config.table, config.action, &payload(size))
            .unwrap_or_else(|| Script {
                hello: None,
                greeting: None,
                request: Vec::new(),
                expect: Expect::Exact(Vec::new()),
            }),
        Protocol::Tne => {
            let msg = payload(size.max(1));
            let mut request = b"TNE20003:".to_vec();
            request.extend_from_slice(&msg);
            request.push(b'\n');
            let mut reply = b"TNE20003:A:".to_vec();
            reply.extend_from_slice(&msg);
            reply.push(b'\n');
            Script {
                hello: None,
                greeting: None,
                request,
                expect: Expect::Exact(reply),
            }
        }
        Protocol::Cmd => {
            let text = payload(size);
            let mut request = b"ECHO ".to_vec();
            request.extend_from_slice(&text);
            request.push(b'\n');
            let mut reply = text;
            reply.push(b'\n');
            Script {
                hello: Some((
                    format!("HELO {HELO_HOST}\n").into_bytes(),
                    format!("Hello {HELO_HOST}, pleased to meet you.\n").into_bytes(),
                )),
                greeting: None,
                request,
                expect: Expect::Exact(reply),
            }
        }
        Protocol::Upload => {
            let mut request = (config.lines as u32).to_be_bytes().to_vec();
            let mut line = payload(size);
            line.push(b'\n');
            for _ in 0..config.lines {
                request.extend_from_slice(&line);
            }
            Script {
                hello: None,
                greeting: None,
                request,
                expect: Expect::Exact(b"A".to_vec()),
            }
        }
        // Not a load target (args refuse it): no requests, like chat.
        // Chat, and the protocols without a bench workload (refused by
        // the argument check before a script is made).
        _ => Script {
            hello: None,
            greeting: Some(b"WELCOME "),
            request: Vec::new(),
            expect: Expect::Exact(Vec::new()),
        },
    }
}

/// The transform request of `action` on `data` for a server speaking
/// `table`, and its reply per spec section 1.5 (`None`: the table has no
/// such action).
pub fn transform(table: Table, action: Action, data: &[u8]) -> Option<Script> {
    let len = data.len() as u32;
    let word = (u32::from(table.code(action)?) << 27) | len;
    let mut request = word.to_be_bytes().to_vec();
    request.extend_from_slice(data);
    let header = len.to_be_bytes();
    let expect = match action {
        Action::Shuffle => {
            let mut counts = Box::new([0u32; 256]);
            for &b in data {
                if let Some(count) = counts.get_mut(usize::from(b)) {
                    *count += 1;
                }
            }
            Expect::Permutation {
                header,
                counts,
                len: data.len(),
            }
        }
        Action::Random => Expect::Edit {
            data: data.to_vec(),
        },
        _ => {
            let mut reply = header.to_vec();
            reply.extend(expected_transform(action, data));
            Expect::Exact(reply)
        }
    };
    Some(Script {
        hello: None,
        greeting: None,
        request,
        expect,
    })
}

/// The spec's result of a deterministic action, written from the table in
/// section 1.5 (not from the server's core).
fn expected_transform(action: Action, data: &[u8]) -> Vec<u8> {
    match action {
        Action::Uppercase => data.iter().map(u8::to_ascii_uppercase).collect(),
        Action::Lowercase => data.iter().map(u8::to_ascii_lowercase).collect(),
        Action::TitleCase => {
            let mut prev_letter = false;
            data.iter()
                .map(|&b| {
                    let letter = b.is_ascii_alphabetic();
                    let out = match (letter, prev_letter) {
                        (true, false) => b.to_ascii_uppercase(),
                        (true, true) => b.to_ascii_lowercase(),
                        _ => b,
                    };
                    prev_letter = letter;
                    out
                })
                .collect()
        }
        // Shuffle and random are checked otherwise; never asked for here.
        Action::Reverse | Action::Shuffle | Action::Random => data.iter().rev().copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::Workload;

    #[test]
    fn the_spec_example_requests_and_replies() {
        let s = transform(Table::Y2021, Action::Uppercase, b"hi").unwrap();
        assert_eq!(s.request, [0x08, 0, 0, 2, b'h', b'i']);
        assert_eq!(s.expect, Expect::Exact(vec![0, 0, 0, 2, b'H', b'I']));
        let s = transform(Table::Y2021, Action::Reverse, b"abc").unwrap();
        assert_eq!(s.request, [0x40, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(s.expect, Expect::Exact(vec![0, 0, 0, 3, b'c', b'b', b'a']));
    }

    #[test]
    fn title_case_uppercases_the_first_letter_of_each_run() {
        let s = transform(Table::Y2021, Action::TitleCase, b"hELLO wORLD x1y").unwrap();
        assert_eq!(
            s.expect,
            Expect::Exact(b"\0\0\0\x0fHello World X1Y".to_vec())
        );
        let s = transform(Table::Y2021, Action::Lowercase, b"AbC").unwrap();
        assert_eq!(s.expect, Expect::Exact(b"\0\0\0\x03abc".to_vec()));
    }

    #[test]
    fn shuffle_expects_a_permutation() {
        let s = transform(Table::Y2021, Action::Shuffle, b"aab").unwrap();
        match s.expect {
            Expect::Permutation {
                header,
                counts,
                len,
            } => {
                assert_eq!((header, len), ([0, 0, 0, 3], 3));
                assert_eq!(
                    (counts[usize::from(b'a')], counts[usize::from(b'b')]),
                    (2, 1)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn line_protocols_follow_the_spec() {
        let mut c = BenchConfig::new(Workload::Tne);
        c.size = 5;
        let s = script(Protocol::Tne, &c);
        assert_eq!(s.request, b"TNE20003:the Q\n");
        assert_eq!(s.expect, Expect::Exact(b"TNE20003:A:the Q\n".to_vec()));
        let s = script(Protocol::Cmd, &c);
        assert_eq!(s.request, b"ECHO the Q\n");
        assert_eq!(s.expect, Expect::Exact(b"the Q\n".to_vec()));
        let (helo, hello) = s.hello.unwrap();
        assert_eq!(helo, b"HELO bench\n");
        assert_eq!(hello, b"Hello bench, pleased to meet you.\n");
    }

    #[test]
    fn an_upload_is_a_count_then_that_many_lines() {
        let mut c = BenchConfig::new(Workload::Upload);
        c.size = 2;
        c.lines = 3;
        let s = script(Protocol::Upload, &c);
        assert_eq!(s.request, b"\0\0\0\x03th\nth\nth\n");
        assert_eq!(s.expect, Expect::Exact(b"A".to_vec()));
    }
}
