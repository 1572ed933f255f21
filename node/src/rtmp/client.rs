//! Sans-IO client side of an RTMP connection, for the load generator and relay tests.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::{self, Value};
use super::chunk::{ChunkLimits, RawMessage};
use super::handshake::ClientHandshake;
use super::message::{
    AUDIO, CSID_AUDIO, CSID_COMMAND, CSID_DATA, CSID_PROTOCOL, CSID_STREAM, CSID_VIDEO, DATA_AMF0,
    DATA_AMF3, Message, UserControl, VIDEO,
};
pub use super::session::SessionError;
use super::session::{self, Endpoint, HandshakeStep, Link};

/// Buffer length we ask for when playing, in milliseconds.
const PLAY_BUFFER_MS: u32 = 3000;

/// Settings of a [`ClientSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The application name sent as `app` in connect (e.g. `live`).
    pub app: String,
    /// The `tcUrl` sent in connect, e.g. `rtmp://host:1935/live`.
    pub tc_url: String,
    /// Chunk size we announce right after the handshake and use for our output.
    pub chunk_size: u32,
    /// Limits on what the server may make the chunk decoder buffer.
    pub limits: ChunkLimits,
}

impl ClientConfig {
    /// A config with 4096-byte chunks and default limits.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        ClientConfig {
            app: app.into(),
            tc_url: tc_url.into(),
            chunk_size: 4096,
            limits: ChunkLimits::default(),
        }
    }
}

/// What a [`ClientSession`] reports to its driver, from [`ClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The server accepted `connect`.
    Connected,
    /// `NetStream.Publish.Start` arrived: media may be sent.
    PublishStarted,
    /// `NetStream.Play.Start` arrived: media follows.
    PlayStarted,
    /// Any other `onStatus` (rejections have level "error"), or an `_error` reply.
    Status {
        /// `status` or `error`.
        level: String,
        /// The status code, e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The human-readable description.
        description: String,
    },
    /// `payload` is `"onMetaData", <object>` in AMF0.
    Metadata {
        /// Message timestamp in milliseconds.
        timestamp: u32,
        /// The AMF0 data payload, without `@setDataFrame`.
        payload: Bytes,
    },
    /// An audio message; `payload` is the FLV audio tag body.
    Audio {
        /// Message timestamp in milliseconds.
        timestamp: u32,
        /// The FLV audio tag body.
        payload: Bytes,
    },
    /// A video message; `payload` is the FLV video tag body.
    Video {
        /// Message timestamp in milliseconds.
        timestamp: u32,
        /// The FLV video tag body.
        payload: Bytes,
    },
    /// The server refused the connection.
    Disconnected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    Publish(String),
    Play(String),
}

/// The client side of one RTMP connection, sans-IO: [`start`](Self::start), then
/// [`feed`](Self::feed) received bytes, drain [`poll_event`](Self::poll_event) and write
/// [`take_output`](Self::take_output).
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    handshake: Option<ClientHandshake>,
    link: Link,
    events: VecDeque<ClientEvent>,
    connected: bool,
    intent: Option<Intent>,
    next_transaction: f64,
    connect_transaction: f64,
    create_stream_transaction: Option<f64>,
    /// Our NetStream id once createStream succeeded (0 before).
    stream_id: u32,
}

impl ClientSession {
    /// Call [`ClientSession::start`], then write [`ClientSession::take_output`].
    pub fn new(config: ClientConfig) -> Self {
        ClientSession {
            link: Link::new(config.limits, 0),
            config,
            handshake: Some(ClientHandshake::new()),
            events: VecDeque::new(),
            connected: false,
            intent: None,
            next_transaction: 1.0,
            connect_transaction: 0.0,
            create_stream_transaction: None,
            stream_id: 0,
        }
    }

    /// Queues C0+C1.
    pub fn start(&mut self) {
        if let Some(handshake) = &mut self.handshake {
            handshake.start(&mut self.link.out);
        }
    }

    /// Consumes received bytes (handshake first, then chunks); sends connect once the handshake
    /// is done. Incomplete input stays in `buf` for the next call.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        session::feed(self, buf)
    }

    /// The next event queued by [`feed`](Self::feed), if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes that must be written to the server, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.link.take_output()
    }

    /// Publishes `key` once connected (releaseStream, FCPublish, createStream, publish).
    pub fn publish(&mut self, key: &str) {
        self.set_intent(Intent::Publish(key.to_owned()));
    }

    /// Plays `key` once connected (createStream, play, SetBufferLength).
    pub fn play(&mut self, key: &str) {
        self.set_intent(Intent::Play(key.to_owned()));
    }

    /// Sends `@setDataFrame` followed by `payload` (`"onMetaData", <object>` in AMF0).
    pub fn send_metadata(&mut self, timestamp: u32, payload: &[u8]) {
        let mut data = BytesMut::with_capacity(16 + payload.len());
        amf0::encode(&Value::string("@setDataFrame"), &mut data);
        data.put_slice(payload);
        self.send_media(CSID_DATA, DATA_AMF0, timestamp, data.freeze());
    }

    /// Sends an audio message (an FLV audio tag body); dropped before the stream exists.
    pub fn send_audio(&mut self, timestamp: u32, payload: &[u8]) {
        self.send_media(
            CSID_AUDIO,
            AUDIO,
            timestamp,
            Bytes::copy_from_slice(payload),
        );
    }

    /// Sends a video message (an FLV video tag body); dropped before the stream exists.
    pub fn send_video(&mut self, timestamp: u32, payload: &[u8]) {
        self.send_media(
            CSID_VIDEO,
            VIDEO,
            timestamp,
            Bytes::copy_from_slice(payload),
        );
    }

    /// Ends publishing (FCUnpublish + deleteStream) or playing (deleteStream).
    pub fn close(&mut self) {
        let intent = self.intent.take();
        if self.stream_id == 0 {
            return;
        }
        if let Some(Intent::Publish(key)) = intent {
            let tid = self.next_transaction();
            self.link.send_command(
                CSID_COMMAND,
                0,
                "FCUnpublish",
                tid,
                vec![Value::string(key)],
            );
        }
        let tid = self.next_transaction();
        let id = Value::Number(f64::from(self.stream_id));
        self.link
            .send_command(CSID_COMMAND, 0, "deleteStream", tid, vec![id]);
        self.stream_id = 0;
    }

    fn send_media(&mut self, csid: u32, type_id: u8, timestamp: u32, payload: Bytes) {
        if self.stream_id == 0 {
            tracing::debug!(type_id, "dropping media sent before the stream exists");
            return;
        }
        self.link.send_raw(&RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id: self.stream_id,
            payload,
        });
    }

    fn next_transaction(&mut self) -> f64 {
        let tid = self.next_transaction;
        self.next_transaction += 1.0;
        tid
    }

    fn set_intent(&mut self, intent: Intent) {
        self.intent = Some(intent);
        if self.connected {
            self.run_intent();
        }
    }

    fn send_connect(&mut self) {
        self.link.set_chunk_size(self.config.chunk_size);
        let object = Value::object([
            ("app", Value::string(self.config.app.as_str())),
            ("type", Value::string("nonprivate")),
            ("flashVer", Value::string("FMLE/3.0 (compatible; skein)")),
            ("tcUrl", Value::string(self.config.tc_url.as_str())),
            ("fpad", Value::Boolean(false)),
            ("capabilities", Value::Number(15.0)),
            ("audioCodecs", Value::Number(4071.0)),
            ("videoCodecs", Value::Number(252.0)),
            ("videoFunction", Value::Number(1.0)),
            ("objectEncoding", Value::Number(0.0)),
        ]);
        self.connect_transaction = self.next_transaction();
        let connect = Message::command("connect", self.connect_transaction, object, vec![]);
        self.link.send(CSID_COMMAND, 0, &connect);
    }

    /// Starts publishing or playing: everything up to createStream.
    fn run_intent(&mut self) {
        let Some(intent) = self.intent.clone() else {
            return;
        };
        if let Intent::Publish(key) = &intent {
            for name in ["releaseStream", "FCPublish"] {
                let tid = self.next_transaction();
                self.link.send_command(
                    CSID_COMMAND,
                    0,
                    name,
                    tid,
                    vec![Value::string(key.as_str())],
                );
            }
        }
        let tid = self.next_transaction();
        self.create_stream_transaction = Some(tid);
        self.link
            .send_command(CSID_COMMAND, 0, "createStream", tid, vec![]);
    }

    /// createStream succeeded: publish or play on the new stream.
    fn on_stream_created(&mut self, stream_id: u32) {
        self.stream_id = stream_id;
        match self.intent.clone() {
            Some(Intent::Publish(key)) => {
                let args = vec![Value::string(key), Value::string("live")];
                self.link
                    .send_command(CSID_STREAM, stream_id, "publish", 0.0, args);
            }
            Some(Intent::Play(key)) => {
                let args = vec![Value::string(key), Value::Number(-2.0)];
                self.link
                    .send_command(CSID_STREAM, stream_id, "play", 0.0, args);
                let buffer = Message::UserControl(UserControl::SetBufferLength {
                    stream_id,
                    millis: PLAY_BUFFER_MS,
                });
                self.link.send(CSID_PROTOCOL, 0, &buffer);
            }
            None => {}
        }
    }

    fn on_message(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let msg = match Message::parse(&raw) {
            Ok(msg) => msg,
            Err(err) if matches!(raw.type_id, DATA_AMF0 | DATA_AMF3) => {
                tracing::debug!(%err, "ignoring undecodable data message");
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        if self.link.handle_control(&msg)? {
            return Ok(());
        }
        let timestamp = raw.timestamp;
        match msg {
            Message::Command {
                name,
                transaction_id,
                args,
                ..
            } => self.on_command(&name, transaction_id, &args),
            Message::Data { values, payload } => {
                let payload = match values.first().and_then(Value::as_str) {
                    Some("onMetaData") => payload,
                    Some("@setDataFrame") => {
                        let mut rest = &payload[..];
                        if amf0::decode(&mut rest).is_err() {
                            return Ok(());
                        }
                        payload.slice(payload.len() - rest.len()..)
                    }
                    _ => return Ok(()),
                };
                self.events
                    .push_back(ClientEvent::Metadata { timestamp, payload });
            }
            Message::Audio(payload) => {
                self.events
                    .push_back(ClientEvent::Audio { timestamp, payload });
            }
            Message::Video(payload) => {
                self.events
                    .push_back(ClientEvent::Video { timestamp, payload });
            }
            other => tracing::debug!(?other, "ignoring message"),
        }
        Ok(())
    }

    fn on_command(&mut self, name: &str, transaction_id: f64, args: &[Value]) {
        let info = args.first();
        let text = |key| {
            info.and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match name {
            "_result" if transaction_id == self.connect_transaction && !self.connected => {
                self.connected = true;
                self.events.push_back(ClientEvent::Connected);
                self.run_intent();
            }
            "_result" if Some(transaction_id) == self.create_stream_transaction => {
                self.create_stream_transaction = None;
                let id = info.and_then(Value::as_f64).unwrap_or(0.0);
                if id >= 1.0 && id <= f64::from(u32::MAX) {
                    self.on_stream_created(id as u32);
                }
            }
            "_error" if transaction_id == self.connect_transaction && !self.connected => {
                self.events.push_back(ClientEvent::Disconnected);
            }
            "onStatus" | "_error" => {
                let code = text("code");
                let event = match code.as_str() {
                    "NetStream.Publish.Start" => ClientEvent::PublishStarted,
                    "NetStream.Play.Start" => ClientEvent::PlayStarted,
                    _ => ClientEvent::Status {
                        level: if name == "_error" {
                            "error".to_owned()
                        } else {
                            text("level")
                        },
                        code,
                        description: text("description"),
                    },
                };
                self.events.push_back(event);
            }
            _ => tracing::debug!(name, "ignoring command"),
        }
    }
}

impl Endpoint for ClientSession {
    fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    fn handshake(&mut self, buf: &mut BytesMut) -> Result<bool, SessionError> {
        let out = &mut self.link.out;
        match session::step_handshake(&mut self.handshake, buf, out, ClientHandshake::feed)? {
            HandshakeStep::Waiting => Ok(false),
            HandshakeStep::JustDone => {
                self.send_connect();
                Ok(true)
            }
            HandshakeStep::Done => Ok(true),
        }
    }

    fn handle(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        self.on_message(raw)
    }
}
