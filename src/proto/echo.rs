//! # echo — RFC 862, the Echo Protocol over TCP
//!
//! *Served only when named (`onepoll echo=PORT`); default port 7.*
//!
//! Every byte received is sent back, unchanged, in order; there are no
//! messages, so each chunk the loop offers counts as one request. The
//! smallest protocol the server holds: this file and one line of the
//! registry in [`crate::proto`] are all it takes, and nothing in the loop
//! names it. Request/reply flow: a client that sends without reading is
//! not read past the loop's backpressure bound.

use super::{Cx, Declaration, Declared, Flow, Pacing, Protocol, Session, Shared, Transport};

/// One echo connection: no state at all.
#[derive(Debug, Default)]
pub struct EchoSession;

impl Declared for EchoSession {
    const DECLARATION: Declaration = Declaration {
        name: "echo",
        default_port: 7,
        served_by_default: false,
        transport: Transport::Tcp,
        server_full: b"",
        too_many_from_address: b"",
        flow: Flow::RequestReply,
        pacing: Pacing::Unpaced,
    };

    fn open(_shared: &mut Shared) -> EchoSession {
        EchoSession
    }
}

impl Session for EchoSession {
    /// Sends `input` back and consumes all of it.
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        cx.shared.counts.request(Protocol::Echo);
        cx.out.put(input);
        input.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Harness;

    #[test]
    fn every_byte_comes_back_and_nothing_is_carried() {
        let mut h = Harness::new(EchoSession);
        h.feed(b"hello\r\n");
        h.feed(b"\x00\xff no newline");
        assert_eq!(h.take(), b"hello\r\n\x00\xff no newline");
        assert_eq!(h.most_carried, 0);
        assert!(!h.closed);
    }
}
