//! Sans-IO server side of an RTMP connection: feed it received bytes, drain its events and
//! output, and answer publish/play requests.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Value};
use super::chunk::{ChunkLimits, RawMessage};
use super::handshake::ServerHandshake;
use super::message::{
    CSID_COMMAND, CSID_PROTOCOL, CSID_STREAM, DATA_AMF0, DATA_AMF3, LIMIT_DYNAMIC, Message,
    UserControl,
};
pub use super::session::SessionError;
use super::session::{self, Endpoint, HandshakeStep, Link, status_object};

/// Most NetStreams one connection may publish or play at once.
const MAX_STREAMS: usize = 64;
/// Most createStream calls one connection may make.
const MAX_CREATE_STREAM: u32 = 1024;

/// Settings of a [`ServerSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Chunk size we announce after connect and use for all our output.
    pub chunk_size: u32,
    /// Window Acknowledgement Size we ask the client to acknowledge with; also our own
    /// acknowledgement window until the client announces one.
    pub window_ack_size: u32,
    /// Window size in bytes sent in our Set Peer Bandwidth (limit type Dynamic) after connect.
    pub peer_bandwidth: u32,
    /// Limits on what the client may make the chunk decoder buffer.
    pub limits: ChunkLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            limits: ChunkLimits::default(),
        }
    }
}

/// What a [`ServerSession`] reports to its driver, from [`ServerSession::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The session already replied `NetConnection.Connect.Success`; the driver may still close.
    Connect {
        /// The `app` property of the connect command object (empty when absent).
        app: String,
        /// The `tcUrl` property, if given.
        tc_url: Option<String>,
        /// The client's `objectEncoding` (0 for AMF0), echoed in the reply.
        object_encoding: f64,
    },
    /// Answer with [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    Publish {
        /// The message stream id the client publishes on.
        stream_id: u32,
        /// The stream name given to `publish`, as sent.
        key: String,
        /// The publishing type argument (`live`, `record`, `append`); `live` when absent.
        publish_type: String,
    },
    /// Answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    Play {
        /// The message stream id the client plays on.
        stream_id: u32,
        /// The stream name given to `play`, as sent.
        key: String,
        /// The `start` argument in seconds; -2 (live, falling back to recorded) when absent.
        start: f64,
    },
    /// A publish ended by deleteStream, closeStream or FCUnpublish.
    Unpublish {
        /// The message stream id that was publishing.
        stream_id: u32,
    },
    /// A play ended by deleteStream or closeStream.
    StopPlay {
        /// The message stream id that was playing.
        stream_id: u32,
    },
    /// `payload` is `"onMetaData", <object>` in AMF0, ready to forward as a DATA_AMF0 message.
    Metadata {
        /// The publishing message stream id.
        stream_id: u32,
        /// Message timestamp in milliseconds.
        timestamp: u32,
        /// The AMF0 `onMetaData` payload.
        payload: Bytes,
    },
    /// An audio message of an accepted publish; `payload` is the FLV audio tag body.
    Audio {
        /// The publishing message stream id.
        stream_id: u32,
        /// Message timestamp in milliseconds.
        timestamp: u32,
        /// The FLV audio tag body.
        payload: Bytes,
    },
    /// A video message of an accepted publish; `payload` is the FLV video tag body.
    Video {
        /// The publishing message stream id.
        stream_id: u32,
        /// Message timestamp in milliseconds.
        timestamp: u32,
        /// The FLV video tag body.
        payload: Bytes,
    },
}

#[derive(Debug)]
enum Role {
    Publishing { key: String, accepted: bool },
    Playing,
}

/// The server side of one RTMP connection, sans-IO: [`feed`](Self::feed) it received bytes,
/// then drain [`poll_event`](Self::poll_event) and [`take_output`](Self::take_output).
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    handshake: Option<ServerHandshake>,
    link: Link,
    events: VecDeque<ServerEvent>,
    connected: bool,
    next_stream_id: u32,
    streams: HashMap<u32, Role>,
    ignored_media: u64,
}

impl ServerSession {
    /// A session waiting for the client's handshake.
    pub fn new(config: ServerConfig) -> Self {
        ServerSession {
            link: Link::new(config.limits, config.window_ack_size),
            config,
            handshake: Some(ServerHandshake::new()),
            events: VecDeque::new(),
            connected: false,
            next_stream_id: 1,
            streams: HashMap::new(),
            ignored_media: 0,
        }
    }

    /// Consume received bytes (handshake first, then chunks). Queues events and output.
    /// Incomplete input stays in `buf` for the next call.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        session::feed(self, buf)
    }

    /// The next event queued by [`feed`](Self::feed), if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Bytes that must be written to the peer, before any media written after this call.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.link.take_output()
    }

    /// Accepts a [`ServerEvent::Publish`]: replies `NetStream.Publish.Start` and starts
    /// reporting the stream's media.
    pub fn accept_publish(&mut self, stream_id: u32) {
        let Some(Role::Publishing { key, accepted }) = self.streams.get_mut(&stream_id) else {
            tracing::debug!(
                stream_id,
                "accept_publish for a stream that is not publishing"
            );
            return;
        };
        *accepted = true;
        let description = format!("{key} is now published.");
        self.send_status(stream_id, "status", "NetStream.Publish.Start", &description);
    }

    /// Rejects a [`ServerEvent::Publish`] with an error `onStatus` of the given code.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.streams.remove(&stream_id);
        self.send_status(stream_id, "error", code, description);
    }

    /// StreamBegin, NetStream.Play.Reset, NetStream.Play.Start and `|RtmpSampleAccess`, as
    /// nginx-rtmp and SRS send them.
    pub fn accept_play(&mut self, stream_id: u32) {
        let begin = Message::UserControl(UserControl::StreamBegin(stream_id));
        self.link.send(CSID_PROTOCOL, 0, &begin);
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting stream.",
        );
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            "Started playing stream.",
        );
        let access = Message::data(vec![
            Value::string("|RtmpSampleAccess"),
            Value::Boolean(true),
            Value::Boolean(true),
        ]);
        self.link.send(CSID_STREAM, stream_id, &access);
    }

    /// Rejects a [`ServerEvent::Play`] with an error `onStatus` of the given code.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.streams.remove(&stream_id);
        self.send_status(stream_id, "error", code, description);
    }

    /// Sends an `onStatus` call on `stream_id`.
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let info = status_object(level, code, description);
        self.link
            .send_command(CSID_STREAM, stream_id, "onStatus", 0.0, vec![info]);
    }

    /// Sends the Stream EOF user control event for `stream_id`, when the played stream ends.
    pub fn send_stream_eof(&mut self, stream_id: u32) {
        let eof = Message::UserControl(UserControl::StreamEof(stream_id));
        self.link.send(CSID_PROTOCOL, 0, &eof);
    }

    /// The chunk size of our output; media serialized by the hub must use it.
    pub fn chunk_size(&self) -> u32 {
        self.link.encoder.chunk_size()
    }

    /// Total bytes received on this connection, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.link.bytes_received()
    }

    /// Audio/video/metadata messages dropped because their stream was not an accepted publish.
    pub fn ignored_media(&self) -> u64 {
        self.ignored_media
    }

    fn on_message(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let msg = match Message::parse(&raw) {
            Ok(msg) => msg,
            // A broken data message (say, AMF3 metadata) is not worth dropping a publisher for.
            Err(err) if matches!(raw.type_id, DATA_AMF0 | DATA_AMF3) => {
                tracing::debug!(%err, "ignoring undecodable data message");
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        if self.link.handle_control(&msg)? {
            return Ok(());
        }
        let (stream_id, timestamp) = (raw.stream_id, raw.timestamp);
        match msg {
            Message::Command {
                name,
                transaction_id,
                object,
                args,
            } => self.on_command(stream_id, &name, transaction_id, &object, &args)?,
            Message::Data { values, payload } => {
                self.on_data(stream_id, timestamp, &values, payload)
            }
            Message::Audio(payload) if self.is_publishing(stream_id) => {
                self.events.push_back(ServerEvent::Audio {
                    stream_id,
                    timestamp,
                    payload,
                });
            }
            Message::Video(payload) if self.is_publishing(stream_id) => {
                self.events.push_back(ServerEvent::Video {
                    stream_id,
                    timestamp,
                    payload,
                });
            }
            Message::Audio(_) | Message::Video(_) => self.ignored_media += 1,
            other => tracing::debug!(?other, "ignoring message"),
        }
        Ok(())
    }

    fn is_publishing(&self, stream_id: u32) -> bool {
        matches!(
            self.streams.get(&stream_id),
            Some(Role::Publishing { accepted: true, .. })
        )
    }

    fn on_data(&mut self, stream_id: u32, timestamp: u32, values: &[Value], payload: Bytes) {
        if !self.is_publishing(stream_id) {
            self.ignored_media += 1;
            return;
        }
        let payload = match (
            values.first().and_then(Value::as_str),
            values.get(1).and_then(Value::as_str),
        ) {
            (Some("@setDataFrame"), Some("onMetaData")) => {
                // Drop the leading "@setDataFrame" string; the rest is forwarded untouched.
                let mut rest = &payload[..];
                if amf0::decode(&mut rest).is_err() {
                    return;
                }
                payload.slice(payload.len() - rest.len()..)
            }
            (Some("onMetaData"), _) => payload,
            (name, _) => {
                tracing::debug!(?name, "ignoring data message");
                return;
            }
        };
        self.events.push_back(ServerEvent::Metadata {
            stream_id,
            timestamp,
            payload,
        });
    }

    fn reply_result(&mut self, transaction_id: f64, args: Vec<Value>) {
        self.link
            .send_command(CSID_COMMAND, 0, "_result", transaction_id, args);
    }

    fn on_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        object: &Value,
        args: &[Value],
    ) -> Result<(), SessionError> {
        if !self.connected && name != "connect" {
            return Err(SessionError::Protocol(format!(
                "command {name:?} before connect"
            )));
        }
        let first_str = || {
            args.first()
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match name {
            "connect" => self.on_connect(transaction_id, object)?,
            "createStream" => {
                if self.next_stream_id > MAX_CREATE_STREAM {
                    return Err(SessionError::Protocol("too many createStream calls".into()));
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.reply_result(transaction_id, vec![Value::Number(f64::from(id))]);
            }
            "releaseStream" => {
                if transaction_id != 0.0 {
                    self.reply_result(transaction_id, vec![Value::Undefined]);
                }
            }
            "FCPublish" => {
                let info = status_object("status", "NetStream.Publish.Start", &first_str());
                self.link
                    .send_command(CSID_COMMAND, 0, "onFCPublish", 0.0, vec![info]);
                if transaction_id != 0.0 {
                    self.reply_result(transaction_id, vec![Value::Undefined]);
                }
            }
            "FCUnpublish" => {
                let key = first_str();
                let publishing = self.streams.iter().find_map(|(&id, role)| match role {
                    Role::Publishing { key: k, .. } if *k == key => Some(id),
                    _ => None,
                });
                if let Some(id) = publishing {
                    self.end_stream(id);
                }
                let info = status_object("status", "NetStream.Unpublish.Success", &key);
                self.link
                    .send_command(CSID_COMMAND, 0, "onFCUnpublish", 0.0, vec![info]);
                if transaction_id != 0.0 {
                    self.reply_result(transaction_id, vec![Value::Undefined]);
                }
            }
            "getStreamLength" => self.reply_result(transaction_id, vec![Value::Number(0.0)]),
            "publish" | "play" => self.on_publish_or_play(stream_id, name, args)?,
            "deleteStream" => {
                let id = args.first().and_then(Value::as_f64).unwrap_or(0.0);
                // Saturating cast: junk ids simply match no stream.
                self.end_stream(id as u32);
            }
            "closeStream" => self.end_stream(stream_id),
            "_result" | "_error" | "onStatus" => {
                tracing::debug!(name, "ignoring reply from client");
            }
            _ if transaction_id != 0.0 => {
                let info = status_object(
                    "error",
                    "NetConnection.Call.Failed",
                    &format!("Method not found ({name})."),
                );
                self.link
                    .send_command(CSID_COMMAND, 0, "_error", transaction_id, vec![info]);
            }
            _ => tracing::debug!(name, "ignoring unknown command"),
        }
        Ok(())
    }

    fn on_connect(&mut self, transaction_id: f64, object: &Value) -> Result<(), SessionError> {
        if self.connected {
            return Err(SessionError::Protocol("second connect".into()));
        }
        self.connected = true;
        let text = |key| object.get(key).and_then(Value::as_str).map(str::to_owned);
        let object_encoding = object
            .get("objectEncoding")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);

        let window = Message::WindowAckSize(self.config.window_ack_size);
        self.link.send(CSID_PROTOCOL, 0, &window);
        let bandwidth = Message::SetPeerBandwidth {
            size: self.config.peer_bandwidth,
            limit: LIMIT_DYNAMIC,
        };
        self.link.send(CSID_PROTOCOL, 0, &bandwidth);
        self.link.set_chunk_size(self.config.chunk_size);

        let properties = Value::object([
            ("fmsVer", Value::string("FMS/3,0,1,123")),
            ("capabilities", Value::Number(31.0)),
        ]);
        let mut info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Value::Object(props) = &mut info {
            props.push(("objectEncoding".into(), Value::Number(object_encoding)));
        }
        let reply = Message::command("_result", transaction_id, properties, vec![info]);
        self.link.send(CSID_COMMAND, 0, &reply);

        self.events.push_back(ServerEvent::Connect {
            app: text("app").unwrap_or_default(),
            tc_url: text("tcUrl"),
            object_encoding,
        });
        Ok(())
    }

    fn on_publish_or_play(
        &mut self,
        stream_id: u32,
        name: &str,
        args: &[Value],
    ) -> Result<(), SessionError> {
        let publish = name == "publish";
        if stream_id == 0 {
            return Err(SessionError::Protocol(format!("{name} on stream 0")));
        }
        let Some(key) = args.first().and_then(Value::as_str).map(str::to_owned) else {
            let code = if publish {
                "NetStream.Publish.BadName"
            } else {
                "NetStream.Play.StreamNotFound"
            };
            self.send_status(stream_id, "error", code, "No stream name given.");
            return Ok(());
        };
        if self.streams.contains_key(&stream_id) {
            let code = if publish {
                "NetStream.Publish.BadConnection"
            } else {
                "NetStream.Play.Failed"
            };
            self.send_status(stream_id, "error", code, "Stream is already in use.");
            return Ok(());
        }
        if self.streams.len() >= MAX_STREAMS {
            return Err(SessionError::Protocol("too many active streams".into()));
        }
        let event = if publish {
            let publish_type = args.get(1).and_then(Value::as_str).unwrap_or("live");
            self.streams.insert(
                stream_id,
                Role::Publishing {
                    key: key.clone(),
                    accepted: false,
                },
            );
            ServerEvent::Publish {
                stream_id,
                key,
                publish_type: publish_type.to_owned(),
            }
        } else {
            let start = args.get(1).and_then(Value::as_f64).unwrap_or(-2.0);
            self.streams.insert(stream_id, Role::Playing);
            ServerEvent::Play {
                stream_id,
                key,
                start,
            }
        };
        self.events.push_back(event);
        Ok(())
    }

    /// deleteStream, closeStream or FCUnpublish: tells the driver the stream is over.
    fn end_stream(&mut self, stream_id: u32) {
        match self.streams.remove(&stream_id) {
            Some(Role::Publishing { .. }) => {
                self.events.push_back(ServerEvent::Unpublish { stream_id });
            }
            Some(Role::Playing) => self.events.push_back(ServerEvent::StopPlay { stream_id }),
            None => {}
        }
    }
}

impl Endpoint for ServerSession {
    fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    fn handshake(&mut self, buf: &mut BytesMut) -> Result<bool, SessionError> {
        let out = &mut self.link.out;
        let step = session::step_handshake(&mut self.handshake, buf, out, ServerHandshake::feed)?;
        Ok(step != HandshakeStep::Waiting)
    }

    fn handle(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        self.on_message(raw)
    }
}
