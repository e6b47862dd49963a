//! The STOMP [`Version`], [`Command`] and [`Frame`] types, shared by the decoder and the
//! encoder, with their wire names.
//!
//! Must not touch: parsing or writing frame bytes (`scan.rs`, `decode.rs`, `encode.rs`).

use bytes::Bytes;

/// A STOMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: no header escaping.
    V1_0,
    /// STOMP 1.1: escapes `\\` `\n` `\c`.
    V1_1,
    /// STOMP 1.2: also escapes `\r`.
    V1_2,
}

impl Version {
    /// The version as written in `accept-version` / `version` headers, e.g. `"1.2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
        }
    }

    /// Parses `1.0`, `1.1` or `1.2` (exact bytes).
    pub fn parse(s: &[u8]) -> Option<Version> {
        match s {
            b"1.0" => Some(Self::V1_0),
            b"1.1" => Some(Self::V1_1),
            b"1.2" => Some(Self::V1_2),
            _ => None,
        }
    }

    /// The WebSocket subprotocol name registered for this version, e.g. `"v12.stomp"`.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::V1_0 => "v10.stomp",
            Self::V1_1 => "v11.stomp",
            Self::V1_2 => "v12.stomp",
        }
    }
}

/// A STOMP command (case-sensitive on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `CONNECT`.
    Connect,
    /// `STOMP`, a synonym of `CONNECT`.
    Stomp,
    /// `CONNECTED`.
    Connected,
    /// `SEND`.
    Send,
    /// `SUBSCRIBE`.
    Subscribe,
    /// `UNSUBSCRIBE`.
    Unsubscribe,
    /// `ACK`.
    Ack,
    /// `NACK`.
    Nack,
    /// `BEGIN`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ABORT`.
    Abort,
    /// `DISCONNECT`.
    Disconnect,
    /// `MESSAGE`.
    Message,
    /// `RECEIPT`.
    Receipt,
    /// `ERROR`.
    Error,
}

impl Command {
    /// The command as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Stomp => "STOMP",
            Self::Connected => "CONNECTED",
            Self::Send => "SEND",
            Self::Subscribe => "SUBSCRIBE",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Ack => "ACK",
            Self::Nack => "NACK",
            Self::Begin => "BEGIN",
            Self::Commit => "COMMIT",
            Self::Abort => "ABORT",
            Self::Disconnect => "DISCONNECT",
            Self::Message => "MESSAGE",
            Self::Receipt => "RECEIPT",
            Self::Error => "ERROR",
        }
    }

    /// Parses a command line's bytes (without the EOL). Case-sensitive.
    pub fn parse(s: &[u8]) -> Option<Command> {
        Some(match s {
            b"CONNECT" => Self::Connect,
            b"STOMP" => Self::Stomp,
            b"CONNECTED" => Self::Connected,
            b"SEND" => Self::Send,
            b"SUBSCRIBE" => Self::Subscribe,
            b"UNSUBSCRIBE" => Self::Unsubscribe,
            b"ACK" => Self::Ack,
            b"NACK" => Self::Nack,
            b"BEGIN" => Self::Begin,
            b"COMMIT" => Self::Commit,
            b"ABORT" => Self::Abort,
            b"DISCONNECT" => Self::Disconnect,
            b"MESSAGE" => Self::Message,
            b"RECEIPT" => Self::Receipt,
            b"ERROR" => Self::Error,
            _ => return None,
        })
    }

    /// Whether frames with this command may carry a body (SEND, MESSAGE and ERROR only).
    pub fn has_body(self) -> bool {
        matches!(self, Self::Send | Self::Message | Self::Error)
    }

    /// Whether header escaping applies to this command under `version`. It never applies in
    /// 1.0 or to the handshake frames.
    pub(super) fn escapes(self, version: Version) -> bool {
        version >= Version::V1_1 && !matches!(self, Self::Connect | Self::Stomp | Self::Connected)
    }
}

/// One STOMP frame. Header names and values are already unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Headers in wire order, repeats included. Lookups return the first occurrence.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body (without the terminating NUL).
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A frame with room for `headers` headers (one allocation for them all).
    pub fn with_capacity(command: Command, headers: usize) -> Self {
        Self {
            command,
            headers: Vec::with_capacity(headers),
            body: Bytes::new(),
        }
    }

    /// The first header named `name` (case-sensitive).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first header named `name`, if it is present and UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends a header (builder style).
    pub fn with_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.push_header(name, value);
        self
    }

    /// Appends a header.
    pub fn push_header(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.headers.push((name.into(), value.into()));
    }

    /// Replaces the body (builder style). Callers add `content-length` themselves.
    pub fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}
