//! What the socket drivers share: the current [`Snapshot`], the per-worker query state
//! ([`Worker`]), UDP sockets (one SO_REUSEPORT socket per worker, with a filter that drops runts
//! and responses in the kernel), and the batched UDP engine: one blocking socket per worker
//! thread, `recvmmsg`/`sendmmsg` so that one system call moves many queries.
//!
//! The hickory-server engine and TCP live in [`crate::handler`].

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use crate::answer::{Limit, Scratch, Snapshot};
use crate::config::RateLimitConfig;
use crate::metrics::{Event, Metrics};
use crate::ratelimit::{Decision, RateLimiter};

/// The current snapshot, swapped by the control loop; workers re-read it when the generation
/// changes.
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
    /// Counters every engine updates.
    pub metrics: Arc<Metrics>,
    /// The JSON of `GET /api/v1/view`: each region's answer and its edges' health, rebuilt
    /// with every snapshot.
    view: RwLock<Arc<str>>,
}

impl Shared {
    /// Starts with `snapshot` (generation 1).
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>) -> Shared {
        Shared {
            snapshot: RwLock::new(Arc::new(snapshot)),
            generation: AtomicU64::new(1),
            metrics,
            view: RwLock::new(Arc::from("{}")),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the snapshot; workers pick it up at their next query.
    pub fn store(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current answers-and-health view.
    pub fn view(&self) -> Arc<str> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the answers-and-health view.
    pub fn store_view(&self, view: String) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(view);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    t ^ (&local as *const u8 as u64).rotate_left(32)
}

/// The query state of one worker (a batched UDP thread, or a tokio worker thread running the
/// hickory handler): the snapshot it answers from, scratch buffers, and its own rate-limit
/// buckets. No locks on the query path.
pub struct Worker {
    shared: Arc<Shared>,
    generation: u64,
    snap: Arc<Snapshot>,
    limits: RateLimitConfig,
    limiter: Option<RateLimiter>,
    scratch: Scratch,
}

impl Worker {
    /// Query state over the current snapshot of `shared`.
    pub fn new(shared: Arc<Shared>) -> Worker {
        let generation = shared.generation();
        let snap = shared.load();
        let limits = snap.rate_limit.clone();
        let limiter = RateLimiter::new(&limits, Instant::now());
        Worker {
            shared,
            generation,
            snap,
            limits,
            limiter,
            scratch: Scratch::new(seed()),
        }
    }

    /// Is this the state for `shared`?
    pub fn serves(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }

    /// Picks up the latest snapshot (and new rate-limit settings) if there is one.
    pub fn refresh(&mut self) {
        let g = self.shared.generation();
        if g == self.generation {
            return;
        }
        self.generation = g;
        self.snap = self.shared.load();
        if self.snap.rate_limit != self.limits {
            self.limits = self.snap.rate_limit.clone();
            self.limiter = RateLimiter::new(&self.limits, Instant::now());
        }
    }

    /// Response rate limiting for a UDP client: `None` means drop (counted).
    pub fn limit(&mut self, ip: IpAddr) -> Option<Limit> {
        match self.limiter.as_mut().map(|l| l.check(ip, Instant::now())) {
            None | Some(Decision::Pass) => Some(Limit::Pass),
            Some(Decision::Slip) => {
                self.shared.metrics.event(Event::RateLimitedSlip);
                Some(Limit::Slip)
            }
            Some(Decision::Drop) => {
                self.shared.metrics.event(Event::RateLimitedDrop);
                None
            }
        }
    }

    /// The snapshot this worker answers from.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The snapshot and the scratch state, borrowed together for [`crate::answer::resolve`].
    pub fn parts(&mut self) -> (&Snapshot, &mut Scratch) {
        (&self.snap, &mut self.scratch)
    }
}

/// Binds `workers` SO_REUSEPORT sockets on `addr`, each with [`attach_query_filter`].
pub fn bind_udp(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
    (0..workers)
        .map(|_| {
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.set_reuse_port(true)?;
            // Best effort: a bigger receive buffer absorbs bursts.
            let _ = s.set_recv_buffer_size(4 << 20);
            attach_query_filter(&s)?;
            s.bind(&addr.into())?;
            Ok(s.into())
        })
        .collect()
}

/// A classic BPF socket filter: datagrams shorter than a DNS header, from source port 0, or
/// responses (QR set) are dropped by the kernel, so neither engine ever answers them
/// (hickory-server would answer a malformed response with FORMERR, and log port 0). The
/// filter sees the UDP header at offset 0.
#[cfg(target_os = "linux")]
fn attach_query_filter(s: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const UDP_HEADER: u32 = 8;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // Jump offsets count instructions after the jump; DROP is the last instruction.
    let program = [
        // A = datagram length (UDP header included)
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0, 0, 0),
        // shorter than UDP header + DNS header: drop
        op(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            0,
            5,
            UDP_HEADER + 12,
        ),
        // A = source port; 0 cannot be answered: drop
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 3, 0, 0),
        // A = third byte of the DNS header (QR, opcode, AA, TC, RD); QR set: drop
        op(
            libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
            0,
            0,
            UDP_HEADER + 2,
        ),
        op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 1, 0, 0x80),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
        // DROP
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without socket filters, both engines still drop runts and responses themselves (hickory's
/// UDP loop would answer a malformed response with FORMERR).
#[cfg(not(target_os = "linux"))]
fn attach_query_filter(_: &Socket) -> io::Result<()> {
    Ok(())
}

#[cfg(target_os = "linux")]
pub use batched::udp_worker;

/// The batched UDP engine (Linux): `recvmmsg` takes up to [`batched::BATCH`] queries at once,
/// each is answered in place by [`crate::answer::respond`], and one `sendmmsg` sends all
/// answers.
#[cfg(target_os = "linux")]
mod batched {
    use std::io;
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{Shared, Worker};
    use crate::answer::{Transport, respond};

    /// Queries per system call.
    pub const BATCH: usize = 32;
    /// Larger queries are cut to this size and then fail to parse (FORMERR).
    const MAX_QUERY: usize = 4096;

    /// Converts the kernel's source address; `None` for other families and port 0.
    fn socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(ss.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = u32::from_be(a.sin_addr.s_addr).into();
                Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = a.sin6_addr.s6_addr.into();
                Some(
                    SocketAddrV6::new(
                        ip,
                        u16::from_be(a.sin6_port),
                        a.sin6_flowinfo,
                        a.sin6_scope_id,
                    )
                    .into(),
                )
            }
            _ => None,
        }
        .filter(|a: &SocketAddr| a.port() != 0)
    }

    /// Buffers for one batch; the `msghdr`s point into them, so they never move once built.
    struct Batch {
        bufs: Vec<[u8; MAX_QUERY]>,
        addrs: Vec<libc::sockaddr_storage>,
        /// Responses, swapped with the worker's scratch buffer (no copy).
        outs: Vec<Vec<u8>>,
        iov_in: Vec<libc::iovec>,
        msgs_in: Vec<libc::mmsghdr>,
        iov_out: Vec<libc::iovec>,
        msgs_out: Vec<libc::mmsghdr>,
    }

    impl Batch {
        fn new() -> Box<Batch> {
            // SAFETY: all-zero is a valid value of these plain C structs.
            let zero_ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let iov = libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            let mut b = Box::new(Batch {
                bufs: vec![[0u8; MAX_QUERY]; BATCH],
                addrs: vec![zero_ss; BATCH],
                outs: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
                iov_in: vec![iov; BATCH],
                msgs_in: vec![zero_msg; BATCH],
                iov_out: vec![iov; BATCH],
                msgs_out: vec![zero_msg; BATCH],
            });
            for i in 0..BATCH {
                b.iov_in[i].iov_base = b.bufs[i].as_mut_ptr().cast();
                b.iov_in[i].iov_len = MAX_QUERY;
            }
            b
        }

        /// Re-arms the receive headers (the kernel overwrites lengths).
        fn arm_receive(&mut self) {
            for i in 0..BATCH {
                let h = &mut self.msgs_in[i].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut self.iov_in[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                self.msgs_in[i].msg_len = 0;
            }
        }
    }

    /// How long a worker waits for a query before it checks whether it should stop.
    const STOP_CHECK: Duration = Duration::from_millis(200);

    /// Serves one UDP socket on the calling thread until `stop` is cancelled.
    pub fn udp_worker(sock: UdpSocket, shared: Arc<Shared>, stop: CancellationToken) {
        // A receive timeout, so that an idle worker still sees `stop`.
        if let Err(e) = sock.set_read_timeout(Some(STOP_CHECK)) {
            tracing::warn!(error = %e, "udp worker cannot set a receive timeout; while idle it will not see a shutdown");
        }
        let metrics = shared.metrics.clone();
        let mut worker = Worker::new(shared);
        let mut b = Batch::new();
        let fd = sock.as_raw_fd();
        while !stop.is_cancelled() {
            b.arm_receive();
            // SAFETY: every header points into `b`, which outlives the call; BATCH entries.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    b.msgs_in.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    // The receive timeout passed without a query.
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {}
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        tracing::warn!(error = %e, "udp receive failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
            worker.refresh();
            let mut ready = 0usize;
            for i in 0..n as usize {
                let Some(src) = socket_addr(&b.addrs[i]) else {
                    continue;
                };
                let len = (b.msgs_in[i].msg_len as usize).min(MAX_QUERY);
                let Some(limit) = worker.limit(src.ip()) else {
                    continue;
                };
                let (snap, scratch) = worker.parts();
                let o = respond(snap, scratch, &b.bufs[i][..len], src, Transport::Udp, limit);
                metrics.query(
                    &o,
                    o.region
                        .and_then(|r| snap.region_answers.get(r))
                        .map(|c| &**c),
                );
                if !o.send {
                    continue;
                }
                std::mem::swap(&mut scratch.out, &mut b.outs[ready]);
                b.iov_out[ready] = libc::iovec {
                    iov_base: b.outs[ready].as_mut_ptr().cast(),
                    iov_len: b.outs[ready].len(),
                };
                let h = &mut b.msgs_out[ready].msg_hdr;
                h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = b.msgs_in[i].msg_hdr.msg_namelen;
                h.msg_iov = &mut b.iov_out[ready];
                h.msg_iovlen = 1;
                ready += 1;
            }
            send_all(fd, &mut b.msgs_out[..ready]);
        }
        tracing::debug!(addr = ?sock.local_addr().ok(), "udp worker stopped");
    }

    /// `sendmmsg` until every message is sent; a message the kernel refuses is skipped.
    fn send_all(fd: i32, msgs: &mut [libc::mmsghdr]) {
        let mut done = 0usize;
        while done < msgs.len() {
            let rest = &mut msgs[done..];
            // SAFETY: the headers point into the live batch buffers.
            let sent =
                unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if sent > 0 {
                done += sent as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::debug!(error = %e, "udp send failed");
            done += 1;
        }
    }
}
