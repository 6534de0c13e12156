//! Chat storms over real sockets (spec section 5, issue 16 item 4): many
//! members leaving at once must not cost the server a queue slot per
//! member per `LEAVE` (N²/2 for N members), and a member that reads is
//! told every `LEAVE` and stays.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, PATIENCE};

/// Members that join and then leave together.
const MEMBERS: usize = 3000;

/// The server's resident size, in KiB, sampled every millisecond from
/// another thread; the highest seen.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: thread::JoinHandle<()>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                let kib: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
                    .unwrap();
                p.fetch_max(kib, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        });
        PeakRss { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// 3,000 silent members leave at once (their owner exits). Each `LEAVE`
/// went to every member left, one queue slot each (~4,500,000 slots,
/// ~40 bytes each, piling up within a wake-up of 1,024 events): the RSS
/// rose by tens of MiB (10,000 members: 1.3 GB, five times the default
/// --max-memory). The `LEAVE` lines of members closed one after another
/// now go out joined, one slot per remaining member per batch. A member
/// that reads gets every `LEAVE` and is not closed.
#[test]
fn members_leaving_together_cost_a_slot_per_batch_not_per_leave() {
    let server = Server::start(&["chat=0"]);
    let reader = server.connect("chat");
    let mut lines = BufReader::new(reader.try_clone().unwrap());
    let mut welcome = String::new();
    lines.read_line(&mut welcome).unwrap();
    assert!(welcome.starts_with("WELCOME "), "{welcome:?}");

    // The reader reads everything, counting JOIN and LEAVE lines.
    let joins = Arc::new(AtomicU64::new(0));
    let leaves = Arc::new(AtomicU64::new(0));
    let (j, l) = (joins.clone(), leaves.clone());
    let reading = thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => return line,
                Ok(_) if line.starts_with("JOIN ") => {
                    j.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) if line.starts_with("LEAVE ") => {
                    if l.fetch_add(1, Ordering::Relaxed) + 1 == MEMBERS as u64 {
                        return String::new();
                    }
                }
                Ok(_) => {}
            }
        }
    });

    let members: Vec<TcpStream> = (0..MEMBERS).map(|_| server.connect("chat")).collect();
    let deadline = Instant::now() + PATIENCE;
    while joins.load(Ordering::Relaxed) < MEMBERS as u64 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(joins.load(Ordering::Relaxed), MEMBERS as u64, "every JOIN");
    // Let the server write the JOIN storm out and settle.
    thread::sleep(Duration::from_millis(300));
    let before = server.rss_kib();

    let peak = PeakRss::start(server.pid());
    drop(members);
    let deadline = Instant::now() + PATIENCE;
    while !reading.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let peak = peak.finish();
    assert!(reading.is_finished(), "the reader saw every LEAVE");
    let last = reading.join().unwrap();
    assert_eq!(
        leaves.load(Ordering::Relaxed),
        MEMBERS as u64,
        "the reader got every LEAVE, and was not closed (last line {last:?})"
    );
    // The reader is still there: it is answered.
    (&reader).write_all(b"/help\n").unwrap();
    let mut after = BufReader::new(&reader);
    let mut line = String::new();
    after.read_line(&mut line).unwrap();
    assert!(line.starts_with("OK commands"), "{line:?}");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 4 * 1024,
        "the server's RSS grew by {growth} KiB while {MEMBERS} members left \
         (before {before} KiB, peak {peak} KiB)"
    );
}

/// A join storm past a small `--max-memory`: each JOIN is queued to every
/// member (a slot each) before the wake-up's flush writes it, so the total
/// passes the limit though every member's socket has room. The budget
/// closes only members that hold something lasting (output their full
/// socket will not take); before, it closed members in slab order, so the
/// first to join, a member that reads, went with the silent ones.
#[test]
fn a_join_storm_past_the_budget_does_not_close_a_member_that_reads() {
    const JOINERS: usize = 2000;
    let server = Server::start(&["chat=0", "--max-memory", "2000000"]);
    let reader = server.connect("chat");
    let mut lines = BufReader::new(reader.try_clone().unwrap());
    let mut welcome = String::new();
    lines.read_line(&mut welcome).unwrap();
    assert!(welcome.starts_with("WELCOME "), "{welcome:?}");
    let joins = Arc::new(AtomicU64::new(0));
    let j = joins.clone();
    let reading = thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => return (lines, line),
                Ok(_) if line.starts_with("JOIN ") => {
                    if j.fetch_add(1, Ordering::Relaxed) + 1 == JOINERS as u64 {
                        return (lines, String::new());
                    }
                }
                Ok(_) => {}
            }
        }
    });
    let members: Vec<TcpStream> = (0..JOINERS).map(|_| server.connect("chat")).collect();
    let deadline = Instant::now() + PATIENCE;
    while !reading.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(reading.is_finished(), "the reader saw every JOIN in time");
    let (mut lines, last) = reading.join().unwrap();
    assert_eq!(
        joins.load(Ordering::Relaxed),
        JOINERS as u64,
        "the reader got every JOIN and was not closed (its last line {last:?}); log:\n{}",
        server
            .log()
            .lines()
            .filter(|l| l.contains("memory"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    (&reader).write_all(b"/help\n").unwrap();
    let mut line = String::new();
    while !line.starts_with("OK commands") {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "closed");
    }
    drop(members);
}

/// A chat listener takes no more clients in a wake-up than make about
/// 16,384 `JOIN` deliveries: into a room of 300 members, 54 at a time,
/// not 64, so that a join storm into a large room keeps each wake-up (and
/// a bystander's wait) short. Read from `--trace`: the listener's line
/// says how many it accepted.
#[test]
fn a_join_storm_into_a_large_room_is_accepted_a_few_at_a_time() {
    const ROOM: usize = 300;
    const STORM: usize = 128;
    let server = Server::start(&["chat=0", "--trace"]);
    let mut room = Vec::with_capacity(ROOM + STORM);
    for _ in 0..ROOM {
        let stream = server.connect("chat");
        let mut welcome = String::new();
        BufReader::new(&stream).read_line(&mut welcome).unwrap();
        assert!(welcome.starts_with("WELCOME "), "{welcome:?}");
        room.push(stream);
    }
    let mark = server.log().len();
    // The storm waits in the listen backlog, all of it there at once.
    server.signal(libc::SIGSTOP);
    for _ in 0..STORM {
        room.push(TcpStream::connect(server.addr("chat")).unwrap());
    }
    server.signal(libc::SIGCONT);
    let deadline = Instant::now() + PATIENCE;
    while server.log()[mark..].matches("registered READABLE").count() < STORM
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    let log = server.log();
    let accepted: Vec<usize> = log[mark..]
        .lines()
        .filter(|l| l.contains("listener chat"))
        .filter_map(|l| l.split("accepted ").nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(accepted.iter().sum::<usize>(), STORM, "{accepted:?}");
    let most = accepted.iter().copied().max().unwrap_or(0);
    assert!(
        most <= 16_384 / ROOM,
        "a wake-up accepted {most} chat clients into a room of {ROOM}+ ({accepted:?})"
    );
    drop(room);
}
