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

use super::{Group, Shared};

/// No connection has this id (they count from 1): a broadcast that leaves
/// out nobody, such as a closed member's leaving notice (it has left the
/// group already).
pub const NOBODY: u64 = 0;

/// One delivery a core asked for.
#[derive(Clone, Debug)]
pub enum Effect {
    /// `msg` to every member of the broadcast group but the connection
    /// `except`. There is one group ([`Shared::group`](super::Shared::group)).
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
    /// The stats listener asks the loop to render `report` into the
    /// output of connection `to` (its own). The loop takes these out of
    /// the queue before [`route`], which ignores any left.
    Report {
        /// The asking connection's id.
        to: u64,
        /// What to render.
        report: super::stats::Report,
    },
}

/// Where routed messages go: the loop's connections (or a test's).
pub trait Deliver {
    /// Queues `msg` on connection `to`'s output with `put_shared`, unless
    /// `to` is gone or closing; enforces `--max-sendq` (see the module doc).
    fn deliver(&mut self, to: u64, msg: &Rc<[u8]>);

    /// Queues a message for `to` alone (a private message): by default as
    /// [`Deliver::deliver`] does. The loop copies it instead, so that it
    /// counts as that connection's own memory (a shared broadcast does
    /// not: see `server::memory_budget`).
    fn deliver_private(&mut self, to: u64, msg: &Rc<[u8]>) {
        self.deliver(to, msg);
    }
}

/// Routes every effect in `effects`, in the order they were recorded, to
/// their receivers (a broadcast: every member of `shared`'s [`Group`] but
/// its sender), and empties the queue (keeping its capacity).
///
/// A run of broadcasts from one call (a sender's pipelined lines, say) is
/// joined into one shared message first: every receiver then queues one
/// segment for the run instead of one per line, and the flush writes it in
/// one slice. This is safe because the queue holds one call's effects:
/// between two of them only the caller's own membership can change, and a
/// broadcast never includes the caller, so every broadcast of a run with
/// the same `except` has the same receivers.
pub fn route(effects: &mut Vec<Effect>, shared: &Shared, sink: &mut impl Deliver) {
    let group = shared.group();
    let mut pending = effects.drain(..).peekable();
    while let Some(effect) = pending.next() {
        match effect {
            Effect::Broadcast { msg, except } => {
                let mut joined: Option<Vec<u8>> = None;
                while let Some(Effect::Broadcast {
                    msg: next,
                    except: e,
                }) = pending.peek()
                {
                    if *e != except {
                        break;
                    }
                    joined
                        .get_or_insert_with(|| msg.to_vec())
                        .extend_from_slice(next);
                    pending.next();
                }
                let msg = joined.map_or(msg, Rc::from);
                for to in group.members() {
                    if to != except {
                        sink.deliver(to, &msg);
                    }
                }
            }
            Effect::SendTo { to, msg } => sink.deliver_private(to, &msg),
            Effect::Report { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[derive(Default)]
    struct Recorder(Vec<(u64, Vec<u8>, usize)>);

    impl Deliver for Recorder {
        fn deliver(&mut self, to: u64, msg: &Rc<[u8]>) {
            self.0.push((to, msg.to_vec(), msg.as_ptr() as usize));
        }
    }

    fn line(text: &str) -> Rc<[u8]> {
        Rc::from(text.as_bytes())
    }

    #[test]
    fn a_run_of_broadcasts_is_one_shared_message_per_receiver() {
        let mut shared = Shared::new(&Config::default());
        for id in 1..=3 {
            shared.chat.room.join(id);
        }
        let mut effects = vec![
            Effect::Broadcast {
                msg: line("MSG a x\n"),
                except: 1,
            },
            Effect::Broadcast {
                msg: line("MSG a y\n"),
                except: 1,
            },
            Effect::SendTo {
                to: 2,
                msg: line("PRIV a z\n"),
            },
            Effect::Broadcast {
                msg: line("MSG a w\n"),
                except: 1,
            },
        ];
        let mut sink = Recorder::default();
        route(&mut effects, &shared, &mut sink);
        assert!(effects.is_empty());
        let got: Vec<(u64, &[u8])> = sink.0.iter().map(|(to, m, _)| (*to, &m[..])).collect();
        assert_eq!(
            got,
            vec![
                (2, &b"MSG a x\nMSG a y\n"[..]),
                (3, b"MSG a x\nMSG a y\n"),
                (2, b"PRIV a z\n"),
                (2, b"MSG a w\n"),
                (3, b"MSG a w\n"),
            ]
        );
        assert_eq!(
            sink.0[0].2, sink.0[1].2,
            "one allocation shared by receivers"
        );
    }

    #[test]
    fn broadcasts_excluding_different_members_are_not_joined() {
        let mut shared = Shared::new(&Config::default());
        for id in 1..=2 {
            shared.chat.room.join(id);
        }
        let mut effects = vec![
            Effect::Broadcast {
                msg: line("A\n"),
                except: 1,
            },
            Effect::Broadcast {
                msg: line("B\n"),
                except: 2,
            },
        ];
        let mut sink = Recorder::default();
        route(&mut effects, &shared, &mut sink);
        let got: Vec<(u64, &[u8])> = sink.0.iter().map(|(to, m, _)| (*to, &m[..])).collect();
        assert_eq!(got, vec![(2, &b"A\n"[..]), (1, b"B\n")]);
    }
}
