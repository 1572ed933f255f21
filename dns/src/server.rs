//! Socket drivers around [`answer::respond`]: one blocking UDP socket per worker thread
//! (SO_REUSEPORT, the kernel spreads clients over them), and TCP on tokio with a connection
//! limit and an idle timeout.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::answer::{Limit, Scratch, Snapshot, Transport, respond};
use crate::metrics::{Event, Metrics};
use crate::ratelimit::{Decision, RateLimiter};

/// The current snapshot, swapped by the control loop; drivers re-read it when the generation
/// changes.
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>) -> Shared {
        Shared {
            snapshot: RwLock::new(Arc::new(snapshot)),
            generation: AtomicU64::new(1),
            metrics,
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn store(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        self.generation.fetch_add(1, Ordering::Release);
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

/// Binds `workers` SO_REUSEPORT sockets on `addr`.
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
            s.bind(&addr.into())?;
            Ok(s.into())
        })
        .collect()
}

/// Serves one UDP socket on the calling thread, forever.
pub fn udp_worker(sock: UdpSocket, shared: Arc<Shared>) {
    let metrics = shared.metrics.clone();
    let mut buf = [0u8; 4096];
    let mut scratch = Scratch::new(seed());
    let mut generation = shared.generation();
    let mut snap = shared.load();
    let mut limits = snap.rate_limit.clone();
    let mut limiter = RateLimiter::new(&limits, Instant::now());
    loop {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if src.port() == 0 {
            continue;
        }
        let g = shared.generation();
        if g != generation {
            generation = g;
            snap = shared.load();
            if snap.rate_limit != limits {
                limits = snap.rate_limit.clone();
                limiter = RateLimiter::new(&limits, Instant::now());
            }
        }
        let limit = match limiter.as_mut().map(|l| l.check(src.ip(), Instant::now())) {
            None | Some(Decision::Pass) => Limit::Pass,
            Some(Decision::Slip) => {
                metrics.event(Event::RateLimitedSlip);
                Limit::Slip
            }
            Some(Decision::Drop) => {
                metrics.event(Event::RateLimitedDrop);
                continue;
            }
        };
        let o = respond(&snap, &mut scratch, &buf[..n], src, Transport::Udp, limit);
        if o.send
            && let Err(e) = sock.send_to(&scratch.out, src)
        {
            tracing::debug!(error = %e, %src, "udp send failed");
        }
        metrics.query(
            &o,
            o.region
                .and_then(|r| snap.region_answers.get(r))
                .map(|c| &**c),
        );
    }
}

/// Accepts TCP connections forever, at most `max` at a time.
pub async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, max: usize, idle: Duration) {
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.metrics.event(Event::TcpRejected);
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            tcp_connection(stream, peer, &shared, idle).await;
            drop(permit);
        });
    }
}

async fn tcp_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let mut scratch = Scratch::new(seed());
    let mut msg = Vec::new();
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        msg.resize(usize::from(u16::from_be_bytes(len)), 0);
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut msg)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let snap = shared.load();
        let o = respond(&snap, &mut scratch, &msg, peer, Transport::Tcp, Limit::Pass);
        shared.metrics.query(
            &o,
            o.region
                .and_then(|r| snap.region_answers.get(r))
                .map(|c| &**c),
        );
        if !o.send {
            return;
        }
        frame.clear();
        frame.extend_from_slice(&(scratch.out.len() as u16).to_be_bytes());
        frame.extend_from_slice(&scratch.out);
        if !matches!(
            tokio::time::timeout(idle, stream.write_all(&frame)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
