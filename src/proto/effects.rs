//! Deliveries a core asks for to connections other than its own, and the
//! one function that routes them.
//!
//! A core never touches another connection: it records an [`Effect`] with
//! [`Cx::broadcast`](super::Cx::broadcast) or
//! [`Cx::send_to`](super::Cx::send_to), into a queue the loop owns and lends
//! in the `Cx`. After the call returns, the loop hands the queue to
//! [`route`], which resolves each effect to its receivers and gives each
//! receiver the message through [`Deliver::deliver`]. A message is one
//! `Rc<[u8]>`: every receiver's [`Output`](super::Output) holds a reference
//! (`put_shared`), so a line sent to 10,000 clients is one allocation.
//!
//! ## The routing contract (what the loop must do)
//!
//! 1. **Route after every call, before the next.** After each call into a
//!    core (`on_open`, `on_input`, `on_eof`, `on_shutdown`, `on_close`), the
//!    loop calls [`route`] before it calls into any core again. Then every
//!    receiver gets messages in the order the server accepted the lines that
//!    caused them, and a broadcast reaches exactly the members of the group
//!    at the moment it was sent (a client that joins later does not get it).
//! 2. **Deliver in order, never wait.** [`Deliver::deliver`] appends to the
//!    receiver's output at once with `put_shared`, or drops the message if
//!    the receiver is closing. It never blocks and never defers.
//! 3. **Slow consumers are found at the push.** chat's receivers have no
//!    backpressure: when a push leaves a receiver's unsent output above
//!    `--max-sendq` (as memory: [`Output::footprint`](super::Output::footprint)),
//!    the sink marks it and takes no more deliveries for it.
//!    After `route` returns, the loop ends each marked connection by calling
//!    its session's `on_close` with
//!    [`CloseReason::SendqExceeded`](super::CloseReason::SendqExceeded)
//!    (chat then announces `LEAVE NICK sendq exceeded`) and routes again;
//!    it repeats until no new connection is marked. Each connection is
//!    marked at most once, so this ends. No other connection waits for the
//!    slow one.
//! 4. **A client's own replies count too.** After each read fed to a chat
//!    session, and before writing any of that connection's output, the
//!    loop compares its unsent output with `--max-sendq` and ends it the
//!    same way if it is over. The session relies on this: once its own
//!    replies pass the limit it stops acting on the lines of that read
//!    (so one read of `/who` lines cannot pile up unbounded replies).

use std::rc::Rc;

use super::Shared;

/// One delivery a core asked for.
#[derive(Clone, Debug)]
pub enum Effect {
    /// `msg` to every member of the broadcast group but the connection
    /// `except`. The group is the chat room (`Shared::chat`), the only one.
    Broadcast {
        /// The message, shared by every receiver.
        msg: Rc<[u8]>,
        /// The connection left out (the sender).
        except: u64,
    },
    /// `msg` to the connection `to`, if it is still open.
    SendTo {
        /// The receiver's connection id.
        to: u64,
        /// The message.
        msg: Rc<[u8]>,
    },
}

/// Where routed messages go: the loop's connections (or a test's).
pub trait Deliver {
    /// Queues `msg` on connection `to`'s output with `put_shared`, unless
    /// `to` is gone or closing; enforces `--max-sendq` (see the module doc).
    fn deliver(&mut self, to: u64, msg: &Rc<[u8]>);
}

/// Routes every effect in `effects`, in the order they were recorded, and
/// empties the queue (keeping its capacity).
pub fn route(effects: &mut Vec<Effect>, shared: &Shared, sink: &mut impl Deliver) {
    for effect in effects.drain(..) {
        match effect {
            Effect::Broadcast { msg, except } => {
                for to in shared.chat.room.member_ids() {
                    if to != except {
                        sink.deliver(to, &msg);
                    }
                }
            }
            Effect::SendTo { to, msg } => sink.deliver(to, &msg),
        }
    }
}
