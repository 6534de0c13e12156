//! Who may connect: the per-address limits of the hostile-load rules of docs/PROTOCOLS.md.
//!
//! An address, as these limits count it, is an IPv4 address or an IPv6 /64
//! (an IPv4-mapped IPv6 peer, `::ffff:a.b.c.d`, counts as `a.b.c.d`): an
//! IPv6 host is usually handed a whole /64, so counting its single
//! addresses would let one host take 2^64 of them. For each address the
//! policy keeps
//!
//! - the connections it has open (`--max-conns-per-ip`), and
//! - a token bucket of new connections (`--conn-rate-per-ip N`: N tokens a
//!   second, at most 2N held, one taken per connection accepted; a refused
//!   attempt takes none, so a client that backs off is not punished for the
//!   attempts it made while refused).
//!
//! Addresses in `--exempt` (loopback by default, as ergo exempts its
//! operators' networks) are not counted at all.
//!
//! Memory is bounded: an address has an entry only while it has
//! connections open or its bucket is not yet full again. An entry that
//! returns to that default state is removed on the connection's close, or
//! by a sweep at most once a second (a bucket refills in at most 2 s), so
//! the map holds the addresses with connections open plus those that
//! connected in the last few seconds; a refused attempt never creates one.
//! The map shrinks when a storm from many addresses is over.
//!
//! The policy is pure: no sockets, no clock (the loop passes `now`, in its
//! milliseconds). Cost: admitting or releasing a non-exempt peer is one
//! hash lookup (SipHash with a per-process key, since an attacker chooses
//! the keys); an exempt peer costs a scan of the exempt list (two entries
//! by default) and no lookup. Nothing here runs per message.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// How often at most the map is swept of entries back in their default
/// state (milliseconds).
const SWEEP_EVERY_MS: u64 = 1000;

/// One token, in the bucket's unit (thousandths of a connection), so that
/// refilling at N a second is N units a millisecond, in integers.
const TOKEN: u64 = 1000;

/// The address the limits count a peer under: an IPv4-mapped IPv6 address
/// becomes the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// One address as the per-address limits count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrKey {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4(u32),
    /// The first 64 bits of an IPv6 address: its /64.
    V6(u64),
}

impl AddrKey {
    /// The key `ip` is counted under.
    pub fn of(ip: IpAddr) -> AddrKey {
        match canonical(ip) {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => AddrKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32` (a bare address is
/// a block of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    /// An IPv4 block: the network's bits and the mask.
    V4 {
        /// The network, host bits cleared.
        net: u32,
        /// The prefix as a mask.
        mask: u32,
    },
    /// An IPv6 block: the network's bits and the mask.
    V6 {
        /// The network, host bits cleared.
        net: u128,
        /// The prefix as a mask.
        mask: u128,
    },
}

impl Cidr {
    /// The block of `prefix` leading bits of `ip`; `None` if `prefix` is
    /// longer than the address. An IPv4-mapped IPv6 block (`::ffff:0:0/96`
    /// and longer) is taken as the IPv4 block it maps, since peers are
    /// compared after [`canonical`].
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Cidr> {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32)));
                (prefix <= 32).then(|| {
                    let mask = mask.unwrap_or(0);
                    Cidr::V4 {
                        net: u32::from(v4) & mask,
                        mask,
                    }
                })
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return None;
                }
                if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                    return Cidr::new(IpAddr::V4(v4), prefix - 96);
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Some(Cidr::V6 {
                    net: u128::from(v6) & mask,
                    mask,
                })
            }
        }
    }

    /// Whether the block holds `ip` (already [`canonical`]).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == net,
            (Cidr::V6 { net, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == net,
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cidr::V4 { net, mask } => write!(f, "{}/{}", Ipv4Addr::from(net), mask.count_ones()),
            Cidr::V6 { net, mask } => write!(f, "{}/{}", Ipv6Addr::from(net), mask.count_ones()),
        }
    }
}

/// Text that is not a CIDR block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCidr(pub String);

impl fmt::Display for BadCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not a CIDR block (ADDR or ADDR/PREFIX)", self.0)
    }
}

impl std::error::Error for BadCidr {}

impl FromStr for Cidr {
    type Err = BadCidr;
    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => full,
            // Digits only: u8's parser would take "+8".
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        Cidr::new(ip, prefix).ok_or_else(bad)
    }
}

/// Parses `--exempt`: `none`, or CIDR blocks separated by commas.
pub fn parse_exempt(text: &str) -> Result<Vec<Cidr>, BadCidr> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',').map(|part| part.trim().parse()).collect()
}

/// The default `--exempt`: `127.0.0.0/8,::1/128`.
pub fn default_exempt() -> Vec<Cidr> {
    vec![
        Cidr::V4 {
            net: u32::from(Ipv4Addr::new(127, 0, 0, 0)),
            mask: 0xff00_0000,
        },
        Cidr::V6 {
            net: u128::from(Ipv6Addr::LOCALHOST),
            mask: u128::MAX,
        },
    ]
}

/// Why the policy refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address has `--max-conns-per-ip` connections open.
    PerAddress,
    /// The address's bucket is empty (`--conn-rate-per-ip`).
    Rate,
}

/// What the policy knows of one address.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Connections open.
    open: u32,
    /// Tokens held, in thousandths, as of `at`.
    tokens: u64,
    /// When `tokens` was last brought up to date (loop milliseconds).
    at: u64,
}

impl Bucket {
    /// Adds what was earned since `at`, up to `capacity`.
    #[inline]
    fn refill(&mut self, now: u64, per_ms: u64, capacity: u64) {
        let earned = now.saturating_sub(self.at).saturating_mul(per_ms);
        self.tokens = self.tokens.saturating_add(earned).min(capacity);
        self.at = self.at.max(now);
    }

    /// No connection open and a full bucket: the state of an address never
    /// seen, which needs no entry.
    #[inline]
    fn is_default(&self, capacity: u64) -> bool {
        self.open == 0 && self.tokens >= capacity
    }
}

/// The per-address admission policy.
#[derive(Debug)]
pub struct Admission {
    exempt: Vec<Cidr>,
    /// `--max-conns-per-ip`.
    max_open: u32,
    /// `--conn-rate-per-ip`, in thousandths of a token per millisecond.
    per_ms: u64,
    /// A full bucket: 2 × `--conn-rate-per-ip` tokens, in thousandths.
    capacity: u64,
    entries: HashMap<AddrKey, Bucket>,
    /// When the next sweep may run.
    next_sweep: u64,
}

impl Admission {
    /// A policy with no address seen yet: at most `max_open` connections
    /// open and `rate` new ones a second (burst 2 × `rate`) from one
    /// address, addresses in `exempt` aside.
    pub fn new(exempt: Vec<Cidr>, max_open: u32, rate: u32) -> Admission {
        let per_ms = u64::from(rate);
        Admission {
            exempt,
            max_open,
            per_ms,
            capacity: per_ms.saturating_mul(2 * TOKEN),
            entries: HashMap::new(),
            next_sweep: 0,
        }
    }

    /// The key `ip` is counted under, or `None` if it is exempt.
    #[inline]
    pub fn key(&self, ip: IpAddr) -> Option<AddrKey> {
        let ip = canonical(ip);
        if self.exempt.iter().any(|block| block.contains(ip)) {
            return None;
        }
        Some(AddrKey::of(ip))
    }

    /// Decides on a new connection from `ip` at `now`; when it is admitted,
    /// counts it (it must be [`release`](Admission::release)d at close).
    pub fn admit(&mut self, ip: IpAddr, now: u64) -> Result<(), Refusal> {
        let Some(key) = self.key(ip) else {
            return Ok(());
        };
        if now >= self.next_sweep {
            self.sweep(now);
        }
        let (per_ms, capacity) = (self.per_ms, self.capacity);
        let bucket = self.entries.entry(key).or_insert(Bucket {
            open: 0,
            tokens: capacity,
            at: now,
        });
        if bucket.open >= self.max_open {
            return Err(Refusal::PerAddress);
        }
        bucket.refill(now, per_ms, capacity);
        if bucket.tokens < TOKEN {
            return Err(Refusal::Rate);
        }
        bucket.tokens -= TOKEN;
        bucket.open += 1;
        Ok(())
    }

    /// A connection admitted from `ip` is gone.
    pub fn release(&mut self, ip: IpAddr, now: u64) {
        let Some(key) = self.key(ip) else {
            return;
        };
        let (per_ms, capacity) = (self.per_ms, self.capacity);
        if let Entry::Occupied(mut entry) = self.entries.entry(key) {
            let bucket = entry.get_mut();
            bucket.open = bucket.open.saturating_sub(1);
            bucket.refill(now, per_ms, capacity);
            if bucket.is_default(capacity) {
                entry.remove();
            }
        }
    }

    /// Removes the entries back in their default state (no connection
    /// open, bucket refilled), and gives back the map's memory once most
    /// of it is unused. Run by [`admit`](Admission::admit) at most once a
    /// second.
    pub fn sweep(&mut self, now: u64) {
        self.next_sweep = now.saturating_add(SWEEP_EVERY_MS);
        let (per_ms, capacity) = (self.per_ms, self.capacity);
        self.entries.retain(|_, bucket| {
            bucket.refill(now, per_ms, capacity);
            !bucket.is_default(capacity)
        });
        if self.entries.capacity() > 64 && self.entries.capacity() > 4 * self.entries.len() {
            self.entries.shrink_to(2 * self.entries.len());
        }
    }

    /// Addresses with an entry (connections open, or a bucket refilling).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Connections open from `ip`, as counted (0 for an exempt address).
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.key(ip)
            .and_then(|key| self.entries.get(&key))
            .map_or(0, |bucket| bucket.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    /// No exemption: every address counts.
    fn policy(max_open: u32, rate: u32) -> Admission {
        Admission::new(Vec::new(), max_open, rate)
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!cidr("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        // Host bits are cleared.
        assert_eq!(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
        // A mapped block is the IPv4 block, as peers are compared mapped.
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "nowhere",
            "10.0.0.0/8/8",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn exempt_lists_parse() {
        assert_eq!(parse_exempt("none").unwrap(), Vec::new());
        assert_eq!(
            parse_exempt("127.0.0.0/8,::1/128").unwrap(),
            default_exempt()
        );
        assert_eq!(
            parse_exempt("10.0.0.0/8, 192.168.1.7").unwrap(),
            vec![cidr("10.0.0.0/8"), cidr("192.168.1.7/32")]
        );
        assert!(parse_exempt("10.0.0.0/8,").is_err());
        assert!(parse_exempt("10.0.0.0/8,bogus").is_err());
        assert!(parse_exempt("").is_err());
    }

    #[test]
    fn keys_are_the_ipv4_address_or_the_ipv6_slash_64() {
        assert_eq!(AddrKey::of(ip("1.2.3.4")), AddrKey::V4(0x0102_0304));
        assert_eq!(AddrKey::of(ip("::ffff:1.2.3.4")), AddrKey::V4(0x0102_0304));
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn at_most_max_open_from_one_address_and_others_unaffected() {
        let mut p = policy(3, 100);
        for _ in 0..3 {
            assert_eq!(p.admit(ip("10.0.0.1"), 0), Ok(()));
        }
        assert_eq!(p.admit(ip("10.0.0.1"), 0), Err(Refusal::PerAddress));
        assert_eq!(p.admit(ip("10.0.0.2"), 0), Ok(()));
        assert_eq!(p.open(ip("10.0.0.1")), 3);
        p.release(ip("10.0.0.1"), 1);
        assert_eq!(p.admit(ip("10.0.0.1"), 1), Ok(()));
        assert_eq!(p.admit(ip("10.0.0.1"), 1), Err(Refusal::PerAddress));
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address_and_a_mapped_peer_is_its_ipv4() {
        let mut p = policy(2, 100);
        assert_eq!(p.admit(ip("2001:db8:0:1::1"), 0), Ok(()));
        assert_eq!(p.admit(ip("2001:db8:0:1::2"), 0), Ok(()));
        assert_eq!(p.admit(ip("2001:db8:0:1::3"), 0), Err(Refusal::PerAddress));
        assert_eq!(p.admit(ip("2001:db8:0:2::1"), 0), Ok(()));
        assert_eq!(p.admit(ip("192.0.2.1"), 0), Ok(()));
        assert_eq!(p.admit(ip("::ffff:192.0.2.1"), 0), Ok(()));
        assert_eq!(p.admit(ip("192.0.2.1"), 0), Err(Refusal::PerAddress));
        assert_eq!(p.open(ip("::ffff:192.0.2.1")), 2);
    }

    #[test]
    fn the_rate_is_n_a_second_with_a_burst_of_2n_and_refusals_take_no_token() {
        let mut p = policy(1000, 5);
        let a = ip("10.0.0.1");
        for _ in 0..10 {
            assert_eq!(p.admit(a, 0), Ok(()));
        }
        assert_eq!(p.admit(a, 0), Err(Refusal::Rate));
        // A token every 200 ms; attempts refused meanwhile cost nothing.
        for t in [50, 100, 150, 199] {
            assert_eq!(p.admit(a, t), Err(Refusal::Rate));
        }
        assert_eq!(p.admit(a, 200), Ok(()));
        assert_eq!(p.admit(a, 200), Err(Refusal::Rate));
        // One second: five more, not more.
        let admitted = (201..=1201)
            .step_by(10)
            .filter(|&t| p.admit(a, t).is_ok())
            .count();
        assert_eq!(admitted, 5);
        // Another address has its own bucket.
        assert_eq!(p.admit(ip("10.0.0.2"), 1201), Ok(()));
    }

    #[test]
    fn the_per_address_cap_refuses_without_taking_a_token() {
        let mut p = policy(1, 1);
        let a = ip("10.0.0.1");
        assert_eq!(p.admit(a, 0), Ok(()));
        for _ in 0..100 {
            assert_eq!(p.admit(a, 0), Err(Refusal::PerAddress));
        }
        p.release(a, 0);
        // The burst of 2 had one token left.
        assert_eq!(p.admit(a, 0), Ok(()));
    }

    #[test]
    fn exempt_addresses_are_not_counted() {
        let mut p = Admission::new(default_exempt(), 1, 1);
        for _ in 0..100 {
            assert_eq!(p.admit(ip("127.0.0.2"), 0), Ok(()));
            assert_eq!(p.admit(ip("::ffff:127.0.0.1"), 0), Ok(()));
            assert_eq!(p.admit(ip("::1"), 0), Ok(()));
        }
        assert_eq!(p.tracked(), 0);
        assert_eq!(p.admit(ip("::2"), 0), Ok(()));
        assert_eq!(p.admit(ip("::2"), 0), Err(Refusal::PerAddress));
        let mut p = Admission::new(vec![cidr("10.0.0.0/8")], 1, 1);
        assert_eq!(p.admit(ip("127.0.0.1"), 0), Ok(()));
        assert_eq!(p.admit(ip("127.0.0.1"), 0), Err(Refusal::PerAddress));
        assert_eq!(p.admit(ip("10.9.9.9"), 0), Ok(()));
        assert_eq!(p.admit(ip("10.9.9.9"), 0), Ok(()));
        assert_eq!(p.tracked(), 1);
    }

    #[test]
    fn entries_go_when_their_address_is_back_to_the_default_state() {
        let mut p = policy(10, 10);
        // Open and close at once: the bucket is one token short, refilled
        // 100 ms later.
        p.admit(ip("10.0.0.1"), 0).unwrap();
        p.release(ip("10.0.0.1"), 0);
        assert_eq!(p.tracked(), 1);
        p.sweep(50);
        assert_eq!(p.tracked(), 1);
        p.sweep(100);
        assert_eq!(p.tracked(), 0);
        // Closed after the bucket refilled: removed on release.
        p.admit(ip("10.0.0.1"), 1000).unwrap();
        p.release(ip("10.0.0.1"), 1100);
        assert_eq!(p.tracked(), 0);
        // An open connection keeps its entry through any sweep.
        p.admit(ip("10.0.0.1"), 2000).unwrap();
        p.sweep(100_000);
        assert_eq!(p.tracked(), 1);
    }

    #[test]
    fn a_storm_from_many_addresses_leaves_nothing_behind() {
        let mut p = policy(4, 1);
        for i in 0..50_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            p.admit(a, 0).unwrap();
            p.release(a, 0);
        }
        assert_eq!(p.tracked(), 50_000);
        // The next admission after the buckets refilled sweeps them.
        p.admit(ip("192.0.2.1"), 2000).unwrap();
        assert_eq!(p.tracked(), 1);
        assert!(p.entries.capacity() < 1000, "{}", p.entries.capacity());
    }

    #[test]
    fn a_clock_that_does_not_move_refills_nothing() {
        let mut p = policy(100, 1);
        let a = ip("10.0.0.1");
        assert!(p.admit(a, 5).is_ok());
        assert!(p.admit(a, 5).is_ok());
        assert_eq!(p.admit(a, 5), Err(Refusal::Rate));
        // An earlier `now` (never from the loop's clock) refills nothing.
        assert_eq!(p.admit(a, 0), Err(Refusal::Rate));
    }
}
