//! Session-level tests: our client against our server, both against the independent rml_rtmp
//! implementation, hand-driven protocol edge cases, and a replay of the fuzz corpus.

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Value};
use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits, RawMessage, encode_message};
use super::client::{ClientConfig, ClientEvent, ClientSession};
use super::handshake::{ClientHandshake, HandshakeProgress};
use super::message::{self as msg, Message, UserControl};
use super::server::{ServerConfig, ServerEvent, ServerSession};
use super::session::SessionError;

fn metadata_payload() -> Bytes {
    let mut out = BytesMut::new();
    amf0::encode_all(
        &[
            Value::string("onMetaData"),
            Value::object([
                ("width", Value::Number(1280.0)),
                ("height", Value::Number(720.0)),
                ("videocodecid", Value::Number(7.0)),
            ]),
        ],
        &mut out,
    );
    out.freeze()
}

/// Moves bytes both ways until neither side has anything to say.
fn pump(client: &mut ClientSession, server: &mut ServerSession) {
    let mut to_server = BytesMut::new();
    let mut to_client = BytesMut::new();
    loop {
        let mut moved = false;
        while let Some(b) = client.take_output() {
            to_server.extend_from_slice(&b);
            moved = true;
        }
        server.feed(&mut to_server).expect("server feed");
        while let Some(b) = server.take_output() {
            to_client.extend_from_slice(&b);
            moved = true;
        }
        client.feed(&mut to_client).expect("client feed");
        if !moved {
            return;
        }
    }
}

fn server_events(s: &mut ServerSession) -> Vec<ServerEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn client_events(c: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn connected_pair(config: ServerConfig) -> (ClientSession, ServerSession) {
    let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://example.net/live"));
    let server = ServerSession::new(config);
    client.start();
    (client, server)
}

/// Serializes media the way the hub does: stateless, shared chunk size.
fn hub_write(server: &mut ServerSession, out: &mut BytesMut, event: &ServerEvent, stream_id: u32) {
    let cs = server.chunk_size() as usize;
    match event {
        ServerEvent::Metadata {
            timestamp, payload, ..
        } => encode_message(
            out,
            msg::CSID_DATA,
            *timestamp,
            msg::DATA_AMF0,
            stream_id,
            payload,
            cs,
        ),
        ServerEvent::Audio {
            timestamp, payload, ..
        } => encode_message(
            out,
            msg::CSID_AUDIO,
            *timestamp,
            msg::AUDIO,
            stream_id,
            payload,
            cs,
        ),
        ServerEvent::Video {
            timestamp, payload, ..
        } => encode_message(
            out,
            msg::CSID_VIDEO,
            *timestamp,
            msg::VIDEO,
            stream_id,
            payload,
            cs,
        ),
        other => panic!("not media: {other:?}"),
    }
}

#[test]
fn publish_then_play_through_our_own_sessions() {
    let (mut publisher, mut ingest) = connected_pair(ServerConfig::default());
    publisher.publish("cam1?token=abc");
    pump(&mut publisher, &mut ingest);
    assert_eq!(
        server_events(&mut ingest),
        vec![
            ServerEvent::Connect {
                app: "live".into(),
                tc_url: Some("rtmp://example.net/live".into()),
                object_encoding: 0.0
            },
            ServerEvent::Publish {
                stream_id: 1,
                key: "cam1?token=abc".into(),
                publish_type: "live".into()
            },
        ]
    );
    assert_eq!(client_events(&mut publisher), vec![ClientEvent::Connected]);
    ingest.accept_publish(1);
    pump(&mut publisher, &mut ingest);
    assert_eq!(
        client_events(&mut publisher),
        vec![ClientEvent::PublishStarted]
    );

    let video: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    publisher.send_metadata(0, &metadata_payload());
    publisher.send_video(0, &[0x17, 0, 0, 0, 0, 1, 2]);
    publisher.send_audio(23, &[0xAF, 1, 9]);
    publisher.send_video(0x0100_0000, &video);
    pump(&mut publisher, &mut ingest);
    let media = server_events(&mut ingest);
    assert_eq!(
        media,
        vec![
            ServerEvent::Metadata {
                stream_id: 1,
                timestamp: 0,
                payload: metadata_payload()
            },
            ServerEvent::Video {
                stream_id: 1,
                timestamp: 0,
                payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2])
            },
            ServerEvent::Audio {
                stream_id: 1,
                timestamp: 23,
                payload: Bytes::from_static(&[0xAF, 1, 9])
            },
            ServerEvent::Video {
                stream_id: 1,
                timestamp: 0x0100_0000,
                payload: video.clone().into()
            },
        ]
    );

    // A player on another connection receives what the hub forwards.
    let (mut player, mut edge) = connected_pair(ServerConfig::default());
    player.play("cam1");
    pump(&mut player, &mut edge);
    let events = server_events(&mut edge);
    assert_eq!(
        events[1],
        ServerEvent::Play {
            stream_id: 1,
            key: "cam1".into(),
            start: -2.0
        }
    );
    edge.accept_play(1);
    pump(&mut player, &mut edge);
    let events = client_events(&mut player);
    assert!(events.contains(&ClientEvent::PlayStarted), "{events:?}");
    assert_eq!(edge.chunk_size(), 4096);

    let mut wire = BytesMut::new();
    while let Some(b) = edge.take_output() {
        wire.extend_from_slice(&b);
    }
    for event in &media {
        hub_write(&mut edge, &mut wire, event, 1);
    }
    player.feed(&mut wire).unwrap();
    assert!(wire.is_empty());
    assert_eq!(
        client_events(&mut player),
        vec![
            ClientEvent::Metadata {
                timestamp: 0,
                payload: metadata_payload()
            },
            ClientEvent::Video {
                timestamp: 0,
                payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2])
            },
            ClientEvent::Audio {
                timestamp: 23,
                payload: Bytes::from_static(&[0xAF, 1, 9])
            },
            ClientEvent::Video {
                timestamp: 0x0100_0000,
                payload: video.into()
            },
        ]
    );

    publisher.close();
    pump(&mut publisher, &mut ingest);
    assert_eq!(
        server_events(&mut ingest),
        vec![ServerEvent::Unpublish { stream_id: 1 }]
    );
    player.close();
    pump(&mut player, &mut edge);
    assert_eq!(
        server_events(&mut edge),
        vec![ServerEvent::StopPlay { stream_id: 1 }]
    );
}

#[test]
fn rejections_reach_the_client_as_error_status() {
    let (mut publisher, mut server) = connected_pair(ServerConfig::default());
    publisher.publish("taken");
    pump(&mut publisher, &mut server);
    server_events(&mut server);
    server.reject_publish(1, "NetStream.Publish.BadName", "Stream already publishing");
    pump(&mut publisher, &mut server);
    assert_eq!(
        client_events(&mut publisher),
        vec![
            ClientEvent::Connected,
            ClientEvent::Status {
                level: "error".into(),
                code: "NetStream.Publish.BadName".into(),
                description: "Stream already publishing".into()
            }
        ]
    );
    // Media on a rejected stream is dropped and counted.
    publisher.send_audio(0, &[0xAF, 1]);
    pump(&mut publisher, &mut server);
    assert!(server_events(&mut server).is_empty());
    assert_eq!(server.ignored_media(), 1);

    let (mut player, mut server) = connected_pair(ServerConfig::default());
    player.play("missing");
    pump(&mut player, &mut server);
    server.reject_play(1, "NetStream.Play.StreamNotFound", "No such stream");
    pump(&mut player, &mut server);
    let events = client_events(&mut player);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Status {
            level: "error".into(),
            code: "NetStream.Play.StreamNotFound".into(),
            description: "No such stream".into()
        })
    );
}

#[test]
fn media_before_publish_is_accepted_is_ignored() {
    let (mut publisher, mut server) = connected_pair(ServerConfig::default());
    publisher.publish("k");
    pump(&mut publisher, &mut server);
    publisher.send_video(0, &[0x17, 1]);
    publisher.send_metadata(0, &metadata_payload());
    pump(&mut publisher, &mut server);
    assert_eq!(
        server_events(&mut server).len(),
        2,
        "connect + publish only"
    );
    assert_eq!(server.ignored_media(), 2);
}

/// A hand-driven peer: handshake by [`ClientHandshake`], then raw messages.
struct RawPeer {
    server: ServerSession,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    from_server: BytesMut,
}

impl RawPeer {
    fn new(config: ServerConfig) -> Self {
        let mut server = ServerSession::new(config);
        let mut hs = ClientHandshake::new();
        let mut c2s = BytesMut::new();
        hs.start(&mut c2s);
        server.feed(&mut c2s).unwrap();
        let mut s2c = BytesMut::from(&server.take_output().unwrap()[..]);
        let mut c2 = BytesMut::new();
        assert_eq!(hs.feed(&mut s2c, &mut c2).unwrap(), HandshakeProgress::Done);
        server.feed(&mut c2).unwrap();
        RawPeer {
            server,
            encoder: ChunkEncoder::new(),
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            from_server: BytesMut::new(),
        }
    }

    fn send(&mut self, csid: u32, stream_id: u32, m: &Message) -> Result<(), SessionError> {
        let mut wire = BytesMut::new();
        self.encoder
            .encode(&mut wire, &m.to_raw(csid, 0, stream_id));
        self.server.feed(&mut wire)
    }

    fn command(&mut self, name: &str, tid: f64, object: Value, args: Vec<Value>) {
        let m = Message::command(name, tid, object, args);
        self.send(msg::CSID_COMMAND, 0, &m).unwrap();
    }

    fn connect(&mut self) {
        let object = Value::object([("app", Value::string("live"))]);
        self.command("connect", 1.0, object, vec![]);
        self.received();
        assert!(matches!(
            self.server.poll_event(),
            Some(ServerEvent::Connect { .. })
        ));
    }

    /// Messages the server sent since the last call, honouring its Set Chunk Size.
    fn received(&mut self) -> Vec<Message> {
        while let Some(b) = self.server.take_output() {
            self.from_server.extend_from_slice(&b);
        }
        let mut out = Vec::new();
        while let Some(raw) = self.decoder.decode(&mut self.from_server).unwrap() {
            let m = Message::parse(&raw).unwrap();
            if let Message::SetChunkSize(n) = m {
                self.decoder.set_chunk_size(n).unwrap();
            }
            out.push(m);
        }
        out
    }
}

fn command_names(msgs: &[Message]) -> Vec<(String, f64)> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Command {
                name,
                transaction_id,
                ..
            } => Some((name.clone(), *transaction_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn connect_reply_sequence() {
    let mut peer = RawPeer::new(ServerConfig::default());
    let object = Value::object([
        ("app", Value::string("live")),
        ("objectEncoding", Value::Number(3.0)),
    ]);
    peer.command("connect", 1.0, object, vec![]);
    let got = peer.received();
    assert_eq!(got[0], Message::WindowAckSize(2_500_000));
    assert_eq!(
        got[1],
        Message::SetPeerBandwidth {
            size: 2_500_000,
            limit: msg::LIMIT_DYNAMIC
        }
    );
    assert_eq!(got[2], Message::SetChunkSize(4096));
    let Message::Command {
        name,
        transaction_id,
        args,
        ..
    } = &got[3]
    else {
        panic!("expected _result, got {:?}", got[3]);
    };
    assert_eq!((name.as_str(), *transaction_id), ("_result", 1.0));
    assert_eq!(
        args[0].get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        args[0].get("objectEncoding").and_then(Value::as_f64),
        Some(3.0)
    );
    assert_eq!(got.len(), 4);
}

#[test]
fn commands_before_connect_are_a_protocol_violation() {
    let mut peer = RawPeer::new(ServerConfig::default());
    let m = Message::command("createStream", 2.0, Value::Null, vec![]);
    let err = peer.send(msg::CSID_COMMAND, 0, &m).unwrap_err();
    assert!(matches!(err, SessionError::Protocol(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "protocol violation: command \"createStream\" before connect"
    );
}

#[test]
fn stream_commands_and_unknown_commands() {
    let mut peer = RawPeer::new(ServerConfig::default());
    peer.connect();
    peer.command("releaseStream", 2.0, Value::Null, vec![Value::string("k")]);
    peer.command("FCPublish", 3.0, Value::Null, vec![Value::string("k")]);
    peer.command("createStream", 4.0, Value::Null, vec![]);
    peer.command("createStream", 5.0, Value::Null, vec![]);
    peer.command("getStreamLength", 6.0, Value::Null, vec![]);
    peer.command("noSuchMethod", 7.0, Value::Null, vec![]);
    peer.command("noSuchNotification", 0.0, Value::Null, vec![]);
    let got = peer.received();
    assert_eq!(
        command_names(&got),
        vec![
            ("_result".into(), 2.0),
            ("onFCPublish".into(), 0.0),
            ("_result".into(), 3.0),
            ("_result".into(), 4.0),
            ("_result".into(), 5.0),
            ("_result".into(), 6.0),
            ("_error".into(), 7.0),
        ]
    );
    let stream_ids: Vec<f64> = got[3..5]
        .iter()
        .filter_map(|m| match m {
            Message::Command { args, .. } => args[0].as_f64(),
            _ => None,
        })
        .collect();
    assert_eq!(stream_ids, vec![1.0, 2.0]);
    let Message::Command { args, .. } = &got[6] else {
        panic!()
    };
    assert_eq!(
        args[0].get("code").and_then(Value::as_str),
        Some("NetConnection.Call.Failed")
    );

    // publish via the AMF3 command type, then end it with deleteStream.
    let mut payload = vec![0u8];
    let publish = Message::command("publish", 0.0, Value::Null, vec![Value::string("k")]);
    payload.extend_from_slice(&publish.encode_payload());
    let raw = RawMessage {
        csid: msg::CSID_STREAM,
        timestamp: 0,
        type_id: msg::COMMAND_AMF3,
        stream_id: 2,
        payload: payload.into(),
    };
    let mut wire = BytesMut::new();
    peer.encoder.encode(&mut wire, &raw);
    peer.server.feed(&mut wire).unwrap();
    assert_eq!(
        peer.server.poll_event(),
        Some(ServerEvent::Publish {
            stream_id: 2,
            key: "k".into(),
            publish_type: "live".into()
        })
    );
    peer.command("deleteStream", 0.0, Value::Null, vec![Value::Number(2.0)]);
    assert_eq!(
        peer.server.poll_event(),
        Some(ServerEvent::Unpublish { stream_id: 2 })
    );
}

#[test]
fn fcunpublish_and_close_stream_end_streams_once() {
    let mut peer = RawPeer::new(ServerConfig::default());
    peer.connect();
    let publish = Message::command("publish", 0.0, Value::Null, vec![Value::string("k")]);
    peer.send(msg::CSID_STREAM, 1, &publish).unwrap();
    let play = Message::command("play", 0.0, Value::Null, vec![Value::string("other")]);
    peer.send(msg::CSID_STREAM, 2, &play).unwrap();
    peer.command("FCUnpublish", 0.0, Value::Null, vec![Value::string("k")]);
    let close = Message::command("closeStream", 0.0, Value::Null, vec![]);
    peer.send(msg::CSID_STREAM, 2, &close).unwrap();
    peer.command("deleteStream", 0.0, Value::Null, vec![Value::Number(1.0)]);
    peer.command("deleteStream", 0.0, Value::Null, vec![Value::Number(2.0)]);
    let events = server_events(&mut peer.server);
    assert_eq!(
        events[2..],
        [
            ServerEvent::Unpublish { stream_id: 1 },
            ServerEvent::StopPlay { stream_id: 2 },
        ]
    );
}

#[test]
fn ping_request_is_answered() {
    let mut peer = RawPeer::new(ServerConfig::default());
    let ping = Message::UserControl(UserControl::PingRequest(4242));
    peer.send(msg::CSID_PROTOCOL, 0, &ping).unwrap();
    assert_eq!(
        peer.received(),
        vec![Message::UserControl(UserControl::PingResponse(4242))]
    );
}

#[test]
fn acknowledgement_after_the_window() {
    let config = ServerConfig {
        window_ack_size: 5000,
        ..ServerConfig::default()
    };
    let mut peer = RawPeer::new(config);
    // The handshake alone (3073 bytes) is below the window.
    assert!(peer.received().is_empty());
    peer.connect();
    let audio = Message::Audio(Bytes::from(vec![0xAF; 1000]));
    let mut acks = Vec::new();
    for _ in 0..6 {
        peer.send(msg::CSID_AUDIO, 1, &audio).unwrap();
        for m in peer.received() {
            if let Message::Acknowledgement(n) = m {
                acks.push(n);
            }
        }
    }
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(acks[0] >= 5000 && u64::from(acks[0]) <= peer.server.bytes_received());

    // The peer may ask for a smaller window.
    peer.send(msg::CSID_PROTOCOL, 0, &Message::WindowAckSize(1500))
        .unwrap();
    peer.send(msg::CSID_AUDIO, 1, &audio).unwrap();
    peer.send(msg::CSID_AUDIO, 1, &audio).unwrap();
    let acks = peer
        .received()
        .into_iter()
        .filter(|m| matches!(m, Message::Acknowledgement(_)))
        .count();
    assert!(acks >= 1);
}

#[test]
fn peer_chunk_size_and_abort_are_applied() {
    let mut peer = RawPeer::new(ServerConfig::default());
    peer.connect();
    let publish = Message::command("publish", 0.0, Value::Null, vec![Value::string("k")]);
    peer.send(msg::CSID_STREAM, 1, &publish).unwrap();
    peer.server.accept_publish(1);
    peer.send(msg::CSID_PROTOCOL, 0, &Message::SetChunkSize(1000))
        .unwrap();
    peer.encoder.set_chunk_size(1000);
    let video = Message::Video(Bytes::from(vec![0x27; 2500]));
    peer.send(msg::CSID_VIDEO, 1, &video).unwrap();
    let events = server_events(&mut peer.server);
    assert!(matches!(
        events.last(),
        Some(ServerEvent::Video { payload, .. }) if payload.len() == 2500
    ));

    // Half a message, an Abort, then a complete one.
    let mut wire = BytesMut::new();
    encode_message(&mut wire, 9, 0, msg::VIDEO, 1, &[1; 1500], 1000);
    wire.truncate(12 + 1000);
    peer.server.feed(&mut wire).unwrap();
    peer.send(msg::CSID_PROTOCOL, 0, &Message::Abort(9))
        .unwrap();
    let mut wire = BytesMut::new();
    encode_message(&mut wire, 9, 5, msg::VIDEO, 1, &[2; 10], 1000);
    peer.server.feed(&mut wire).unwrap();
    assert_eq!(
        server_events(&mut peer.server),
        vec![ServerEvent::Video {
            stream_id: 1,
            timestamp: 5,
            payload: Bytes::from_static(&[2; 10])
        }]
    );

    let err = peer
        .send(msg::CSID_PROTOCOL, 0, &Message::SetChunkSize(0))
        .unwrap_err();
    assert!(matches!(err, SessionError::Chunk(_)));
}

#[test]
fn garbage_after_handshake_is_an_error_not_a_panic() {
    let mut peer = RawPeer::new(ServerConfig::default());
    let mut wire = BytesMut::from(&[0xC7, 1, 2, 3][..]);
    let err = peer.server.feed(&mut wire).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chunk stream error: chunk header fmt 3 on chunk stream 7 which has no previous header"
    );
}

#[test]
fn session_input_split_at_every_byte() {
    let (mut client, mut server) = connected_pair(ServerConfig::default());
    client.publish("k");
    let mut total_input = 0;
    let mut events = Vec::new();
    let mut media_sent = false;
    for _ in 0..10 {
        let mut input = BytesMut::new();
        while let Some(b) = client.take_output() {
            input.extend_from_slice(&b);
        }
        total_input += input.len();
        let mut buf = BytesMut::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            server.feed(&mut buf).unwrap();
        }
        assert!(buf.is_empty());
        while let Some(e) = server.poll_event() {
            if let ServerEvent::Publish { stream_id, .. } = e {
                server.accept_publish(stream_id);
            }
            events.push(e);
        }
        let mut to_client = BytesMut::new();
        while let Some(b) = server.take_output() {
            to_client.extend_from_slice(&b);
        }
        client.feed(&mut to_client).unwrap();
        if !media_sent && client_events(&mut client).contains(&ClientEvent::PublishStarted) {
            client.send_metadata(5, &metadata_payload());
            client.send_video(7, &[0x17; 5000]);
            media_sent = true;
        }
    }
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        matches!(&events[2], ServerEvent::Metadata { timestamp: 5, payload, .. } if *payload == metadata_payload())
    );
    assert!(
        matches!(&events[3], ServerEvent::Video { timestamp: 7, payload, .. } if payload.len() == 5000)
    );
    assert_eq!(server.bytes_received(), total_input as u64);
}

mod rml {
    //! Interop with the independent rml_rtmp implementation, purely in memory.

    use super::*;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ClientSession as RmlClient, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType, ServerSession as RmlServer, ServerSessionConfig, ServerSessionEvent,
        ServerSessionResult, StreamMetadata,
    };
    use rml_rtmp::time::RtmpTimestamp;

    /// rml's client, with its handshake done against our server.
    fn rml_client_connected(server: &mut ServerSession) -> RmlClient {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
        server.feed(&mut BytesMut::from(&c0c1[..])).unwrap();
        let reply = server.take_output().unwrap();
        let HandshakeProcessResult::Completed { response_bytes, .. } =
            hs.process_bytes(&reply).unwrap()
        else {
            panic!("rml handshake did not complete");
        };
        server
            .feed(&mut BytesMut::from(&response_bytes[..]))
            .unwrap();
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some("rtmp://example.net/live".into());
        let (client, _) = RmlClient::new(config).unwrap();
        client
    }

    /// Feeds rml client results to our server; returns rml events raised.
    fn client_results(
        results: Vec<ClientSessionResult>,
        server: &mut ServerSession,
    ) -> Vec<ClientSessionEvent> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    let mut buf = BytesMut::from(&p.bytes[..]);
                    server.feed(&mut buf).unwrap();
                    assert!(buf.is_empty());
                }
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        events
    }

    fn server_to_rml(
        server: &mut ServerSession,
        client: &mut RmlClient,
    ) -> Vec<ClientSessionEvent> {
        let mut events = Vec::new();
        while let Some(bytes) = server.take_output() {
            let results = client.handle_input(&bytes).unwrap();
            events.extend(client_results(results, server));
        }
        events
    }

    #[test]
    fn rml_client_publishes_to_our_server() {
        let mut server = ServerSession::new(ServerConfig::default());
        let mut client = rml_client_connected(&mut server);
        let r = client.request_connection("live".into()).unwrap();
        client_results(vec![r], &mut server);
        let events = server_to_rml(&mut server, &mut client);
        assert!(events.contains(&ClientSessionEvent::ConnectionRequestAccepted));
        assert!(matches!(
            server.poll_event(),
            Some(ServerEvent::Connect { app, tc_url: Some(_), .. }) if app == "live"
        ));

        let r = client
            .request_publishing("cam".into(), PublishRequestType::Live)
            .unwrap();
        client_results(vec![r], &mut server);
        server_to_rml(&mut server, &mut client);
        let Some(ServerEvent::Publish { stream_id, key, .. }) = server.poll_event() else {
            panic!("no publish event");
        };
        assert_eq!(key, "cam");
        server.accept_publish(stream_id);
        let events = server_to_rml(&mut server, &mut client);
        assert!(events.contains(&ClientSessionEvent::PublishRequestAccepted));

        let mut meta = StreamMetadata::new();
        meta.video_width = Some(1920);
        let r = client.publish_metadata(&meta).unwrap();
        client_results(vec![r], &mut server);
        let video = Bytes::from(vec![0x17; 9000]);
        for ts in [0, 33, 0x0100_0000, 0x0100_0021] {
            let r = client
                .publish_video_data(video.clone(), RtmpTimestamp::new(ts), false)
                .unwrap();
            client_results(vec![r], &mut server);
        }
        let r = client
            .publish_audio_data(
                Bytes::from_static(&[0xAF, 1, 2]),
                RtmpTimestamp::new(40),
                false,
            )
            .unwrap();
        client_results(vec![r], &mut server);

        let events = server_events(&mut server);
        let ServerEvent::Metadata { payload, .. } = &events[0] else {
            panic!("expected metadata, got {events:?}");
        };
        let values = amf0::decode_all(payload).unwrap();
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        assert_eq!(values[1].get("width").and_then(Value::as_f64), Some(1920.0));
        let stamps: Vec<u32> = events[1..]
            .iter()
            .map(|e| match e {
                ServerEvent::Video {
                    timestamp, payload, ..
                } => {
                    assert_eq!(payload, &video);
                    *timestamp
                }
                ServerEvent::Audio { timestamp, .. } => *timestamp,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(stamps, vec![0, 33, 0x0100_0000, 0x0100_0021, 40]);

        let r = client.stop_publishing().unwrap();
        client_results(r, &mut server);
        assert_eq!(
            server_events(&mut server),
            vec![ServerEvent::Unpublish { stream_id }]
        );
    }

    #[test]
    fn rml_client_plays_from_our_server() {
        let mut server = ServerSession::new(ServerConfig::default());
        let mut client = rml_client_connected(&mut server);
        let r = client.request_connection("live".into()).unwrap();
        client_results(vec![r], &mut server);
        server_to_rml(&mut server, &mut client);
        let r = client.request_playback("cam".into()).unwrap();
        client_results(vec![r], &mut server);
        server_to_rml(&mut server, &mut client);
        let events = server_events(&mut server);
        let Some(ServerEvent::Play { stream_id, key, .. }) = events.last() else {
            panic!("no play event: {events:?}");
        };
        assert_eq!(key, "cam");
        let stream_id = *stream_id;
        server.accept_play(stream_id);
        let events = server_to_rml(&mut server, &mut client);
        assert!(
            events.contains(&ClientSessionEvent::PlaybackRequestAccepted),
            "{events:?}"
        );

        let mut wire = BytesMut::new();
        let media = [
            ServerEvent::Metadata {
                stream_id,
                timestamp: 0,
                payload: metadata_payload(),
            },
            ServerEvent::Video {
                stream_id,
                timestamp: 0,
                payload: Bytes::from(vec![0x17; 10_000]),
            },
            ServerEvent::Audio {
                stream_id,
                timestamp: 21,
                payload: Bytes::from_static(&[0xAF, 1, 5]),
            },
        ];
        for event in &media {
            hub_write(&mut server, &mut wire, event, stream_id);
        }
        let results = client.handle_input(&wire).unwrap();
        let events = client_results(results, &mut server);
        let mut seen = (false, false, false);
        for e in events {
            match e {
                ClientSessionEvent::StreamMetadataReceived { metadata } => {
                    assert_eq!(metadata.video_width, Some(1280));
                    seen.0 = true;
                }
                ClientSessionEvent::VideoDataReceived { timestamp, data } => {
                    assert_eq!((timestamp.value, data.len()), (0, 10_000));
                    seen.1 = true;
                }
                ClientSessionEvent::AudioDataReceived { timestamp, data } => {
                    assert_eq!((timestamp.value, &data[..]), (21, &[0xAF, 1, 5][..]));
                    seen.2 = true;
                }
                _ => {}
            }
        }
        assert_eq!(seen, (true, true, true));
    }

    /// Moves bytes between our client and rml's server, accepting every request.
    fn pump_to_rml(client: &mut ClientSession, server: &mut RmlServer) -> Vec<ServerSessionEvent> {
        let mut events = Vec::new();
        loop {
            let Some(bytes) = client.take_output() else {
                return events;
            };
            let mut pending = server.handle_input(&bytes).unwrap();
            pending.reverse();
            while let Some(r) = pending.pop() {
                match r {
                    ServerSessionResult::OutboundResponse(p) => {
                        let mut buf = BytesMut::from(&p.bytes[..]);
                        client.feed(&mut buf).unwrap();
                    }
                    ServerSessionResult::RaisedEvent(e) => {
                        match &e {
                            ServerSessionEvent::ConnectionRequested { request_id, .. }
                            | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                                let mut more = server.accept_request(*request_id).unwrap();
                                more.reverse();
                                pending.extend(more);
                            }
                            _ => {}
                        }
                        events.push(e);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
    }

    #[test]
    fn our_client_publishes_to_rml_server() {
        let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://example.net/live"));
        client.publish("cam");
        client.start();
        // Handshake with rml's server handshake, then its session.
        let mut hs = Handshake::new(PeerType::Server);
        let c0c1 = client.take_output().unwrap();
        let HandshakeProcessResult::InProgress { response_bytes } =
            hs.process_bytes(&c0c1).unwrap()
        else {
            panic!("rml handshake finished early");
        };
        client
            .feed(&mut BytesMut::from(&response_bytes[..]))
            .unwrap();
        let out = client.take_output().unwrap();
        // C2 then our first chunks (Set Chunk Size, connect) arrive together.
        let HandshakeProcessResult::Completed {
            remaining_bytes, ..
        } = hs.process_bytes(&out).unwrap()
        else {
            panic!("rml handshake not complete");
        };
        let (mut server, initial) = RmlServer::new(ServerSessionConfig::new()).unwrap();
        for r in initial {
            if let ServerSessionResult::OutboundResponse(p) = r {
                client.feed(&mut BytesMut::from(&p.bytes[..])).unwrap();
            }
        }
        let mut pending: Vec<ServerSessionResult> = server.handle_input(&remaining_bytes).unwrap();
        pending.reverse();
        let mut events = Vec::new();
        while let Some(r) = pending.pop() {
            match r {
                ServerSessionResult::OutboundResponse(p) => {
                    client.feed(&mut BytesMut::from(&p.bytes[..])).unwrap();
                }
                ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                }) => {
                    assert_eq!(app_name, "live");
                    let mut more = server.accept_request(request_id).unwrap();
                    more.reverse();
                    pending.extend(more);
                }
                ServerSessionResult::RaisedEvent(e) => events.push(e),
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        events.extend(pump_to_rml(&mut client, &mut server));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ServerSessionEvent::PublishStreamRequested { stream_key, .. } if stream_key == "cam")),
            "{events:?}"
        );
        let ours = client_events(&mut client);
        assert_eq!(
            ours,
            vec![ClientEvent::Connected, ClientEvent::PublishStarted]
        );

        client.send_metadata(0, &metadata_payload());
        client.send_video(0, &[0x17; 9000]);
        client.send_video(33, &[0x27; 100]);
        client.send_audio(0x0100_0000, &[0xAF, 1, 7]);
        let events = pump_to_rml(&mut client, &mut server);
        let mut got = Vec::new();
        for e in events {
            match e {
                ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                    assert_eq!(metadata.video_height, Some(720));
                    got.push(("meta", 0, 0));
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => got.push(("video", timestamp.value, data.len())),
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => got.push(("audio", timestamp.value, data.len())),
                _ => {}
            }
        }
        assert_eq!(
            got,
            vec![
                ("meta", 0, 0),
                ("video", 0, 9000),
                ("video", 33, 100),
                ("audio", 0x0100_0000, 3)
            ]
        );
    }
}

#[test]
fn fuzz_corpus_replays_cleanly() {
    use super::fuzzing;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type EntryPoint = fn(&[u8]);
    let targets: [(&str, EntryPoint); 3] = [
        ("amf0_decode", fuzzing::amf0_decode),
        ("chunk_decoder", fuzzing::chunk_decoder),
        ("server_session", fuzzing::server_session),
    ];
    for (target, run) in targets {
        let dir = root.join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus for {target}");
    }
}
