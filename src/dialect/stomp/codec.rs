//! STOMP 1.0 / 1.1 / 1.2 frame codec: bytes of WebSocket messages to and from [`Frame`]s.
//!
//! Owns: splitting a stream of WebSocket messages into frames and heart-beat EOLs (several
//! frames per message, frames split across messages), header escaping per version (none for
//! 1.0 or for CONNECT / STOMP / CONNECTED), `content-length` bodies, the size limits (checked
//! before anything is buffered), and encoding frames back to bytes.
//!
//! Zero copy: if a frame lies inside one message, its header names and values (unless they
//! contain escapes) and its body are `Bytes::slice`s of that message. Only reassembly across
//! messages and unescaping copy. [`Decoder::take_copied_bytes`] reports how many bytes were
//! copied.
//!
//! Must not touch: tokio, I/O, metrics, configuration, or protocol semantics (which headers are
//! required, heart-beat negotiation, receipts). Those belong to the STOMP roles.
//!
//! We do not use the `stomp-parser` crate here. `docs/stomp-parser.md` says why.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest command name (`UNSUBSCRIBE`, `DISCONNECT`) is 11 bytes. An unterminated first
/// line longer than this cannot be a command.
const MAX_COMMAND_LEN: usize = 16;
/// How many bytes of an unknown command [`StompError::UnknownCommand`] keeps.
const MAX_REPORTED_COMMAND: usize = 32;
/// Written instead of a header byte that the target version cannot represent (LF, CR or `:`
/// where there is no escaping, a NUL anywhere). This keeps peer-supplied values from injecting
/// headers or ending the frame early.
const REPLACEMENT: u8 = b'?';

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
    fn escapes(self, version: Version) -> bool {
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

/// One decoded item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A lone EOL (LF or CRLF) outside a frame.
    Heartbeat,
}

/// Decoder limits. Going over any of them is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame, from the first byte of the command to the NUL, in bytes.
    pub max_frame_size: usize,
    /// The most header lines in one frame.
    pub max_headers: usize,
    /// The longest header line (`name:value`, without the EOL), in bytes.
    pub max_header_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 1024 * 1024,
            max_headers: 64,
            max_header_len: 8192,
        }
    }
}

/// A fatal STOMP framing error.
#[derive(Debug, thiserror::Error)]
pub enum StompError {
    /// The frame is, or will be, larger than the limit.
    #[error("STOMP frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The size seen so far, or announced by `content-length`.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// More header lines than the limit.
    #[error("STOMP frame has more than {max} headers")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A header line is longer than the limit.
    #[error("STOMP header line longer than {max} bytes")]
    HeaderTooLong {
        /// The limit.
        max: usize,
    },
    /// The command line is not a STOMP command (at most 32 bytes kept, lossily decoded).
    #[error("unknown STOMP command {0:?}")]
    UnknownCommand(String),
    /// A header line without `:`, or one that contains a NUL.
    #[error("malformed STOMP header line")]
    MalformedHeader,
    /// A backslash escape that the version does not define.
    #[error("invalid escape sequence in STOMP header")]
    BadEscape,
    /// `content-length` is not a decimal number.
    #[error("invalid STOMP content-length")]
    BadContentLength,
    /// The `content-length` body is not followed by a NUL.
    #[error("STOMP body not terminated by NUL after content-length octets")]
    MissingNul,
    /// A non-empty body on a command that has none.
    #[error("STOMP {0} frame must not have a body")]
    BodyNotAllowed(&'static str),
}

impl StompError {
    /// Short text for the `message` header of the ERROR frame sent to the peer.
    pub fn message(&self) -> String {
        match self {
            Self::FrameTooLarge { max, .. } => format!("frame too large (limit {max} bytes)"),
            Self::TooManyHeaders { max } => format!("too many headers (limit {max})"),
            Self::HeaderTooLong { max } => format!("header too long (limit {max} bytes)"),
            Self::UnknownCommand(c) => format!("unknown command {c:?}"),
            Self::MalformedHeader => "malformed header".to_owned(),
            Self::BadEscape => "invalid header escape".to_owned(),
            Self::BadContentLength => "invalid content-length".to_owned(),
            Self::MissingNul => "frame not terminated by NUL".to_owned(),
            Self::BodyNotAllowed(c) => format!("{c} frame must not have a body"),
        }
    }
}

/// A header name or value found by [`scan`].
#[derive(Debug)]
enum Span {
    /// Unchanged bytes at this range of the scanned input.
    Raw(Range<usize>),
    /// Unescaped bytes (a copy).
    Owned(Vec<u8>),
}

/// A frame found by [`scan`], as ranges of the scanned input.
#[derive(Debug)]
struct Parsed {
    command: Command,
    headers: Vec<(Span, Span)>,
    body: Range<usize>,
}

/// What an incomplete frame is waiting for. Offsets are relative to the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The rest of the command or header section. The incomplete line starts here.
    Line { line_start: usize },
    /// The NUL that ends a body without `content-length`.
    Nul,
    /// Exactly this many bytes in total (a `content-length` frame, or a CR that may start a
    /// CRLF heart-beat).
    Total(usize),
}

/// What [`scan`] found at the start of its input.
#[derive(Debug)]
enum Step {
    /// A heart-beat EOL of this many bytes.
    Heartbeat(usize),
    /// A frame taking this many bytes, up to and including its NUL.
    Frame(Parsed, usize),
    /// The input is the start of a frame (or of a CRLF) that needs more bytes.
    Incomplete(Need),
}

/// Streaming STOMP decoder for one direction of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    /// The bytes of a partial frame, copied from earlier messages. Empty when not partial.
    buf: BytesMut,
    /// What `buf` is waiting for (meaningful only when `buf` is not empty).
    need: Need,
    copied: u64,
    /// Stop after a CONNECT, STOMP or CONNECTED frame and hold the rest of the message: the
    /// version it negotiates decides how the frames behind it are unescaped.
    pause_after_handshake: bool,
    /// What followed the handshake frame, for [`Decoder::take_held`].
    held: Option<Bytes>,
}

impl Decoder {
    /// A decoder that applies 1.2 escaping rules until [`Decoder::set_version`] is called.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            version: Version::V1_2,
            buf: BytesMut::new(),
            need: Need::Line { line_start: 0 },
            copied: 0,
            pause_after_handshake: false,
            held: None,
        }
    }

    /// A decoder for a role that negotiates the version: after the first CONNECT, STOMP or
    /// CONNECTED frame it stops, and the caller, once it has called
    /// [`Decoder::set_version`], decodes [`Decoder::take_held`].
    pub fn pausing_after_handshake(mut self) -> Self {
        self.pause_after_handshake = true;
        self
    }

    /// The bytes that followed a handshake frame in its message, not yet decoded.
    pub fn take_held(&mut self) -> Option<Bytes> {
        self.held.take()
    }

    /// Whether `frame` is the handshake this decoder pauses after (only the first one).
    fn pauses_at(&mut self, frame: &Frame) -> bool {
        let hit = self.pause_after_handshake
            && matches!(
                frame.command,
                Command::Connect | Command::Stomp | Command::Connected
            );
        if hit {
            self.pause_after_handshake = false;
        }
        hit
    }

    /// Sets the negotiated version (it decides the escaping of frames other than CONNECT,
    /// STOMP and CONNECTED).
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
    }

    /// Decodes one WebSocket message (text or binary). The message continues any partial frame
    /// held from earlier messages. Complete items are pushed to `out` in order. A frame split
    /// across messages is kept until it is complete. Its size is checked against
    /// `max_frame_size` before each copy.
    ///
    /// After an error the decoder drops any partial frame. The connection should be closed.
    pub fn decode(&mut self, msg: Bytes, out: &mut Vec<Item>) -> Result<(), StompError> {
        let res = self.decode_inner(&msg, out);
        if res.is_err() {
            self.buf = BytesMut::new();
            self.need = Need::Line { line_start: 0 };
        }
        res
    }

    /// Whether a partial frame is held.
    pub fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Returns how many bytes were copied (for reassembly or unescaping) since the last call,
    /// and resets the count to 0.
    pub fn take_copied_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.copied)
    }

    fn decode_inner(&mut self, msg: &Bytes, out: &mut Vec<Item>) -> Result<(), StompError> {
        let mut pos = 0;
        if !self.buf.is_empty() {
            pos = self.resume(msg, out)?;
            if !self.buf.is_empty() {
                return Ok(());
            }
        }
        while let Some(rest) = msg.get(pos..).filter(|r| !r.is_empty()) {
            match scan(rest, self.version, &self.limits)? {
                Step::Heartbeat(n) => {
                    out.push(Item::Heartbeat);
                    pos += n;
                }
                Step::Frame(parsed, n) => {
                    let frame = self.build(msg, pos, parsed);
                    let pause = self.pauses_at(&frame);
                    out.push(Item::Frame(frame));
                    pos += n;
                    if pause {
                        self.held = Some(msg.slice(pos..)).filter(|b| !b.is_empty());
                        break;
                    }
                }
                Step::Incomplete(need) => {
                    // `scan` has already checked `rest.len()` against `max_frame_size`.
                    self.buf.extend_from_slice(rest);
                    self.copied += rest.len() as u64;
                    self.need = need;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Feeds `msg` into the partial frame in `buf` until it is complete. Returns how many bytes
    /// of `msg` were used. If `buf` is still not empty afterwards, all of `msg` was used.
    ///
    /// Copies only as far as the frame can reach: up to the next NUL, or to the exact
    /// `content-length` end. The rest of `msg` is then decoded without copying. The frame is
    /// scanned again only when the copied bytes could change the result: a new header line, the
    /// NUL, or the `content-length` end. So the work per frame is bounded by the header section
    /// times the number of header lines, plus one pass over the body.
    fn resume(&mut self, msg: &Bytes, out: &mut Vec<Item>) -> Result<usize, StompError> {
        let mut pos = 0;
        loop {
            let rest = msg.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                return Ok(pos);
            }
            let first_nul = || {
                rest.iter()
                    .position(|&b| b == 0)
                    .map_or(rest.len(), |i| i + 1)
            };
            let (take, rescan) = match self.need {
                Need::Total(total) => {
                    let take = total.saturating_sub(self.buf.len()).clamp(1, rest.len());
                    (take, self.buf.len() + take >= total)
                }
                Need::Nul => {
                    let take = first_nul();
                    (take, rest.get(take - 1) == Some(&0))
                }
                Need::Line { line_start } => {
                    let take = first_nul();
                    let chunk = rest.get(..take).unwrap_or_default();
                    (
                        take,
                        line_start == 0 || chunk.iter().any(|&b| b == b'\n' || b == 0),
                    )
                }
            };
            let size = self.buf.len() + take;
            if size > self.limits.max_frame_size {
                return Err(StompError::FrameTooLarge {
                    size,
                    max: self.limits.max_frame_size,
                });
            }
            self.buf
                .extend_from_slice(rest.get(..take).unwrap_or_default());
            self.copied += take as u64;
            pos += take;
            if !rescan {
                if let Need::Line { line_start } = self.need {
                    if self.buf.len().saturating_sub(line_start) > self.limits.max_header_len {
                        return Err(StompError::HeaderTooLong {
                            max: self.limits.max_header_len,
                        });
                    }
                }
                continue;
            }
            loop {
                match scan(&self.buf, self.version, &self.limits)? {
                    Step::Incomplete(need) => {
                        self.need = need;
                        break;
                    }
                    Step::Heartbeat(n) => {
                        self.buf.advance(n);
                        out.push(Item::Heartbeat);
                    }
                    Step::Frame(parsed, n) => {
                        let bytes = self.buf.split_to(n).freeze();
                        let frame = self.build(&bytes, 0, parsed);
                        let pause = self.pauses_at(&frame);
                        out.push(Item::Frame(frame));
                        if pause {
                            // Rare (a handshake split over messages with more behind it):
                            // hold the rest, copied, and report all of `msg` as used.
                            let mut rest = std::mem::take(&mut self.buf);
                            rest.extend_from_slice(msg.get(pos..).unwrap_or_default());
                            self.copied += rest.len() as u64;
                            self.held = Some(rest.freeze()).filter(|b| !b.is_empty());
                            self.buf = BytesMut::new();
                            return Ok(msg.len());
                        }
                    }
                }
                if self.buf.is_empty() {
                    self.buf = BytesMut::new();
                    return Ok(pos);
                }
            }
        }
    }

    /// Turns the ranges of `parsed` (relative to `src[base..]`) into a [`Frame`].
    fn build(&mut self, src: &Bytes, base: usize, parsed: Parsed) -> Frame {
        let mut headers = Vec::with_capacity(parsed.headers.len());
        for (name, value) in parsed.headers {
            let name = self.materialize(src, base, name);
            let value = self.materialize(src, base, value);
            headers.push((name, value));
        }
        Frame {
            command: parsed.command,
            headers,
            body: sub(src, base, parsed.body),
        }
    }

    fn materialize(&mut self, src: &Bytes, base: usize, span: Span) -> Bytes {
        match span {
            Span::Raw(r) => sub(src, base, r),
            Span::Owned(v) => {
                self.copied += v.len() as u64;
                Bytes::from(v)
            }
        }
    }
}

/// `src[base + r.start .. base + r.end]` as a zero-copy slice (empty if out of range, which
/// `scan` never produces).
fn sub(src: &Bytes, base: usize, r: Range<usize>) -> Bytes {
    let (start, end) = (base.saturating_add(r.start), base.saturating_add(r.end));
    if start <= end && end <= src.len() {
        src.slice(start..end)
    } else {
        Bytes::new()
    }
}

/// Finds the line starting at `start`. Returns the end of its content (any CR before the LF
/// removed) and the start of the next line, or `None` if there is no LF yet.
fn find_line(input: &[u8], start: usize) -> Option<(usize, usize)> {
    let lf = start + input.get(start..)?.iter().position(|&b| b == b'\n')?;
    let end = if lf > start && input.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

fn unknown_command(line: &[u8]) -> StompError {
    let kept = line.get(..MAX_REPORTED_COMMAND).unwrap_or(line);
    StompError::UnknownCommand(String::from_utf8_lossy(kept).into_owned())
}

/// Returns `Incomplete(need)`, unless `input` (one partial frame) is already over the limit.
fn incomplete(input: &[u8], need: Need, limits: &Limits) -> Result<Step, StompError> {
    if input.len() > limits.max_frame_size {
        return Err(StompError::FrameTooLarge {
            size: input.len(),
            max: limits.max_frame_size,
        });
    }
    Ok(Step::Incomplete(need))
}

/// Parses the item at the start of `input` (a heart-beat EOL or a frame). `input` must be
/// non-empty and start on an item boundary.
fn scan(input: &[u8], version: Version, limits: &Limits) -> Result<Step, StompError> {
    match (input.first(), input.get(1)) {
        (Some(b'\n'), _) => return Ok(Step::Heartbeat(1)),
        (Some(b'\r'), Some(b'\n')) => return Ok(Step::Heartbeat(2)),
        (Some(b'\r'), None) => return Ok(Step::Incomplete(Need::Total(2))),
        (None, _) => return Ok(Step::Incomplete(Need::Line { line_start: 0 })),
        _ => {}
    }

    // Command line.
    let Some((cmd_end, mut pos)) = find_line(input, 0) else {
        if input.len() > MAX_COMMAND_LEN || input.contains(&0) {
            return Err(unknown_command(input));
        }
        return incomplete(input, Need::Line { line_start: 0 }, limits);
    };
    let cmd_line = input.get(..cmd_end).unwrap_or_default();
    let command = Command::parse(cmd_line).ok_or_else(|| unknown_command(cmd_line))?;
    let escaping = command.escapes(version);

    // Header lines, up to the blank line.
    let mut headers = Vec::new();
    let mut content_length = None;
    loop {
        let Some((end, next)) = find_line(input, pos) else {
            let tail = input.get(pos..).unwrap_or_default();
            if tail.len() > limits.max_header_len {
                return Err(StompError::HeaderTooLong {
                    max: limits.max_header_len,
                });
            }
            if tail.contains(&0) {
                return Err(StompError::MalformedHeader);
            }
            return incomplete(input, Need::Line { line_start: pos }, limits);
        };
        let line = input.get(pos..end).unwrap_or_default();
        if line.is_empty() {
            pos = next;
            break;
        }
        if line.len() > limits.max_header_len {
            return Err(StompError::HeaderTooLong {
                max: limits.max_header_len,
            });
        }
        if headers.len() >= limits.max_headers {
            return Err(StompError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        if line.contains(&0) {
            return Err(StompError::MalformedHeader);
        }
        let colon = pos
            + line
                .iter()
                .position(|&b| b == b':')
                .ok_or(StompError::MalformedHeader)?;
        let name = span(input, pos..colon, escaping, version)?;
        let value = span(input, colon + 1..end, escaping, version)?;
        if content_length.is_none() && span_bytes(input, &name) == b"content-length" {
            let len = parse_len(span_bytes(input, &value))?;
            if len > limits.max_frame_size {
                return Err(StompError::FrameTooLarge {
                    size: len,
                    max: limits.max_frame_size,
                });
            }
            content_length = Some(len);
        }
        headers.push((name, value));
        pos = next;
    }

    // Body and NUL.
    let body_start = pos;
    let (body, total) = match content_length {
        Some(len) => {
            let body_end = body_start + len;
            let total = body_end + 1;
            if total > limits.max_frame_size {
                return Err(StompError::FrameTooLarge {
                    size: total,
                    max: limits.max_frame_size,
                });
            }
            match input.get(body_end) {
                None => return incomplete(input, Need::Total(total), limits),
                Some(0) => (body_start..body_end, total),
                Some(_) => return Err(StompError::MissingNul),
            }
        }
        None => {
            let rest = input.get(body_start..).unwrap_or_default();
            match rest.iter().position(|&b| b == 0) {
                None => return incomplete(input, Need::Nul, limits),
                Some(i) => (body_start..body_start + i, body_start + i + 1),
            }
        }
    };
    if total > limits.max_frame_size {
        return Err(StompError::FrameTooLarge {
            size: total,
            max: limits.max_frame_size,
        });
    }
    if !command.has_body() && !body.is_empty() {
        return Err(StompError::BodyNotAllowed(command.as_str()));
    }
    Ok(Step::Frame(
        Parsed {
            command,
            headers,
            body,
        },
        total,
    ))
}

/// A header name or value at `r`, unescaped if `escaping` and it contains a backslash.
fn span(
    input: &[u8],
    r: Range<usize>,
    escaping: bool,
    version: Version,
) -> Result<Span, StompError> {
    let raw = input.get(r.clone()).unwrap_or_default();
    if !escaping || !raw.contains(&b'\\') {
        return Ok(Span::Raw(r));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match it.next() {
            Some(b'\\') => b'\\',
            Some(b'n') => b'\n',
            Some(b'c') => b':',
            Some(b'r') if version >= Version::V1_2 => b'\r',
            _ => return Err(StompError::BadEscape),
        });
    }
    Ok(Span::Owned(out))
}

fn span_bytes<'a>(input: &'a [u8], s: &'a Span) -> &'a [u8] {
    match s {
        Span::Raw(r) => input.get(r.clone()).unwrap_or_default(),
        Span::Owned(v) => v,
    }
}

/// A `content-length` value: one or more ASCII digits, no sign, no whitespace.
fn parse_len(v: &[u8]) -> Result<usize, StompError> {
    if v.is_empty() {
        return Err(StompError::BadContentLength);
    }
    v.iter().try_fold(0usize, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(StompError::BadContentLength);
        }
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(usize::from(b - b'0')))
            .ok_or(StompError::BadContentLength)
    })
}

/// Encodes one frame: command, headers (escaped per `version`, never for CONNECT / STOMP /
/// CONNECTED or in 1.0), a blank line, the body and a NUL. Nothing is added implicitly:
/// callers add `content-length`.
///
/// A header byte the context cannot represent is written as `?`: a NUL anywhere, LF (and CR
/// before 1.2) where there is no escaping, and `:` in a name where there is no escaping.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    out.reserve(encoded_len(frame));
    let escaping = frame.command.escapes(version);
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in &frame.headers {
        put_header_part(out, name, escaping, version, true);
        out.put_u8(b':');
        put_header_part(out, value, escaping, version, false);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// [`encode`] into a fresh buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(frame));
    encode(frame, version, &mut out);
    out.freeze()
}

/// An upper bound on the encoded size of `frame` (every header byte counted as escaped).
pub fn encoded_len(frame: &Frame) -> usize {
    let headers: usize = frame
        .headers
        .iter()
        .map(|(n, v)| 2 * n.len() + 2 * v.len() + 2)
        .sum();
    frame.command.as_str().len() + 1 + headers + 1 + frame.body.len() + 1
}

fn put_header_part(
    out: &mut BytesMut,
    part: &[u8],
    escaping: bool,
    version: Version,
    is_name: bool,
) {
    let special = |b: u8| matches!(b, b'\\' | b'\n' | b'\r' | b':' | 0);
    if !part.iter().any(|&b| special(b)) {
        out.put_slice(part);
        return;
    }
    for &b in part {
        match b {
            0 => out.put_u8(REPLACEMENT),
            b'\\' if escaping => out.put_slice(b"\\\\"),
            b'\n' if escaping => out.put_slice(b"\\n"),
            b':' if escaping => out.put_slice(b"\\c"),
            b'\r' if escaping && version >= Version::V1_2 => out.put_slice(b"\\r"),
            b'\n' | b'\r' => out.put_u8(REPLACEMENT),
            b':' if is_name => out.put_u8(REPLACEMENT),
            _ => out.put_u8(b),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn decode_all(dec: &mut Decoder, msgs: &[&'static [u8]]) -> Result<Vec<Item>, StompError> {
        let mut out = Vec::new();
        for m in msgs {
            dec.decode(b(m), &mut out)?;
        }
        Ok(out)
    }

    fn one(wire: &'static [u8]) -> Result<Frame, StompError> {
        let mut dec = Decoder::new(Limits::default());
        let items = decode_all(&mut dec, &[wire])?;
        assert!(!dec.is_partial());
        match items.as_slice() {
            [Item::Frame(f)] => Ok(f.clone()),
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    fn frames(items: Vec<Item>) -> Vec<Frame> {
        items
            .into_iter()
            .filter_map(|i| match i {
                Item::Frame(f) => Some(f),
                Item::Heartbeat => None,
            })
            .collect()
    }

    fn golden() -> Vec<(Frame, &'static [u8])> {
        use Command::*;
        vec![
            (
                Frame::new(Connect)
                    .with_header("accept-version", "1.0,1.1,1.2")
                    .with_header("host", "example.com")
                    .with_header("login", "alice")
                    .with_header("passcode", "s3cr3t")
                    .with_header("heart-beat", "10000,10000"),
                b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:example.com\nlogin:alice\npasscode:s3cr3t\nheart-beat:10000,10000\n\n\0",
            ),
            (
                Frame::new(Stomp).with_header("accept-version", "1.2").with_header("host", "example.com"),
                b"STOMP\naccept-version:1.2\nhost:example.com\n\n\0",
            ),
            (
                Frame::new(Connected)
                    .with_header("version", "1.2")
                    .with_header("session", "sess-42")
                    .with_header("server", "RabbitMQ/3.13.0")
                    .with_header("heart-beat", "10000,10000"),
                b"CONNECTED\nversion:1.2\nsession:sess-42\nserver:RabbitMQ/3.13.0\nheart-beat:10000,10000\n\n\0",
            ),
            (
                Frame::new(Send)
                    .with_header("destination", "/topic/chat.lobby")
                    .with_header("content-type", "application/json")
                    .with_header("content-length", "21")
                    .with_header("receipt", "r-7")
                    .with_header("event", "message_created")
                    .with_body(b(br#"{"id":17,"text":"hi"}"#)),
                b"SEND\ndestination:/topic/chat.lobby\ncontent-type:application/json\ncontent-length:21\nreceipt:r-7\nevent:message_created\n\n{\"id\":17,\"text\":\"hi\"}\0",
            ),
            (
                Frame::new(Subscribe)
                    .with_header("id", "sub-0")
                    .with_header("destination", "/topic/chat.lobby")
                    .with_header("ack", "client-individual"),
                b"SUBSCRIBE\nid:sub-0\ndestination:/topic/chat.lobby\nack:client-individual\n\n\0",
            ),
            (Frame::new(Unsubscribe).with_header("id", "sub-0"), b"UNSUBSCRIBE\nid:sub-0\n\n\0"),
            (Frame::new(Ack).with_header("id", "a-1001"), b"ACK\nid:a-1001\n\n\0"),
            (
                Frame::new(Nack).with_header("id", "a-1002").with_header("transaction", "tx-1"),
                b"NACK\nid:a-1002\ntransaction:tx-1\n\n\0",
            ),
            (Frame::new(Begin).with_header("transaction", "tx-1"), b"BEGIN\ntransaction:tx-1\n\n\0"),
            (Frame::new(Commit).with_header("transaction", "tx-1"), b"COMMIT\ntransaction:tx-1\n\n\0"),
            (Frame::new(Abort).with_header("transaction", "tx-1"), b"ABORT\ntransaction:tx-1\n\n\0"),
            (Frame::new(Disconnect).with_header("receipt", "77"), b"DISCONNECT\nreceipt:77\n\n\0"),
            (
                Frame::new(Message)
                    .with_header("subscription", "sub-0")
                    .with_header("message-id", "m-1001")
                    .with_header("destination", "/topic/chat.lobby")
                    .with_header("ack", "a-1001")
                    .with_header("content-type", "application/json")
                    .with_header("content-length", "21")
                    .with_header("event", "message_created")
                    .with_body(b(br#"{"id":17,"text":"hi"}"#)),
                b"MESSAGE\nsubscription:sub-0\nmessage-id:m-1001\ndestination:/topic/chat.lobby\nack:a-1001\ncontent-type:application/json\ncontent-length:21\nevent:message_created\n\n{\"id\":17,\"text\":\"hi\"}\0",
            ),
            (Frame::new(Receipt).with_header("receipt-id", "r-7"), b"RECEIPT\nreceipt-id:r-7\n\n\0"),
            (
                Frame::new(Error)
                    .with_header("message", "access refused")
                    .with_header("receipt-id", "r-7")
                    .with_header("content-type", "text/plain")
                    .with_header("content-length", "37")
                    .with_body(b(b"Destination /queue/x is not permitted")),
                b"ERROR\nmessage:access refused\nreceipt-id:r-7\ncontent-type:text/plain\ncontent-length:37\n\nDestination /queue/x is not permitted\0",
            ),
        ]
    }

    #[test]
    fn golden_frames_every_command_encode_and_decode() {
        let cases = golden();
        let mut seen: Vec<Command> = cases.iter().map(|(f, _)| f.command).collect();
        seen.dedup();
        assert_eq!(seen.len(), 15, "every command has a golden frame");
        for (frame, wire) in cases {
            for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
                assert_eq!(
                    encode_to_bytes(&frame, v).as_ref(),
                    wire,
                    "encode {:?} {v:?}",
                    frame.command
                );
                assert!(encoded_len(&frame) >= wire.len());
            }
            assert_eq!(one(wire).unwrap(), frame, "decode {:?}", frame.command);
        }
    }

    #[test]
    fn command_and_version_names() {
        for (frame, _) in golden() {
            assert_eq!(
                Command::parse(frame.command.as_str().as_bytes()),
                Some(frame.command)
            );
        }
        assert_eq!(Command::parse(b"send"), None);
        assert!(
            Command::Send.has_body() && Command::Message.has_body() && Command::Error.has_body()
        );
        assert!(!Command::Subscribe.has_body() && !Command::Connect.has_body());
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            assert_eq!(Version::parse(v.as_str().as_bytes()), Some(v));
        }
        assert_eq!(Version::V1_2.subprotocol(), "v12.stomp");
        assert_eq!(Version::V1_0.subprotocol(), "v10.stomp");
        assert_eq!(Version::parse(b"2.1"), None);
        assert!(Version::V1_0 < Version::V1_1 && Version::V1_1 < Version::V1_2);
    }

    #[test]
    fn encoder_output_parses_with_stomp_parser() {
        use std::convert::TryFrom;
        let wire = encode_to_bytes(&golden().swap_remove(3).0, Version::V1_2);
        match stomp_parser::client::ClientFrame::try_from(wire.to_vec()) {
            Ok(stomp_parser::client::ClientFrame::Send(f)) => {
                assert_eq!(f.destination().value(), "/topic/chat.lobby");
                assert_eq!(f.body(), Some(&br#"{"id":17,"text":"hi"}"#[..]));
            }
            other => panic!(
                "stomp-parser disagrees: {:?}",
                other.map(|_| ()).err().map(|e| e.message().to_owned())
            ),
        }
    }

    #[test]
    fn escaping_per_version_encode() {
        let f = Frame::new(Command::Message).with_header("k:\\", "a:b\nc\\d\re");
        assert_eq!(
            encode_to_bytes(&f, Version::V1_2).as_ref(),
            b"MESSAGE\nk\\c\\\\:a\\cb\\nc\\\\d\\re\n\n\0"
        );
        // 1.1 has no \r: a CR is replaced, so it can never end the line early.
        assert_eq!(
            encode_to_bytes(&f, Version::V1_1).as_ref(),
            b"MESSAGE\nk\\c\\\\:a\\cb\\nc\\\\d?e\n\n\0"
        );
        // 1.0 escapes nothing. LF and CR (and `:` in a name) cannot be written, so they become `?`.
        assert_eq!(
            encode_to_bytes(&f, Version::V1_0).as_ref(),
            b"MESSAGE\nk?\\:a:b?c\\d?e\n\n\0"
        );
        // CONNECT / CONNECTED are never escaped.
        let c = Frame::new(Command::Connected).with_header("server", "a:b\\c");
        assert_eq!(
            encode_to_bytes(&c, Version::V1_2).as_ref(),
            b"CONNECTED\nserver:a:b\\c\n\n\0"
        );
        let c = Frame::new(Command::Connect).with_header("passcode", "p\\n:x");
        assert_eq!(
            encode_to_bytes(&c, Version::V1_1).as_ref(),
            b"CONNECT\npasscode:p\\n:x\n\n\0"
        );
        // A NUL in a header would end the frame: it is replaced in every version.
        let n = Frame::new(Command::Send).with_header("x", b(b"a\0b"));
        assert_eq!(
            encode_to_bytes(&n, Version::V1_2).as_ref(),
            b"SEND\nx:a?b\n\n\0"
        );
    }

    #[test]
    fn escaping_per_version_decode() {
        let wire = b(b"MESSAGE\nk\\c\\\\:a\\cb\\nc\\\\d\\re\n\n\0");
        let mut dec = Decoder::new(Limits::default());
        let mut out = Vec::new();
        dec.decode(wire.clone(), &mut out).unwrap();
        let f = &frames(out)[0];
        assert_eq!(f.headers, vec![(b(b"k:\\"), b(b"a:b\nc\\d\re"))]);
        assert!(dec.take_copied_bytes() > 0, "unescaping is counted");
        assert_eq!(dec.take_copied_bytes(), 0, "and reset");

        // 1.1: `\c` and `\n` decode, `\r` is a bad escape.
        dec.set_version(Version::V1_1);
        let f = frames(decode_all(&mut dec, &[b"MESSAGE\nk:a\\cb\\n\n\n\0"]).unwrap()).remove(0);
        assert_eq!(f.header("k").unwrap().as_ref(), b"a:b\n");
        assert!(matches!(
            decode_all(&mut dec, &[b"MESSAGE\nk:a\\r\n\n\0"]),
            Err(StompError::BadEscape)
        ));

        // 1.0: backslashes are literal.
        let mut dec = Decoder::new(Limits::default());
        dec.set_version(Version::V1_0);
        let f = frames(decode_all(&mut dec, &[b"MESSAGE\nk:a\\cb\\t\n\n\0"]).unwrap()).remove(0);
        assert_eq!(f.header("k").unwrap().as_ref(), b"a\\cb\\t");

        // CONNECT / STOMP / CONNECTED are literal in every version.
        let f = one(b"CONNECT\npasscode:a\\tb\\c\nAuthorization:Bearer a:b\n\n\0").unwrap();
        assert_eq!(f.header("passcode").unwrap().as_ref(), b"a\\tb\\c");
        assert_eq!(f.header_str("Authorization"), Some("Bearer a:b"));
        let f = one(b"CONNECTED\nserver:x\\y\n\n\0").unwrap();
        assert_eq!(f.header_str("server"), Some("x\\y"));
        let f = one(b"STOMP\nlogin:\\\n\n\0").unwrap();
        assert_eq!(f.header_str("login"), Some("\\"));
    }

    #[test]
    fn escaped_roundtrip_lcg() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"ab:\\\n\r\xff";
        for _ in 0..200 {
            let mut val = Vec::new();
            for _ in 0..(lcg(&mut seed) % 12) {
                val.push(alphabet[(lcg(&mut seed) % alphabet.len() as u64) as usize]);
            }
            for v in [Version::V1_1, Version::V1_2] {
                let expect = if v == Version::V1_1 {
                    val.iter()
                        .map(|&c| if c == b'\r' { b'?' } else { c })
                        .collect()
                } else {
                    val.clone()
                };
                let f = Frame::new(Command::Send)
                    .with_header(Bytes::from(val.clone()), Bytes::from(val.clone()));
                let mut dec = Decoder::new(Limits::default());
                dec.set_version(v);
                let mut out = Vec::new();
                dec.decode(encode_to_bytes(&f, v), &mut out).unwrap();
                let g = frames(out).remove(0);
                assert_eq!(
                    g.headers,
                    vec![(Bytes::from(expect.clone()), Bytes::from(expect))],
                    "{v:?} {val:?}"
                );
            }
        }
    }

    #[test]
    fn several_frames_with_heartbeats_between() {
        let mut dec = Decoder::new(Limits::default());
        let items = decode_all(
            &mut dec,
            &[b"\n\r\nSEND\ndestination:/a\n\nx\0\n\nRECEIPT\nreceipt-id:1\n\n\0\r\nMESSAGE\ndestination:/b\n\ny\0\n"],
        )
        .unwrap();
        let kinds: Vec<&str> = items
            .iter()
            .map(|i| match i {
                Item::Heartbeat => "hb",
                Item::Frame(f) => f.command.as_str(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "hb", "hb", "SEND", "hb", "hb", "RECEIPT", "hb", "MESSAGE", "hb"
            ]
        );
        assert!(!dec.is_partial());
        assert_eq!(dec.take_copied_bytes(), 0);
    }

    #[test]
    fn frame_split_over_three_messages() {
        let mut dec = Decoder::new(Limits::default());
        let mut out = Vec::new();
        dec.decode(b(b"\nSEND\ndestin"), &mut out).unwrap();
        assert!(dec.is_partial());
        assert_eq!(out, vec![Item::Heartbeat]);
        dec.decode(b(b"ation:/a\ncontent-length:3\n\nx"), &mut out)
            .unwrap();
        assert!(dec.is_partial());
        let third = b(b"\0z\0\nRECEIPT\nreceipt-id:9\n\n\0");
        dec.decode(third.clone(), &mut out).unwrap();
        assert!(!dec.is_partial());
        let fs = frames(out);
        assert_eq!(fs.len(), 2);
        assert_eq!(fs[0].header_str("destination"), Some("/a"));
        assert_eq!(fs[0].body.as_ref(), b"x\0z");
        // Only the SEND frame was copied; the RECEIPT after it is a slice of the third message.
        assert_eq!(
            dec.take_copied_bytes(),
            (b"SEND\ndestination:/a\ncontent-length:3\n\nx\0z\0").len() as u64
        );
        assert!(within(&fs[1].headers[0].1, &third));
    }

    #[test]
    fn split_everywhere_matches_whole() {
        let wire: &[u8] = b"\r\nSEND\r\ndestination:/a\\cb\r\ncontent-length:2\r\nevent:e\r\n\r\n\0\0\0\nSUBSCRIBE\nid:1\n\n\0\r";
        let whole = {
            let mut dec = Decoder::new(Limits::default());
            let mut out = Vec::new();
            dec.decode(Bytes::copy_from_slice(wire), &mut out).unwrap();
            assert!(dec.is_partial(), "lone trailing CR waits for its LF");
            out
        };
        assert_eq!(frames(whole.clone()).len(), 2);
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                let mut dec = Decoder::new(Limits::default());
                let mut out = Vec::new();
                for part in [&wire[..i], &wire[i..j], &wire[j..]] {
                    dec.decode(Bytes::copy_from_slice(part), &mut out).unwrap();
                }
                assert_eq!(out, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn lone_cr_then_lf_is_heartbeat() {
        let mut dec = Decoder::new(Limits::default());
        let out = decode_all(&mut dec, &[b"\r", b"\nACK\nid:1\n\n\0"]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Item::Heartbeat);
        assert!(!dec.is_partial());
    }

    #[test]
    fn crlf_frames() {
        let f = one(b"SEND\r\ndestination:/a\r\nfoo:bar \r\n\r\nhi\0").unwrap();
        assert_eq!(f.command, Command::Send);
        assert_eq!(
            f.headers,
            vec![(b(b"destination"), b(b"/a")), (b(b"foo"), b(b"bar "))]
        );
        assert_eq!(f.body.as_ref(), b"hi");
        // 1.0 and CONNECT strip a trailing CR as well.
        let f = one(b"CONNECT\r\nlogin:a\r\n\r\n\0").unwrap();
        assert_eq!(f.header_str("login"), Some("a"));
        let mut dec = Decoder::new(Limits::default());
        dec.set_version(Version::V1_0);
        let f = frames(decode_all(&mut dec, &[b"MESSAGE\r\nk:v\r\n\r\n\0"]).unwrap()).remove(0);
        assert_eq!(f.header_str("k"), Some("v"));
    }

    #[test]
    fn content_length_body_with_nul() {
        let f = one(b"SEND\ndestination:/a\ncontent-length:5\n\n\0a\0b\0\0").unwrap();
        assert_eq!(f.body.as_ref(), b"\0a\0b\0");
        let f = one(b"SEND\ncontent-length:0\n\n\0").unwrap();
        assert!(f.body.is_empty());
    }

    #[test]
    fn repeated_headers_first_wins_and_all_kept() {
        let f =
            one(b"MESSAGE\ndestination:/first\ndestination:/second\nempty:\n:anon\n\n\0").unwrap();
        assert_eq!(f.header_str("destination"), Some("/first"));
        assert_eq!(f.headers.len(), 4);
        assert_eq!(f.headers[1].1.as_ref(), b"/second");
        assert_eq!(f.header_str("empty"), Some(""));
        assert_eq!(f.header(""), Some(&b(b"anon")));
        assert_eq!(f.header("missing"), None);
        // The first content-length counts; later ones are kept but ignored.
        let f = one(b"SEND\ncontent-length:1\ncontent-length:junk\n\n\0\0").unwrap();
        assert_eq!(f.body.as_ref(), b"\0");
        // header_str is None for non-UTF-8.
        let f = one(b"SEND\nk:\xff\n\n\0").unwrap();
        assert_eq!(f.header_str("k"), None);
        assert!(f.header("k").is_some());
    }

    fn within(part: &Bytes, whole: &Bytes) -> bool {
        let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
        p >= w && p + part.len() <= w + whole.len()
    }

    #[test]
    fn zero_copy_when_frame_within_one_message() {
        let msg = Bytes::copy_from_slice(
            b"\nSEND\ndestination:/a\nevent:e\n\nhello\0SEND\ncontent-length:3\n\nx\0y\0",
        );
        let mut dec = Decoder::new(Limits::default());
        let mut out = Vec::new();
        dec.decode(msg.clone(), &mut out).unwrap();
        let fs = frames(out);
        assert_eq!(fs.len(), 2);
        for f in &fs {
            assert!(within(&f.body, &msg));
            for (n, v) in &f.headers {
                assert!(within(n, &msg) && within(v, &msg));
            }
        }
        assert_eq!(fs[0].body.as_ref(), b"hello");
        assert_eq!(fs[1].body.as_ref(), b"x\0y");
        assert_eq!(dec.take_copied_bytes(), 0);
    }

    #[test]
    fn empty_body_allowed_nonempty_rejected_on_bodyless_commands() {
        assert!(one(b"SUBSCRIBE\nid:1\ndestination:/a\n\n\0").is_ok());
        assert!(matches!(
            one(b"SUBSCRIBE\nid:1\n\nxx\0"),
            Err(StompError::BodyNotAllowed("SUBSCRIBE"))
        ));
        assert!(matches!(
            one(b"ACK\nid:1\ncontent-length:1\n\nx\0"),
            Err(StompError::BodyNotAllowed("ACK"))
        ));
    }

    #[test]
    fn malformed_inputs_give_their_errors() {
        assert!(matches!(one(b"FOO\n\n\0"), Err(StompError::UnknownCommand(c)) if c == "FOO"));
        assert!(matches!(
            one(b"send\n\n\0"),
            Err(StompError::UnknownCommand(_))
        ));
        let long = one(b"THIS-IS-NOT-A-COMMAND-AT-ALL-AND-QUITE-LONG\n\n\0");
        assert!(matches!(long, Err(StompError::UnknownCommand(c)) if c.len() == 32));
        // An unterminated first line longer than any command fails at once.
        let mut dec = Decoder::new(Limits::default());
        assert!(matches!(
            decode_all(&mut dec, &[b"GET / HTTP/1.1 and more"]),
            Err(StompError::UnknownCommand(_))
        ));
        assert!(!dec.is_partial());
        assert!(matches!(
            one(b"SEND\nk:a\\tb\n\n\0"),
            Err(StompError::BadEscape)
        ));
        assert!(matches!(
            one(b"SEND\nk:a\\\n\n\0"),
            Err(StompError::BadEscape)
        ));
        assert!(matches!(
            one(b"SEND\nnocolon\n\n\0"),
            Err(StompError::MalformedHeader)
        ));
        assert!(matches!(
            one(b"SEND\nk:v\0\n\n\0"),
            Err(StompError::MalformedHeader)
        ));
        assert!(matches!(
            one(b"DISCONNECT\n\0"),
            Err(StompError::MalformedHeader)
        ));
        assert!(matches!(
            one(b"SEND\ncontent-length:abc\n\n\0"),
            Err(StompError::BadContentLength)
        ));
        assert!(matches!(
            one(b"SEND\ncontent-length: 1\n\nx\0"),
            Err(StompError::BadContentLength)
        ));
        assert!(matches!(
            one(b"SEND\ncontent-length:\n\n\0"),
            Err(StompError::BadContentLength)
        ));
        assert!(matches!(
            one(b"SEND\ncontent-length:99999999999999999999999\n\n\0"),
            Err(StompError::BadContentLength)
        ));
        assert!(matches!(
            one(b"SEND\ncontent-length:2\n\nabc\0"),
            Err(StompError::MissingNul)
        ));
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_frame_size: 64,
            max_headers: 2,
            max_header_len: 24,
        };
        // A partial frame already over the limit fails at once, without buffering.
        let mut dec = Decoder::new(small.clone());
        let mut big = b"SEND\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100));
        let r = dec.decode(Bytes::from(big), &mut Vec::new());
        assert!(
            matches!(r, Err(StompError::FrameTooLarge { size: 106, max: 64 })),
            "{r:?}"
        );
        assert!(!dec.is_partial());
        // The same, reached over several messages.
        let mut dec = Decoder::new(small.clone());
        let r = decode_all(
            &mut dec,
            &[
                b"SEND\n\n0123456789",
                b"0123456789012345678901234567890123456789",
                b"0123456789",
            ],
        );
        assert!(
            matches!(r, Err(StompError::FrameTooLarge { max: 64, .. })),
            "{r:?}"
        );
        // A content-length over the limit fails as soon as the header line is seen.
        let mut dec = Decoder::new(small.clone());
        let r = decode_all(&mut dec, &[b"SEND\ncontent-length:65\n"]);
        assert!(
            matches!(r, Err(StompError::FrameTooLarge { size: 65, max: 64 })),
            "{r:?}"
        );
        // A content-length that with the headers exceeds the limit, before the body arrives.
        let mut dec = Decoder::new(small.clone());
        let r = decode_all(&mut dec, &[b"SEND\ncontent-length:60\n\n"]);
        assert!(
            matches!(r, Err(StompError::FrameTooLarge { max: 64, .. })),
            "{r:?}"
        );
        // Complete frames are checked too.
        let mut long = b"SEND\n\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 80));
        long.push(0);
        let r = Decoder::new(small.clone()).decode(Bytes::from(long), &mut Vec::new());
        assert!(matches!(r, Err(StompError::FrameTooLarge { .. })));
        // Header count and length.
        let mut dec = Decoder::new(small.clone());
        let r = decode_all(&mut dec, &[b"SEND\na:1\nb:2\nc:3\n\n\0"]);
        assert!(
            matches!(r, Err(StompError::TooManyHeaders { max: 2 })),
            "{r:?}"
        );
        let mut dec = Decoder::new(small.clone());
        let r = decode_all(&mut dec, &[b"SEND\nk:0123456789abcdefghijklmn\n\n\0"]);
        assert!(
            matches!(r, Err(StompError::HeaderTooLong { max: 24 })),
            "{r:?}"
        );
        // An unterminated header line over the limit, even split over messages.
        let mut dec = Decoder::new(small.clone());
        let r = decode_all(&mut dec, &[b"SEND\nk:0123", b"456789abcdefghijklmn"]);
        assert!(
            matches!(r, Err(StompError::HeaderTooLong { max: 24 })),
            "{r:?}"
        );
        // Exactly at the limits is fine.
        let mut dec = Decoder::new(small.clone());
        let out = decode_all(&mut dec, &[b"SEND\na:1\nk:0123456789abcdefghijkl\n\n\0"]).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn error_messages_are_short() {
        let errs = [
            StompError::FrameTooLarge { size: 2, max: 1 },
            StompError::TooManyHeaders { max: 64 },
            StompError::HeaderTooLong { max: 8192 },
            StompError::UnknownCommand("x".repeat(32)),
            StompError::MalformedHeader,
            StompError::BadEscape,
            StompError::BadContentLength,
            StompError::MissingNul,
            StompError::BodyNotAllowed("ACK"),
        ];
        for e in errs {
            let m = e.message();
            assert!(!m.is_empty() && m.len() <= 64, "{m}");
            assert!(!e.to_string().is_empty());
        }
        assert!(std::mem::size_of::<StompError>() <= 32);
    }

    fn lcg(s: &mut u64) -> u64 {
        *s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *s >> 33
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut seed = 42u64;
        let alphabet: &[u8] = b"SENDACKMESGRIPT\n\r:\\\0abc-content-length:0123456789\xff";
        let limits = Limits {
            max_frame_size: 256,
            max_headers: 8,
            max_header_len: 64,
        };
        for round in 0..400 {
            let len = (lcg(&mut seed) % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = lcg(&mut seed);
                    if round % 2 == 0 {
                        alphabet[(r % alphabet.len() as u64) as usize]
                    } else {
                        r as u8
                    }
                })
                .collect();
            let mut dec = Decoder::new(limits.clone());
            let _ = dec.decode(Bytes::from(bytes.clone()), &mut Vec::new());
            // The same bytes in random pieces, under each version.
            let mut dec = Decoder::new(limits.clone());
            dec.set_version([Version::V1_0, Version::V1_1, Version::V1_2][round % 3]);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + (lcg(&mut seed) as usize % rest.len());
                let (a, b) = rest.split_at(n);
                if dec
                    .decode(Bytes::copy_from_slice(a), &mut Vec::new())
                    .is_err()
                {
                    break;
                }
                rest = b;
            }
        }
    }

    #[test]
    fn a_pausing_decoder_holds_what_follows_the_handshake() {
        let mut dec = Decoder::new(Limits::default()).pausing_after_handshake();
        let mut items = Vec::new();
        dec.decode(
            Bytes::from_static(b"CONNECT\naccept-version:1.0\n\n\0SEND\ndestination:/a\\c\n\n\0"),
            &mut items,
        )
        .unwrap();
        assert_eq!(items.len(), 1);
        let held = dec.take_held().unwrap();
        assert_eq!(&held[..], b"SEND\ndestination:/a\\c\n\n\0");
        dec.set_version(Version::V1_0);
        dec.decode(held, &mut items).unwrap();
        let Some(Item::Frame(f)) = items.pop() else {
            panic!()
        };
        assert_eq!(f.header("destination").unwrap(), "/a\\c");
        // Only the first handshake pauses; split over messages, the rest is held too.
        let mut dec = Decoder::new(Limits::default()).pausing_after_handshake();
        dec.decode(Bytes::from_static(b"CONNECTED\nversion:1.1"), &mut items)
            .unwrap();
        dec.decode(Bytes::from_static(b"\n\n\0\nMESSAGE\n\n\0"), &mut items)
            .unwrap();
        assert_eq!(&dec.take_held().unwrap()[..], b"\nMESSAGE\n\n\0");
        assert!(dec.take_held().is_none());
    }
}
