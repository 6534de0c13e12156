//! # stats — the stats listener's protocol (spec section 6)
//!
//! A connection whose first bytes are `GET ` speaks HTTP/1.x: the request
//! head is parsed with `httparse`; `GET /metrics` is answered `200` with
//! the Prometheus text format, any other path `404`, anything unparsable
//! `400`, and the connection closes after the response. Any other
//! connection speaks lines in the style of Redis `INFO`: `INFO`,
//! `CLIENTS`, `QUIT`, anything else `ERR unknown command`.
//!
//! The core is sans-IO and holds no figures: it cannot see the loop's
//! counters or the other connections. Every reply it wants is asked for
//! with [`Cx::report`] as a [`Report`], in order; the loop renders each
//! one into this connection's output right after the call (see
//! `server::stats`). Even the fixed replies go that way, so that
//! pipelined commands are answered in the order they came.

use std::ops::ControlFlow;

use super::framing::LineFramer;
use super::{Cx, Session};
use crate::config::Protocol;

/// The longest command line accepted.
const MAX_COMMAND: usize = 256;

/// The largest HTTP request head read before answering `400`.
const MAX_HTTP_HEAD: usize = 8192;

/// Headers an HTTP request may carry.
const MAX_HEADERS: usize = 32;

/// A reply the core asks the loop to write to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The `INFO` text: `# Section` headers and `key:value` lines, ended by
    /// an empty line.
    Info,
    /// One line per open connection, ended by an empty line.
    Clients,
    /// HTTP `200` with the Prometheus text exposition.
    Metrics,
    /// HTTP `404`.
    NotFound,
    /// HTTP `400`.
    BadRequest,
    /// A fixed line (`ERR unknown command`).
    Line(&'static str),
}

/// The reply to a command the line protocol does not know.
pub const UNKNOWN_COMMAND: &str = "ERR unknown command\n";

/// The HTTP media type of the Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An HTTP/1.1 response head for `status` with a body of `length` bytes,
/// telling the client the connection closes after it.
pub fn http_head(status: u16, content_type: &str, length: usize) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

#[derive(Debug)]
enum State {
    /// Not yet known whether this is HTTP or lines.
    Undecided,
    /// HTTP: waiting for the whole request head.
    Http,
    /// Line commands.
    Lines(LineFramer),
    /// Answered and closing: input is ignored.
    Done,
}

/// One stats connection.
#[derive(Debug)]
pub struct StatsSession {
    state: State,
}

impl Default for StatsSession {
    fn default() -> Self {
        StatsSession::new()
    }
}

impl StatsSession {
    /// A fresh session, protocol not yet known.
    pub fn new() -> StatsSession {
        StatsSession {
            state: State::Undecided,
        }
    }

    fn http(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let report = match request.parse(input) {
            Ok(httparse::Status::Partial) if input.len() < MAX_HTTP_HEAD => return 0,
            Ok(httparse::Status::Complete(_)) => {
                let path = request.path.unwrap_or("");
                let path = path.split('?').next().unwrap_or(path);
                if request.method == Some("GET") && path == "/metrics" {
                    Report::Metrics
                } else {
                    Report::NotFound
                }
            }
            Ok(httparse::Status::Partial) | Err(_) => Report::BadRequest,
        };
        cx.shared.counts.request(Protocol::Stats);
        cx.report(report);
        cx.close_after_flush();
        self.state = State::Done;
        input.len()
    }

    fn lines(framer: &mut LineFramer, input: &[u8], cx: &mut Cx<'_>) -> (usize, bool) {
        let mut quit = false;
        let used = framer.each_line(input, |line| {
            let word = match line {
                Ok(line) => line.split(|b| *b == b' ').next().unwrap_or(line),
                Err(_) => b"",
            };
            if line.is_ok_and(|l| l.iter().all(|b| b.is_ascii_whitespace())) {
                return ControlFlow::Continue(());
            }
            cx.shared.counts.request(Protocol::Stats);
            if word.eq_ignore_ascii_case(b"INFO") {
                cx.report(Report::Info);
            } else if word.eq_ignore_ascii_case(b"CLIENTS") {
                cx.report(Report::Clients);
            } else if word.eq_ignore_ascii_case(b"QUIT") {
                quit = true;
                return ControlFlow::Break(());
            } else {
                cx.report(Report::Line(UNKNOWN_COMMAND));
            }
            ControlFlow::Continue(())
        });
        (used, quit)
    }
}

impl super::Declared for StatsSession {
    const DECLARATION: super::Declaration = super::Declaration {
        name: "stats",
        default_port: 9108,
        served_by_default: false,
        transport: super::Transport::Tcp,
        server_full: b"ERR server full\n",
        too_many_from_address: b"",
        flow: super::Flow::RequestReply,
        pacing: super::Pacing::Unpaced,
    };

    fn open(_shared: &mut super::Shared) -> StatsSession {
        StatsSession::new()
    }
}

impl Session for StatsSession {
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        if let State::Undecided = self.state {
            let probe = input.get(..4).unwrap_or(input);
            if b"GET ".starts_with(probe) && probe.len() < 4 {
                return 0;
            }
            self.state = if probe == b"GET " {
                State::Http
            } else {
                State::Lines(LineFramer::new(MAX_COMMAND))
            };
        }
        match &mut self.state {
            State::Undecided | State::Done => input.len(),
            State::Http => self.http(input, cx),
            State::Lines(framer) => {
                let (used, quit) = StatsSession::lines(framer, input, cx);
                if quit {
                    cx.close_after_flush();
                    self.state = State::Done;
                    return input.len();
                }
                used
            }
        }
    }

    fn mid_message(&self) -> bool {
        match &self.state {
            State::Lines(framer) => framer.mid_line(),
            State::Http => true,
            State::Undecided | State::Done => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Harness;
    use crate::proto::Effect;

    fn reports(effects: &[Effect]) -> Vec<Report> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Report { report, .. } => Some(*report),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn line_commands_are_reported_in_order_and_quit_closes() {
        let mut h = Harness::new(StatsSession::new());
        h.feed(b"info\r\nBOGUS\nCLIENTS\n\nQUIT\nINFO\n");
        assert_eq!(
            reports(&h.effects),
            vec![Report::Info, Report::Line(UNKNOWN_COMMAND), Report::Clients]
        );
        assert!(h.closed);
        assert_eq!(h.shared.counts.requests[Protocol::Stats.index()], 4);
    }

    #[test]
    fn get_metrics_is_http_whatever_the_split() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        for cut in 0..request.len() {
            let mut h = Harness::new(StatsSession::new());
            h.feed(&request[..cut]);
            assert!(reports(&h.effects).is_empty(), "cut at {cut}");
            h.feed(&request[cut..]);
            assert_eq!(reports(&h.effects), vec![Report::Metrics], "cut at {cut}");
            assert!(h.closed);
        }
    }

    #[test]
    fn other_paths_are_404_and_garbage_400() {
        let mut h = Harness::new(StatsSession::new());
        h.feed(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(reports(&h.effects), vec![Report::NotFound]);
        let mut h = Harness::new(StatsSession::new());
        h.feed(b"GET /metrics\x01 HTTP/1.1\r\n\r\n");
        assert_eq!(reports(&h.effects), vec![Report::BadRequest]);
        let mut h = Harness::new(StatsSession::new());
        h.feed(b"GET ");
        h.feed(&vec![b'a'; MAX_HTTP_HEAD]);
        assert_eq!(reports(&h.effects), vec![Report::BadRequest]);
    }
}
