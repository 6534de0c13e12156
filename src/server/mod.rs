//! The event loop and everything it owns.
