//! Client side of each protocol: the library parts `onepoll-client` calls
//! (connecting with timeouts, sending, reading and checking replies).

pub mod cmd;
pub mod net;
pub mod tne;
