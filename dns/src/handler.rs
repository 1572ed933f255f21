//! The hickory-server query path: [`Handler`] is the `RequestHandler` for our zones. It reads
//! the question, header flags and EDNS (with the client-subnet option) of the message hickory
//! received into the engine's [`Question`], runs [`answer::resolve`], and hands the answer back
//! to hickory as records, with the client-subnet option echoed with its scope prefix.
//!
//! The stock `Catalog` neither reads nor returns ECS, which is why the zone logic is ours.
//! The message is checked by the batched engine's strict parser (one question, nothing in the
//! answer and authority sections, no records but OPT in the additional section, strict ECS, no
//! trailing bytes), so both engines accept and refuse the same messages.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_server::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::tcp::TcpStream as DnsTcpStream;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns as HickoryEdns, Header, HeaderCounts, MessageType, Metadata, ResponseCode,
};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet as HickorySubnet, EdnsOption};
use hickory_server::proto::rr::{Name, RData, Record};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::server::{
    Request, RequestHandler, ResponseHandle, ResponseHandler, ResponseInfo, TimeoutStream,
};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::{
    self, Body, Limit, Outcome, QueryHeader, Question, Resolved, udp_limit, write_response,
};
use crate::ecs::ClientSubnet;
use crate::metrics::Event;
use crate::server::{Shared, Worker};
use crate::wire::{self, Edns, ParseError, Query, Rcode};

/// The `RequestHandler` over the current snapshot.
#[derive(Clone)]
pub struct Handler {
    shared: Arc<Shared>,
}

impl Handler {
    /// A handler answering from the snapshots in `shared`.
    pub fn new(shared: Arc<Shared>) -> Handler {
        Handler { shared }
    }
}

thread_local! {
    /// Per-thread query state (snapshot, scratch buffers, rate limiter), like one
    /// worker of the batched engine: tokio runs the handler on its worker threads.
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

fn with_worker<T>(shared: &Arc<Shared>, f: impl FnOnce(&mut Worker) -> T) -> T {
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.serves(shared)) {
            *slot = None;
        }
        let worker = slot.get_or_insert_with(|| Worker::new(shared.clone()));
        worker.refresh();
        f(worker)
    })
}

/// A response ready to be encoded by hickory, owning its records.
struct Prepared {
    metadata: Metadata,
    /// Echo the question section (FORMERR and NOTIMP answers carry none).
    question: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    edns: Option<HickoryEdns>,
}

impl Prepared {
    fn error(request: &Metadata, rcode: Rcode) -> Prepared {
        let mut metadata = Metadata::response_from_request(request);
        metadata.response_code = <ResponseCode as From<u16>>::from(rcode.code());
        Prepared {
            metadata,
            question: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns: None,
        }
    }

    fn truncated(request: &Metadata, edns: Option<Edns>) -> Prepared {
        let mut metadata = Metadata::response_from_request(request);
        metadata.authoritative = true;
        metadata.truncation = true;
        Prepared {
            metadata,
            question: true,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns: edns.map(|e| response_edns(e.dnssec_ok, None)),
        }
    }
}

/// The OPT record of a response: our payload size, DO copied, ECS with its scope.
fn response_edns(dnssec_ok: bool, client_subnet: Option<ClientSubnet>) -> HickoryEdns {
    let mut e = HickoryEdns::new();
    e.set_max_payload(wire::MAX_UDP_PAYLOAD);
    e.set_dnssec_ok(dnssec_ok);
    if let Some(cs) = client_subnet {
        e.options_mut()
            .insert(EdnsOption::Subnet(HickorySubnet::new(
                cs.addr,
                cs.source_prefix,
                cs.scope_prefix,
            )));
    }
    e
}

/// The header fields and raw question of a hickory request, for the wire writer.
struct RequestHeader<'r>(&'r Request);

impl QueryHeader for RequestHeader<'_> {
    fn id(&self) -> u16 {
        self.0.metadata.id
    }
    fn recursion_desired(&self) -> bool {
        self.0.metadata.recursion_desired
    }
    fn checking_disabled(&self) -> bool {
        self.0.metadata.checking_disabled
    }
    fn question(&self) -> &[u8] {
        self.0.queries.as_bytes()
    }
}

/// The engine's view of a hickory request, read by the batched engine's strict parser from the
/// bytes hickory received, so that both engines accept and refuse exactly the same messages.
/// hickory-proto's decoder is more lenient than an authoritative server should be: it ignores
/// bytes after the last record (RFC 1035 messages end there) and ECS address octets beyond
/// those the source prefix needs (RFC 7871 §6 requires FORMERR for both), and it offers no
/// option to refuse them.
fn strict_query(request: &Request) -> Result<Query<'_>, ParseError> {
    let query = wire::parse_query(request.as_slice())?;
    if request.queries.queries().len() != 1 {
        // Cannot happen for a message both parsers read, but never answer a question hickory
        // does not hold.
        return Err(ParseError::FormErr {
            id: query.id,
            opcode: 0,
            rd: query.recursion_desired,
            cd: query.checking_disabled,
        });
    }
    Ok(query)
}

impl Handler {
    /// Everything up to encoding, on the calling thread's worker state; `None` = no response.
    fn prepare(&self, request: &Request) -> Option<Prepared> {
        let meta = &request.metadata;
        if meta.message_type == MessageType::Response {
            return None;
        }
        with_worker(&self.shared, |w| {
            let limit = if request.protocol() == Protocol::Udp {
                w.limit(request.src().ip())?
            } else {
                Limit::Pass
            };
            let mut outcome = Outcome {
                send: true,
                rcode: Rcode::NoError,
                qtype: 0,
                region: None,
                truncated: false,
            };
            let prepared = match strict_query(request) {
                Ok(query) => {
                    outcome.qtype = query.qtype;
                    self.answer(w, request, &Question::from(&query), limit, &mut outcome)
                }
                Err(ParseError::Drop) => return None,
                Err(ParseError::NotImp { .. }) => {
                    outcome.rcode = Rcode::NotImp;
                    Prepared::error(meta, Rcode::NotImp)
                }
                Err(ParseError::FormErr { .. }) => {
                    outcome.rcode = Rcode::FormErr;
                    Prepared::error(meta, Rcode::FormErr)
                }
            };
            let region = outcome
                .region
                .and_then(|r| w.snapshot().region_answers.get(r));
            self.shared.metrics.query(&outcome, region.map(|c| &**c));
            Some(prepared)
        })
    }

    fn answer(
        &self,
        w: &mut Worker,
        request: &Request,
        q: &Question<'_>,
        limit: Limit,
        outcome: &mut Outcome,
    ) -> Prepared {
        let meta = &request.metadata;
        if limit == Limit::Slip {
            outcome.truncated = true;
            return Prepared::truncated(meta, q.edns);
        }
        let (snap, scratch) = w.parts();
        let r = answer::resolve(snap, scratch, q, request.src().ip());
        outcome.rcode = r.rcode;
        outcome.region = r.region;
        if request.protocol() == Protocol::Udp {
            // Same size rule as the batched engine: measured on our own encoding.
            write_response(&mut scratch.out, snap, &RequestHeader(request), q, &r);
            if scratch.out.len() > udp_limit(q.edns) {
                outcome.truncated = true;
                return Prepared::truncated(meta, q.edns);
            }
        }
        let mut metadata = Metadata::response_from_request(meta);
        metadata.authoritative = r.authoritative;
        metadata.response_code = <ResponseCode as From<u16>>::from(r.rcode.code());
        let owner = request.queries.queries()[0].original().name();
        let (answers, authorities, additionals) = records(&r, q, owner, snap.ttl);
        Prepared {
            metadata,
            question: true,
            answers,
            authorities,
            additionals,
            edns: q.edns.map(|e| response_edns(e.dnssec_ok, r.client_subnet)),
        }
    }
}

/// The answer as hickory records: owners keep the case of the question, like the batched
/// engine's compression pointers into it.
fn records(
    r: &Resolved<'_>,
    q: &Question<'_>,
    owner: &Name,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>, Vec<Record>) {
    let (mut answers, mut authorities, mut additionals) = (Vec::new(), Vec::new(), Vec::new());
    match &r.body {
        Body::Empty => {}
        Body::Negative(zone) => {
            let apex = owner.trim_to(zone.apex_labels);
            for d in &zone.soa.data {
                authorities.push(Record::from_rdata(
                    apex.clone(),
                    zone.negative_ttl,
                    d.clone(),
                ));
            }
        }
        Body::Set(_, set) => {
            for d in &set.data {
                answers.push(Record::from_rdata(owner.clone(), set.ttl, d.clone()));
            }
            for g in r.glue(q) {
                for s in &g.sets {
                    for d in &s.data {
                        additionals.push(Record::from_rdata(g.owner.clone(), s.ttl, d.clone()));
                    }
                }
            }
        }
        Body::Addrs(addrs) => {
            for a in addrs {
                let data = match a {
                    IpAddr::V4(v4) => RData::A((*v4).into()),
                    IpAddr::V6(v6) => RData::AAAA((*v6).into()),
                };
                answers.push(Record::from_rdata(owner.clone(), ttl, data));
            }
        }
    }
    (answers, authorities, additionals)
}

fn no_response(meta: &Metadata) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata: Metadata::response_from_request(meta),
        counts: HeaderCounts::default(),
    })
}

fn empty_queries() -> Queries {
    Queries::read(&mut BinDecoder::new(&[]), 0).unwrap_or_else(|_| unreachable!("no queries"))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let Some(p) = self.prepare(request) else {
            return no_response(&request.metadata);
        };
        let empty;
        let queries = if p.question {
            &request.queries
        } else {
            empty = empty_queries();
            &empty
        };
        let message = MessageResponseBuilder::new(queries, p.edns.as_ref()).build(
            p.metadata,
            p.answers.iter(),
            p.authorities.iter(),
            std::iter::empty(),
            p.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "sending a response failed");
                no_response(&request.metadata)
            }
        }
    }
}

/// What hickory-server's own UDP loop does with a received message, for the paths that hand
/// messages to the handler themselves (TCP, tests, fuzzing): runts and responses are dropped,
/// messages hickory cannot parse get FORMERR (without question, RD and CD copied), the rest
/// goes to the handler. (On UDP, responses are already dropped by the socket filter, so
/// hickory's loop never answers a malformed response either.)
pub async fn serve_message<R: ResponseHandler>(
    handler: &Handler,
    bytes: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
    mut response: R,
) {
    let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    match Request::from_bytes(bytes, src, protocol) {
        Ok(request) => {
            handler
                .handle_request::<R, TokioTime>(&request, response)
                .await;
        }
        Err(e) => {
            tracing::debug!(error = %e, %src, "unparseable query");
            let queries = empty_queries();
            let message = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            if let Err(e) = response.send_response(message).await {
                tracing::debug!(error = %e, %src, "sending FORMERR failed");
            }
        }
    }
}

/// The share of the TCP slots one client (an IPv4 address, an IPv6 /64) may hold, so that one
/// host cannot take them all.
fn per_client_slots(max: usize) -> usize {
    max.div_ceil(4)
}

/// The key one client's TCP connections are counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Open TCP connections per client; a [`ClientSlot`] gives its place back when dropped.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

struct ClientSlot {
    table: Arc<PerClient>,
    key: IpAddr,
}

impl PerClient {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// DNS over TCP: hickory-net's framing and hickory-server's idle timeout and response handle,
/// around an accept loop of ours that holds at most `max` connections, and at most a quarter of
/// them for one client (hickory-server's `register_listener` accepts without limit), and closes
/// further ones at once. On `stop` the loop stops accepting and every connection ends after the
/// query it is answering.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Handler,
    max: usize,
    idle: Duration,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string());
    let slots = Arc::new(Semaphore::new(max));
    let per_client = Arc::new(PerClient::default());
    let client_limit = per_client_slots(max);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(client_slot) = per_client.take(peer.ip(), client_limit) else {
            handler.shared.metrics.event(Event::TcpRejected);
            drop(stream);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            handler.shared.metrics.event(Event::TcpRejected);
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let (stream, handle) = DnsTcpStream::from_stream(AsyncIoTokioAsStd(stream), peer);
            let mut messages = TimeoutStream::new(stream, idle);
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = stop.cancelled() => break,
                };
                let Some(Ok(message)) = next else { break };
                let (bytes, src) = message.into_parts();
                let response = ResponseHandle::new(src, handle.clone(), Protocol::Tcp);
                serve_message(&handler, bytes, src, Protocol::Tcp, response).await;
            }
            drop(permit);
            drop(client_slot);
        });
    }
    let open = max - slots.available_permits();
    tracing::info!(
        %addr,
        open_connections = open,
        "TCP stopped accepting; open connections close after their current query"
    );
}
