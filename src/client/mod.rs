//! Client side of each protocol.

pub mod upload;
