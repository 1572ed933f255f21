//! DNS wire format: a strict, allocation-free parser for incoming queries and a small writer for
//! responses. Only what an authoritative server needs: one question, an optional OPT record
//! (EDNS0, RFC 6891) with the client-subnet option (RFC 7871), nothing else in the message.

use crate::ecs::{self, ClientSubnet};

/// Record types the server knows by number.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const HTTPS: u16 = 65;
    pub const CAA: u16 = 257;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Largest UDP payload we ever send (DNS flag day 2020 recommendation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Size of the DNS header.
pub const HEADER_LEN: usize = 12;

/// Response codes (the 4 low bits; BADVERS goes through the OPT record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    BadVers,
}

impl Rcode {
    /// The full 12-bit code.
    pub fn code(self) -> u16 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::BadVers => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
            Rcode::BadVers => "BADVERS",
        }
    }
}

/// The EDNS0 part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub client_subnet: Option<ClientSubnet>,
}

/// A parsed query. Borrowed from the packet; the name is also kept lowercased for lookups.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub id: u16,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// The question section as received (name, type, class), copied verbatim into the answer.
    pub question: &'a [u8],
    /// The query name in wire form, lowercased.
    pub qname: LowerName,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

/// A domain name in wire form (length-prefixed labels, terminating zero), ASCII-lowercased.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LowerName {
    buf: [u8; 255],
    len: u8,
}

impl LowerName {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Offsets of every label start; the last entry is the root label.
    pub fn label_starts(&self) -> impl Iterator<Item = usize> + '_ {
        let bytes = self.as_bytes();
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= bytes.len() {
                return None;
            }
            let here = pos;
            pos += usize::from(bytes[pos]) + 1;
            Some(here)
        })
    }
}

impl std::fmt::Debug for LowerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&name_to_string(self.as_bytes()))
    }
}

/// Why a packet was not turned into a [`Query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not worth an answer: too short for a header, or a response (QR set).
    Drop,
    /// Header readable, rest malformed: answer FORMERR (RD and CD copied).
    FormErr {
        id: u16,
        opcode: u8,
        rd: bool,
        cd: bool,
    },
    /// Opcode other than QUERY: answer NOTIMP.
    NotImp {
        id: u16,
        opcode: u8,
        rd: bool,
        cd: bool,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        let s = self.buf.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    /// Skips a possibly compressed name (in the additional section).
    fn skip_name(&mut self) -> Option<bool> {
        let mut is_root = true;
        for _ in 0..128 {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 if len == 0 => return Some(is_root),
                0x00 => {
                    is_root = false;
                    self.take(usize::from(len))?;
                }
                0xC0 => {
                    self.u8()?;
                    return Some(false);
                }
                _ => return None,
            }
        }
        None
    }
}

/// Parses a query packet. Strict: exactly one question, no answer/authority records, at most one
/// OPT in the additional section, no trailing bytes.
pub fn parse_query(packet: &[u8]) -> Result<Query<'_>, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Drop);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::Drop);
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let rd = flags & 0x0100 != 0;
    let cd = flags & 0x0010 != 0;
    if opcode != 0 {
        return Err(ParseError::NotImp { id, opcode, rd, cd });
    }
    let formerr = ParseError::FormErr { id, opcode, rd, cd };
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    let ancount = u16::from_be_bytes([packet[6], packet[7]]);
    let nscount = u16::from_be_bytes([packet[8], packet[9]]);
    let arcount = u16::from_be_bytes([packet[10], packet[11]]);
    if qdcount != 1 || ancount != 0 || nscount != 0 {
        return Err(formerr);
    }
    let mut r = Reader {
        buf: packet,
        pos: HEADER_LEN,
    };
    let mut qname = LowerName {
        buf: [0; 255],
        len: 0,
    };
    let mut n = 0usize;
    loop {
        let len = r.u8().ok_or(formerr)?;
        if len & 0xC0 != 0 {
            // No compression in a lone question; other label types are obsolete.
            return Err(formerr);
        }
        let len = usize::from(len);
        if n + 1 + len > 255 {
            return Err(formerr);
        }
        qname.buf[n] = len as u8;
        n += 1;
        if len == 0 {
            break;
        }
        let label = r.take(len).ok_or(formerr)?;
        for (dst, src) in qname.buf[n..n + len].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        n += len;
    }
    qname.len = n as u8;
    let qtype = r.u16().ok_or(formerr)?;
    let qclass = r.u16().ok_or(formerr)?;
    let question = &packet[HEADER_LEN..r.pos];

    let mut edns = None;
    for _ in 0..arcount {
        let root_owner = r.skip_name().ok_or(formerr)?;
        let rtype_ = r.u16().ok_or(formerr)?;
        let class = r.u16().ok_or(formerr)?;
        let ttl = r.u32().ok_or(formerr)?;
        let rdlen = r.u16().ok_or(formerr)?;
        let rdata = r.take(usize::from(rdlen)).ok_or(formerr)?;
        if rtype_ != rtype::OPT {
            // TSIG/SIG(0) are not supported; anything else has no place in a query.
            return Err(formerr);
        }
        if edns.is_some() || !root_owner {
            return Err(formerr);
        }
        edns = Some(parse_opt(class, ttl, rdata).ok_or(formerr)?);
    }
    if r.pos != packet.len() {
        return Err(formerr);
    }
    Ok(Query {
        id,
        recursion_desired: rd,
        checking_disabled: cd,
        question,
        qname,
        qtype,
        qclass,
        edns,
    })
}

fn parse_opt(class: u16, ttl: u32, rdata: &[u8]) -> Option<Edns> {
    let mut r = Reader { buf: rdata, pos: 0 };
    let mut client_subnet = None;
    while r.pos < rdata.len() {
        let code = r.u16()?;
        let len = r.u16()?;
        let data = r.take(usize::from(len))?;
        if code == ecs::OPTION_CODE {
            if client_subnet.is_some() {
                return None;
            }
            client_subnet = Some(ClientSubnet::parse(data).ok()?);
        }
    }
    Some(Edns {
        udp_payload: class,
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        client_subnet,
    })
}

/// Converts a presentation-form name ("live.example.com" or "live.example.com.") to lowercased
/// wire form.
pub fn name_from_str(name: &str) -> Result<Vec<u8>, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(format!("empty label in name {name:?}"));
            }
            if label.len() > 63 {
                return Err(format!("label longer than 63 bytes in name {name:?}"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
            {
                return Err(format!(
                    "label {label:?} in name {name:?} has characters other than letters, digits, '-', '_'"
                ));
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    if out.len() > 255 {
        return Err(format!("name {name:?} is longer than 255 bytes"));
    }
    Ok(out)
}

/// Presentation form of a wire name (absolute, with trailing dot).
pub fn name_to_string(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut pos = 0usize;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        let label = wire.get(pos + 1..pos + 1 + usize::from(len)).unwrap_or(&[]);
        s.push_str(&String::from_utf8_lossy(label));
        s.push('.');
        pos += usize::from(len) + 1;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Is `name` equal to or below `apex` (both lowercased wire form)?
pub fn is_subdomain(name: &[u8], apex: &[u8]) -> bool {
    if name.len() < apex.len() || !name.ends_with(apex) {
        return false;
    }
    // The suffix must start at a label boundary.
    let boundary = name.len() - apex.len();
    let mut pos = 0usize;
    while pos < boundary {
        pos += usize::from(name[pos]) + 1;
    }
    pos == boundary
}

/// Where an owner name comes from when writing a record.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// A compression pointer to this offset of the message.
    Pointer(u16),
    /// The full name in wire form.
    Name(&'a [u8]),
}

/// Writes a response message into a reusable buffer.
pub struct ResponseWriter<'b> {
    buf: &'b mut Vec<u8>,
    counts: [u16; 3],
    section: usize,
}

/// The answer header fields that are not counts.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHeader {
    pub id: u16,
    pub opcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub rcode: Rcode,
}

/// Offset of the question name in every message.
pub const QNAME_OFFSET: u16 = HEADER_LEN as u16;

impl<'b> ResponseWriter<'b> {
    /// Starts a response; `question` (raw name+type+class) may be empty.
    pub fn new(buf: &'b mut Vec<u8>, header: ResponseHeader, question: &[u8]) -> Self {
        buf.clear();
        let mut flags: u16 = 0x8000 | (u16::from(header.opcode & 0xF) << 11);
        if header.authoritative {
            flags |= 0x0400;
        }
        if header.truncated {
            flags |= 0x0200;
        }
        if header.recursion_desired {
            flags |= 0x0100;
        }
        if header.checking_disabled {
            flags |= 0x0010;
        }
        flags |= header.rcode.code() & 0xF;
        buf.extend_from_slice(&header.id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        let qd: u16 = if question.is_empty() { 0 } else { 1 };
        buf.extend_from_slice(&qd.to_be_bytes());
        buf.extend_from_slice(&[0; 6]);
        buf.extend_from_slice(question);
        ResponseWriter {
            buf,
            counts: [0; 3],
            section: 0,
        }
    }

    /// Moves on to the authority (1) or additional (2) section.
    pub fn section(&mut self, section: usize) {
        debug_assert!(section >= self.section && section < 3);
        self.section = section;
    }

    pub fn record(&mut self, owner: Owner<'_>, rtype_: u16, ttl: u32, rdata: &[u8]) {
        match owner {
            Owner::Pointer(off) => self.buf.extend_from_slice(&(0xC000 | off).to_be_bytes()),
            Owner::Name(name) => self.buf.extend_from_slice(name),
        }
        self.buf.extend_from_slice(&rtype_.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf
            .extend_from_slice(&(rdata.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self.counts[self.section] = self.counts[self.section].saturating_add(1);
    }

    /// Appends the OPT record (always last).
    pub fn opt(&mut self, rcode: Rcode, dnssec_ok: bool, client_subnet: Option<&ClientSubnet>) {
        self.section = 2;
        self.buf.push(0);
        self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        let ext_rcode = (rcode.code() >> 4) as u8;
        let flags: u16 = if dnssec_ok { 0x8000 } else { 0 };
        self.buf.extend_from_slice(&[ext_rcode, 0]);
        self.buf.extend_from_slice(&flags.to_be_bytes());
        match client_subnet {
            Some(cs) => {
                let mut opt = [0u8; 4 + ecs::MAX_LEN];
                let n = cs.write_option(&mut opt);
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
                self.buf.extend_from_slice(&opt[..n]);
            }
            None => self.buf.extend_from_slice(&0u16.to_be_bytes()),
        }
        self.counts[2] = self.counts[2].saturating_add(1);
    }

    /// Writes the section counts into the header.
    pub fn finish(self) {
        for (i, c) in self.counts.iter().enumerate() {
            let at = 6 + 2 * i;
            self.buf[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend(name_from_str(name).unwrap());
        p.extend(qtype.to_be_bytes());
        p.extend(CLASS_IN.to_be_bytes());
        p
    }

    #[test]
    fn parses_simple_query_and_lowercases() {
        let p = query("Live.Example.COM", rtype::A);
        let q = parse_query(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired);
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(format!("{:?}", q.qname), "live.example.com.");
        assert!(q.edns.is_none());
        assert_eq!(q.question.len(), p.len() - HEADER_LEN);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_query(&[0; 5]).map(|_| ()), Err(ParseError::Drop));
        let mut p = query("a.b", rtype::A);
        p.push(0); // trailing byte
        assert!(matches!(parse_query(&p), Err(ParseError::FormErr { .. })));
        let mut p = query("a.b", rtype::A);
        p[5] = 2; // qdcount 2
        assert!(matches!(parse_query(&p), Err(ParseError::FormErr { .. })));
        let mut p = query("a.b", rtype::A);
        p[2] |= 0x80; // a response
        assert_eq!(parse_query(&p).map(|_| ()), Err(ParseError::Drop));
        let mut p = query("a.b", rtype::A);
        p[2] = 0x28; // opcode 5 (UPDATE)
        assert!(matches!(parse_query(&p), Err(ParseError::NotImp { .. })));
        let mut p = query("a.b", rtype::A);
        p[12] = 0xC0; // compression pointer in the question
        assert!(matches!(parse_query(&p), Err(ParseError::FormErr { .. })));
    }

    #[test]
    fn parses_edns_and_rejects_two_opts() {
        let mut p = query("a.b", rtype::AAAA);
        p[11] = 1;
        p.extend([0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        let q = parse_query(&p).unwrap();
        let e = q.edns.unwrap();
        assert_eq!(e.udp_payload, 1232);
        assert!(e.dnssec_ok);
        assert_eq!(e.version, 0);
        p[11] = 2;
        p.extend([0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        assert!(matches!(parse_query(&p), Err(ParseError::FormErr { .. })));
    }

    #[test]
    fn subdomain_respects_label_boundaries() {
        let apex = name_from_str("example.com").unwrap();
        assert!(is_subdomain(
            &name_from_str("live.example.com").unwrap(),
            &apex
        ));
        assert!(is_subdomain(&apex, &apex));
        assert!(!is_subdomain(
            &name_from_str("badexample.com").unwrap(),
            &apex
        ));
        assert!(!is_subdomain(&name_from_str("com").unwrap(), &apex));
    }

    #[test]
    fn name_round_trip_and_errors() {
        assert_eq!(name_to_string(&name_from_str("A.b.").unwrap()), "a.b.");
        assert_eq!(name_to_string(&name_from_str(".").unwrap()), ".");
        assert!(name_from_str("a..b").is_err());
        assert!(name_from_str("a b").is_err());
    }
}
