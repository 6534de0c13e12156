//! The operating system, as small safe functions: every `unsafe` of the
//! crate lives here, each block with the argument for why it is sound, so
//! that the rest of the crate is `#![deny(unsafe_code)]`. Where `rustix` or
//! std has a safe call, the function here is a thin, named wrapper around
//! it; `libc` is called directly only for what neither has.
//!
//! - [`fd`] — descriptors: systemd's passed sockets, close-on-exec,
//!   nonblocking mode, a raw `read`.
//! - [`socket`] — socket options and `listen`.
//! - [`process`] — limits, CPU time, clocks, page size, host name, CPU
//!   affinity, and giving free heap back to the kernel.

pub mod fd;
pub mod process;
pub mod socket;

pub use process::{give_back_large_frees, trim_heap};
