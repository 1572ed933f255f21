//! The RTMP handshake, in both the simple (echo) form of the spec and the HMAC-SHA256 digest
//! form that Flash Player, ffmpeg and OBS use and that some clients (ffmpeg when playing) verify.
//!
//! Only version 3 (plain RTMP) is accepted: 6 would be RTMPE, which we do not implement.

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Size of C1/C2/S1/S2.
pub const PACKET_SIZE: usize = 1536;
const DIGEST_SIZE: usize = 32;
const RTMP_VERSION: u8 = 3;

const KEY_SUFFIX: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
const GENUINE_FP: &[u8] = b"Genuine Adobe Flash Player 001";
const GENUINE_FMS: &[u8] = b"Genuine Adobe Flash Media Server 001";
/// Version field we put in S1; a major version >= 3 tells ffmpeg to verify our digests.
const SERVER_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];
/// Version field we put in C1 (a Flash Player 9+ version, which announces the digest form).
const CLIENT_VERSION: [u8; 4] = [0x80, 0x00, 0x07, 0x02];

/// Why the handshake failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0/S0 asked for a version other than 3 (6 would be RTMPE).
    #[error("unsupported RTMP version {0} (only 3, plain RTMP, is supported)")]
    UnsupportedVersion(u8),
}

/// Whether a handshake is finished after a `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeProgress {
    /// More bytes from the peer are needed.
    InProgress,
    /// The handshake is complete; what follows in the buffer is the chunk stream.
    Done,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_SIZE] {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn full_key(genuine: &[u8]) -> Vec<u8> {
    [genuine, &KEY_SUFFIX[..]].concat()
}

/// Digest position in a C1/S1 for the two known layouts ("schemes").
fn digest_offset(packet: &[u8; PACKET_SIZE], scheme: usize) -> usize {
    let base = if scheme == 0 { 8 } else { 772 };
    let sum: usize = packet[base..base + 4].iter().map(|&b| b as usize).sum();
    base + 4 + sum % 728
}

fn packet_digest(packet: &[u8; PACKET_SIZE], offset: usize, key: &[u8]) -> [u8; DIGEST_SIZE] {
    hmac(key, &[&packet[..offset], &packet[offset + DIGEST_SIZE..]])
}

/// Finds a valid digest in `packet` signed with `key`: returns it with its scheme.
fn find_digest(packet: &[u8; PACKET_SIZE], key: &[u8]) -> Option<([u8; DIGEST_SIZE], usize)> {
    (0..2).find_map(|scheme| {
        let offset = digest_offset(packet, scheme);
        let expected = packet_digest(packet, offset, key);
        (packet[offset..offset + DIGEST_SIZE] == expected).then_some((expected, scheme))
    })
}

/// Builds a C1/S1 with random content and a digest signed with `key` at `scheme`.
fn signed_packet(version: [u8; 4], key: &[u8], scheme: usize) -> Box<[u8; PACKET_SIZE]> {
    let mut p = Box::new([0u8; PACKET_SIZE]);
    rand::rng().fill_bytes(&mut p[8..]);
    p[4..8].copy_from_slice(&version);
    let offset = digest_offset(&p, scheme);
    let digest = packet_digest(&p, offset, key);
    p[offset..offset + DIGEST_SIZE].copy_from_slice(&digest);
    p
}

/// Builds a C2/S2 answering a peer digest: random bytes signed with HMAC(full key, digest).
fn signed_response(peer_digest: &[u8; DIGEST_SIZE], full_key: &[u8]) -> Box<[u8; PACKET_SIZE]> {
    let mut p = Box::new([0u8; PACKET_SIZE]);
    rand::rng().fill_bytes(&mut p[..]);
    let key = hmac(full_key, &[peer_digest]);
    let sig = hmac(&key, &[&p[..PACKET_SIZE - DIGEST_SIZE]]);
    p[PACKET_SIZE - DIGEST_SIZE..].copy_from_slice(&sig);
    p
}

fn read_packet(buf: &mut BytesMut) -> Box<[u8; PACKET_SIZE]> {
    let mut p = Box::new([0u8; PACKET_SIZE]);
    p.copy_from_slice(&buf.split_to(PACKET_SIZE));
    p
}

fn check_version(v: u8) -> Result<(), HandshakeError> {
    if v == RTMP_VERSION {
        Ok(())
    } else {
        Err(HandshakeError::UnsupportedVersion(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    WaitC0C1,
    WaitC2,
    Done,
}

/// Server side: consumes C0+C1, answers S0+S1+S2, consumes C2.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake waiting for C0+C1.
    pub fn new() -> Self {
        ServerHandshake {
            state: ServerState::WaitC0C1,
        }
    }

    /// Consumes what it can from `buf` and appends replies to `out`. Bytes after C2 stay in
    /// `buf`.
    pub fn feed(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<HandshakeProgress, HandshakeError> {
        if self.state == ServerState::WaitC0C1 {
            if let Some(&v) = buf.first() {
                check_version(v)?;
            }
            if buf.len() < 1 + PACKET_SIZE {
                return Ok(HandshakeProgress::InProgress);
            }
            let _ = buf.split_to(1);
            let c1 = read_packet(buf);
            out.reserve(1 + 2 * PACKET_SIZE);
            out.put_u8(RTMP_VERSION);
            // A zero version field means a client that only knows the simple handshake.
            let digest = if c1[4..8] == [0; 4] {
                None
            } else {
                find_digest(&c1, GENUINE_FP)
            };
            match digest {
                Some((client_digest, scheme)) => {
                    out.put_slice(&signed_packet(SERVER_VERSION, GENUINE_FMS, scheme)[..]);
                    out.put_slice(&signed_response(&client_digest, &full_key(GENUINE_FMS))[..]);
                }
                None => {
                    let mut s1 = [0u8; PACKET_SIZE];
                    rand::rng().fill_bytes(&mut s1[8..]);
                    out.put_slice(&s1);
                    out.put_slice(&c1[..]);
                }
            }
            self.state = ServerState::WaitC2;
        }
        if self.state == ServerState::WaitC2 {
            // C2 is not verified: Flash Player, like others, is known to send C2s that fail it.
            if buf.len() < PACKET_SIZE {
                return Ok(HandshakeProgress::InProgress);
            }
            let _ = buf.split_to(PACKET_SIZE);
            self.state = ServerState::Done;
        }
        Ok(HandshakeProgress::Done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Idle,
    WaitS0S1,
    WaitS2,
    Done,
}

/// Client side: sends C0+C1 (digest form, like ffmpeg), consumes S0+S1, answers C2, consumes S2.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandshake {
    /// A handshake that has not sent C0+C1 yet; call [`start`](Self::start).
    pub fn new() -> Self {
        ClientHandshake {
            state: ClientState::Idle,
        }
    }

    /// Writes C0+C1.
    pub fn start(&mut self, out: &mut BytesMut) {
        out.reserve(1 + PACKET_SIZE);
        out.put_u8(RTMP_VERSION);
        out.put_slice(&signed_packet(CLIENT_VERSION, GENUINE_FP, 0)[..]);
        self.state = ClientState::WaitS0S1;
    }

    /// Consumes S0+S1 (answering C2) and S2. Bytes after S2 stay in `buf`. Calling this before
    /// [`ClientHandshake::start`] starts the handshake first.
    pub fn feed(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<HandshakeProgress, HandshakeError> {
        if self.state == ClientState::Idle {
            self.start(out);
        }
        if self.state == ClientState::WaitS0S1 {
            if let Some(&v) = buf.first() {
                check_version(v)?;
            }
            if buf.len() < 1 + PACKET_SIZE {
                return Ok(HandshakeProgress::InProgress);
            }
            let _ = buf.split_to(1);
            let s1 = read_packet(buf);
            match find_digest(&s1, GENUINE_FMS) {
                Some((server_digest, _)) => {
                    out.put_slice(&signed_response(&server_digest, &full_key(GENUINE_FP))[..]);
                }
                None => out.put_slice(&s1[..]),
            }
            self.state = ClientState::WaitS2;
        }
        if self.state == ClientState::WaitS2 {
            // S2 is not verified, for the same tolerance reasons as C2 on the server.
            if buf.len() < PACKET_SIZE {
                return Ok(HandshakeProgress::InProgress);
            }
            let _ = buf.split_to(PACKET_SIZE);
            self.state = ClientState::Done;
        }
        Ok(HandshakeProgress::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

    fn client_c1(version: [u8; 4], scheme: usize) -> BytesMut {
        let mut c0c1 = BytesMut::new();
        c0c1.put_u8(3);
        c0c1.put_slice(&signed_packet(version, GENUINE_FP, scheme)[..]);
        c0c1
    }

    #[test]
    fn digest_handshake_both_schemes() {
        for scheme in 0..2 {
            let mut server = ServerHandshake::new();
            let mut buf = client_c1(CLIENT_VERSION, scheme);
            let c1: [u8; PACKET_SIZE] = buf[1..].try_into().unwrap();
            let client_digest = find_digest(&c1, GENUINE_FP).unwrap();
            assert_eq!(client_digest.1, scheme);
            let mut out = BytesMut::new();
            assert_eq!(
                server.feed(&mut buf, &mut out).unwrap(),
                HandshakeProgress::InProgress
            );
            assert_eq!(out.len(), 1 + 2 * PACKET_SIZE);
            let s1: [u8; PACKET_SIZE] = out[1..1 + PACKET_SIZE].try_into().unwrap();
            assert_eq!(s1[4..8], SERVER_VERSION);
            // S1 carries a server digest in the client's scheme (ffmpeg checks this)...
            let (server_digest, s_scheme) = find_digest(&s1, GENUINE_FMS).unwrap();
            assert_eq!(s_scheme, scheme);
            assert_ne!(server_digest, [0; 32]);
            // ...and S2 is signed with a key derived from the client digest.
            let s2 = &out[1 + PACKET_SIZE..];
            let key = hmac(&full_key(GENUINE_FMS), &[&client_digest.0]);
            let sig = hmac(&key, &[&s2[..PACKET_SIZE - DIGEST_SIZE]]);
            assert_eq!(&s2[PACKET_SIZE - DIGEST_SIZE..], &sig);
        }
    }

    #[test]
    fn simple_handshake_echoes_c1() {
        let mut server = ServerHandshake::new();
        let mut buf = BytesMut::new();
        buf.put_u8(3);
        let c1: Vec<u8> = (0..PACKET_SIZE)
            .map(|i| if i < 8 { 0 } else { i as u8 })
            .collect();
        buf.put_slice(&c1);
        let mut out = BytesMut::new();
        server.feed(&mut buf, &mut out).unwrap();
        assert_eq!(&out[1 + PACKET_SIZE..], &c1[..]);
        // C2 plus the start of the chunk stream arrive together: the extra byte stays.
        buf.put_slice(&[0u8; PACKET_SIZE]);
        buf.put_u8(0x42);
        assert_eq!(
            server.feed(&mut buf, &mut out).unwrap(),
            HandshakeProgress::Done
        );
        assert_eq!(&buf[..], &[0x42]);
    }

    #[test]
    fn undigested_c1_with_version_falls_back_to_echo() {
        let mut server = ServerHandshake::new();
        let mut buf = BytesMut::new();
        buf.put_u8(3);
        let c1 = [7u8; PACKET_SIZE];
        buf.put_slice(&c1);
        let mut out = BytesMut::new();
        server.feed(&mut buf, &mut out).unwrap();
        assert_eq!(&out[1 + PACKET_SIZE..], &c1[..]);
    }

    #[test]
    fn bad_version_is_rejected_immediately() {
        let mut server = ServerHandshake::new();
        let mut buf = BytesMut::from(&[6u8][..]);
        let err = server.feed(&mut buf, &mut BytesMut::new()).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion(6));
        let mut client = ClientHandshake::new();
        let mut out = BytesMut::new();
        client.start(&mut out);
        let mut buf = BytesMut::from(&[0x16u8, 3, 1][..]);
        assert!(client.feed(&mut buf, &mut out).is_err());
    }

    #[test]
    fn our_client_and_server_byte_by_byte() {
        let mut client = ClientHandshake::new();
        let mut server = ServerHandshake::new();
        let mut c2s = BytesMut::new();
        let mut s2c = BytesMut::new();
        client.start(&mut c2s);
        let (mut server_in, mut client_in) = (BytesMut::new(), BytesMut::new());
        let (mut c_done, mut s_done) = (false, false);
        for _ in 0..10_000 {
            if !c2s.is_empty() {
                server_in.put_u8(c2s.split_to(1)[0]);
                s_done = server.feed(&mut server_in, &mut s2c).unwrap() == HandshakeProgress::Done;
            }
            if !s2c.is_empty() {
                client_in.put_u8(s2c.split_to(1)[0]);
                c_done = client.feed(&mut client_in, &mut c2s).unwrap() == HandshakeProgress::Done;
            }
            if c_done && s_done {
                break;
            }
        }
        assert!(c_done && s_done);
        assert!(c2s.is_empty() && s2c.is_empty() && server_in.is_empty() && client_in.is_empty());
    }

    fn rml_bytes(r: HandshakeProcessResult) -> (Vec<u8>, bool) {
        match r {
            HandshakeProcessResult::InProgress { response_bytes } => (response_bytes, false),
            HandshakeProcessResult::Completed { response_bytes, .. } => (response_bytes, true),
        }
    }

    #[test]
    fn rml_client_against_our_server() {
        let mut rml = Handshake::new(PeerType::Client);
        let c0c1 = rml.generate_outbound_p0_and_p1().unwrap();
        let mut server = ServerHandshake::new();
        let mut buf = BytesMut::from(&c0c1[..]);
        let mut out = BytesMut::new();
        server.feed(&mut buf, &mut out).unwrap();
        // rml's C1 carries a digest, so our S1 must too.
        let s1: [u8; PACKET_SIZE] = out[1..1 + PACKET_SIZE].try_into().unwrap();
        assert!(find_digest(&s1, GENUINE_FMS).is_some());
        let (c2, done) = rml_bytes(rml.process_bytes(&out).unwrap());
        assert!(done);
        let mut buf = BytesMut::from(&c2[..]);
        assert_eq!(
            server.feed(&mut buf, &mut BytesMut::new()).unwrap(),
            HandshakeProgress::Done
        );
    }

    #[test]
    fn our_client_against_rml_server() {
        let mut rml = Handshake::new(PeerType::Server);
        let mut client = ClientHandshake::new();
        let mut out = BytesMut::new();
        client.start(&mut out);
        let (s0s1s2, _) = rml_bytes(rml.process_bytes(&out).unwrap());
        let mut buf = BytesMut::from(&s0s1s2[..]);
        let mut c2 = BytesMut::new();
        assert_eq!(
            client.feed(&mut buf, &mut c2).unwrap(),
            HandshakeProgress::Done
        );
        // rml signs S1 with the FMS key, so we answer with a signed C2.
        let s1: [u8; PACKET_SIZE] = s0s1s2[1..1 + PACKET_SIZE].try_into().unwrap();
        let (server_digest, _) = find_digest(&s1, GENUINE_FMS).unwrap();
        let key = hmac(&full_key(GENUINE_FP), &[&server_digest]);
        assert_eq!(
            &c2[PACKET_SIZE - DIGEST_SIZE..],
            &hmac(&key, &[&c2[..PACKET_SIZE - DIGEST_SIZE]])
        );
        let (_, done) = rml_bytes(rml.process_bytes(&c2).unwrap());
        assert!(done);
    }
}
