//! Setup: binding the listeners (or adopting systemd's sockets) and
//! building the server.

use std::io;
use std::net::SocketAddr;

use mio::{Interest, Poll};
use slab::Slab;

use crate::config::{Config, Protocol};
use crate::proto::{Output, Shared, Transport};
use crate::server::admission::Admission;
use crate::server::datagram::DatagramEndpoint;
use crate::server::delivery::ConnIndex;
use crate::server::limits;
use crate::server::listener::{Listener, ReserveFd};
use crate::server::memory_budget::MemoryBudget;
use crate::server::metrics::Metrics;
use crate::server::pacing::PacingLimit;
use crate::server::refusals::{RefusalLimits, RefusalLog};
use crate::server::signals::ShutdownSignals;
use crate::server::systemd::{self, Notifier, Passed};
use crate::server::timers::{Clock, Timers};
use crate::server::trace;
use crate::server::ServerError;

use super::accepting::Accepting;
use super::datagrams::Datagrams;
use super::deadlines::Deadlines;
use super::flushing::Flushing;
use super::reading::{self, Reading};
use super::routing::Routing;
use super::{datagram_token, listener_token, Server, SCRATCH_BYTES, SIGNAL_TOKEN};

/// How many times a protocol's TCP and UDP sockets are bound again when the port
/// the OS picked for TCP (port 0) is taken for UDP.
const SAME_PORT_TRIES: usize = 8;

/// Serves a socket systemd passed in: registers it and logs
/// `listening <protocol> <tcp|udp> <addr:port>` as if bound here.
fn adopt(
    socket: Passed,
    poll: &Poll,
    listeners: &mut Vec<Listener>,
    datagrams: &mut Vec<DatagramEndpoint>,
) -> Result<(), ServerError> {
    let protocol = socket.protocol();
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let bind_error = |source| ServerError::Bind {
        protocol,
        addr,
        source,
    };
    match socket {
        Passed::Tcp(_, socket) => {
            let mut listener = Listener {
                protocol,
                socket: mio::net::TcpListener::from_std(socket),
                addr,
                nodelay_inherited: false,
            };
            poll.registry()
                .register(
                    &mut listener.socket,
                    listener_token(listeners.len()),
                    Interest::READABLE,
                )
                .map_err(bind_error)?;
            log::info!("listening {protocol} tcp {addr} (from systemd)");
            listeners.push(listener);
        }
        Passed::Udp(_, socket) => {
            let socket = mio::net::UdpSocket::from_std(socket);
            datagrams.push(DatagramEndpoint::new(protocol, socket, addr));
        }
    }
    Ok(())
}

/// Binds a TCP listener and a UDP socket on the same port number for
/// `protocol` ([`Transport::TcpAndUdp`]). With port 0 the OS picks the TCP
/// port; should that number be taken for UDP, both are bound again.
fn bind_with_datagrams(
    protocol: Protocol,
    addr: SocketAddr,
) -> io::Result<(Listener, DatagramEndpoint)> {
    let mut tries = 1;
    loop {
        let listener = Listener::bind(protocol, addr)?;
        match DatagramEndpoint::bind(protocol, listener.addr) {
            Ok(endpoint) => return Ok((listener, endpoint)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tries < SAME_PORT_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Server {
    /// Prepares the file stores of the protocols served
    /// ([`crate::stores::attach`]), binds every listener of `config`
    /// ([`Transport::TcpAndUdp`]: a TCP listener and a UDP socket on the
    /// same port number), installs the signal handlers and logs
    /// `listening <protocol> <tcp|udp> <addr:port>` for each.
    ///
    /// Started by systemd with sockets (`LISTEN_FDS`), it serves those
    /// instead, each for the protocol it is named after, and binds nothing.
    pub fn bind(mut config: Config) -> Result<Server, ServerError> {
        config.max_conns = limits::fit_max_conns(config.max_conns);
        trace::init();
        let sole = match config.listeners.as_slice() {
            [(protocol, _)] => Some(*protocol),
            _ => None,
        };
        let passed = systemd::passed_sockets(sole).map_err(ServerError::Activation)?;
        if !passed.is_empty() {
            config.listeners = passed
                .iter()
                .map(|s| (s.protocol(), s.local_addr().map_or(0, |a| a.port())))
                .collect();
            config.listeners.dedup();
        }
        let mut shared = Shared::new(&config);
        crate::stores::attach(&config, &mut shared).map_err(ServerError::Store)?;
        let poll = Poll::new().map_err(ServerError::Setup)?;
        let mut signals = ShutdownSignals::install().map_err(ServerError::Setup)?;
        signals
            .register(poll.registry(), SIGNAL_TOKEN)
            .map_err(ServerError::Setup)?;
        let mut listeners = Vec::new();
        let mut datagrams = Vec::new();
        let to_bind = if passed.is_empty() {
            config.listeners.as_slice()
        } else {
            &[]
        };
        for (index, &(protocol, port)) in to_bind.iter().enumerate() {
            let addr = SocketAddr::new(config.bind_addr(protocol), port);
            let bind_error = |source| ServerError::Bind {
                protocol,
                addr,
                source,
            };
            let transport = protocol.declaration().transport;
            let mut listener = if let Transport::TcpAndUdp(_) = transport {
                let (listener, endpoint) =
                    bind_with_datagrams(protocol, addr).map_err(bind_error)?;
                datagrams.push(endpoint);
                listener
            } else {
                Listener::bind(protocol, addr).map_err(bind_error)?
            };
            poll.registry()
                .register(
                    &mut listener.socket,
                    listener_token(index),
                    Interest::READABLE,
                )
                .map_err(bind_error)?;
            log::info!("listening {} tcp {}", protocol, listener.addr);
            listeners.push(listener);
        }
        for socket in passed {
            adopt(socket, &poll, &mut listeners, &mut datagrams)?;
        }
        for (index, endpoint) in datagrams.iter_mut().enumerate() {
            let (protocol, addr) = (endpoint.protocol, endpoint.addr);
            let bind_error = |source| ServerError::Bind {
                protocol,
                addr,
                source,
            };
            endpoint
                .register(poll.registry(), datagram_token(index))
                .map_err(bind_error)?;
            log::info!("listening {} udp {}", endpoint.protocol, endpoint.addr);
        }
        let admission = Admission::new(
            config.exempt.clone(),
            config.max_conns_per_ip,
            config.conn_rate_per_ip,
        );
        let refusals = RefusalLog::new(RefusalLimits {
            max_conns: config.max_conns,
            max_conns_per_ip: config.max_conns_per_ip,
            conn_rate_per_ip: config.conn_rate_per_ip,
        });
        Ok(Server {
            poll,
            // Sized once: growing by reallocation leaves the old blocks
            // resident, which idle connections would pay for.
            conns: Slab::with_capacity(config.max_conns),
            shared,
            clock: Clock::new(),
            signals,
            accepting: Accepting {
                listeners,
                ready: Vec::new(),
                reserve: ReserveFd::new(),
                paused_until: None,
                admission,
                refusals,
                next_id: 1,
            },
            datagrams: Datagrams {
                endpoints: datagrams,
                ready: Vec::new(),
            },
            reading: Reading {
                scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
                replies: Output::new(),
                still_ready: Vec::new(),
                waiting: Vec::new(),
                wake_read: 0,
                turn_bytes: reading::turn_bytes(1),
                allowance_readers: Vec::new(),
                pacing: PacingLimit {
                    rate: config.chat_rate,
                    burst: config.chat_burst,
                },
            },
            routing: Routing {
                effects: Vec::new(),
                index: ConnIndex::default(),
                slow: Vec::new(),
            },
            flushing: Flushing {
                list: Vec::new(),
                victims: Vec::new(),
            },
            deadlines: Deadlines {
                timers: Timers::with_capacity(config.max_conns),
            },
            metrics: Metrics::new(),
            notifier: Notifier::from_env(),
            notify_at: None,
            shutdown_at: None,
            memory: MemoryBudget::new(config.max_memory),
            config,
        })
    }

    /// Each TCP listener's protocol and bound address (with the real port).
    pub fn local_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        self.accepting
            .listeners
            .iter()
            .map(|l| (l.protocol, l.addr))
            .collect()
    }

    /// Each UDP socket's protocol and bound address.
    pub fn local_udp_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        self.datagrams
            .endpoints
            .iter()
            .map(|d| (d.protocol, d.addr))
            .collect()
    }
}
