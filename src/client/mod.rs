//! Client side of each protocol.
