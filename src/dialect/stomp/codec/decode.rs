//! The streaming [`Decoder`] for one direction of one connection: WebSocket messages in,
//! [`Item`]s out. It keeps a partial frame across messages (copying only as far as the frame
//! can reach and checking [`Limits`] before each copy), slices complete frames out of the
//! message without copying, and can pause after the handshake frame until the version is
//! known. It counts the bytes it copies.
//!
//! Must not touch: parsing the bytes of one frame (`scan.rs`), encoding (`encode.rs`).

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::error::StompError;
use super::frame::{Command, Frame, Version};
use super::scan::{Need, Parsed, Span, Step, scan};

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

/// Streaming STOMP decoder for one direction of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    /// The bytes of a partial frame, copied from earlier messages. Empty when not partial.
    buf: BytesMut,
    /// What `buf` is waiting for (meaningful only when `buf` is not empty).
    need: Need,
    copied: crate::dialect::Copied,
    /// Stop after a CONNECT, STOMP or CONNECTED frame and hold the rest of the message: the
    /// version it negotiates decides how the frames behind it are unescaped.
    pause_after_handshake: bool,
    /// What followed the handshake frame, for [`Decoder::take_held`].
    held: Option<Bytes>,
    /// The header spans of the last frame, cleared and reused by the next scan (one
    /// allocation less per frame).
    spans: Vec<(Span, Span)>,
}

/// Most header spans a decoder keeps allocated between frames.
const MAX_KEPT_SPANS: usize = 8;

impl Decoder {
    /// A decoder that applies 1.2 escaping rules until [`Decoder::set_version`] is called.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            version: Version::V1_2,
            buf: BytesMut::new(),
            need: Need::Line { line_start: 0 },
            copied: crate::dialect::Copied::default(),
            pause_after_handshake: false,
            held: None,
            spans: Vec::new(),
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

    /// The copies made (for reassembly or unescaping) since the last call, with their bytes;
    /// resets the count.
    pub fn take_copied(&mut self) -> crate::dialect::Copied {
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
            match scan(
                rest,
                self.version,
                &self.limits,
                std::mem::take(&mut self.spans),
            )? {
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
                    self.copied.one(rest.len());
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
            self.copied.one(take);
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
                match scan(
                    &self.buf,
                    self.version,
                    &self.limits,
                    std::mem::take(&mut self.spans),
                )? {
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
                            self.copied.one(rest.len());
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
    fn build(&mut self, src: &Bytes, base: usize, mut parsed: Parsed) -> Frame {
        let mut headers = Vec::with_capacity(parsed.headers.len());
        for (name, value) in parsed.headers.drain(..) {
            let name = match &name {
                Span::Raw(r) => sub_slice(src, base, r).and_then(standard_name),
                Span::Owned(_) => None,
            }
            .map_or_else(|| self.materialize(src, base, name), Bytes::from_static);
            let value = self.materialize(src, base, value);
            headers.push((name, value));
        }
        // The span vector goes back for the next frame's scan, unless an unusual frame grew
        // it (an idle session keeps no more than a few hundred bytes for it).
        if parsed.headers.capacity() <= MAX_KEPT_SPANS {
            self.spans = parsed.headers;
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
                self.copied.one(v.len());
                Bytes::from(v)
            }
        }
    }
}

/// The header names of the STOMP 1.2 specification, as static bytes: a frame's names are
/// nearly always among them, and a static name is not one more handle on the received
/// message (an atomic increment, and a decrement when the frame is dropped).
fn standard_name(name: &[u8]) -> Option<&'static [u8]> {
    Some(match name {
        b"destination" => b"destination",
        b"content-type" => b"content-type",
        b"content-length" => b"content-length",
        b"receipt" => b"receipt",
        b"receipt-id" => b"receipt-id",
        b"id" => b"id",
        b"subscription" => b"subscription",
        b"message-id" => b"message-id",
        b"ack" => b"ack",
        b"transaction" => b"transaction",
        b"message" => b"message",
        b"accept-version" => b"accept-version",
        b"version" => b"version",
        b"host" => b"host",
        b"login" => b"login",
        b"passcode" => b"passcode",
        b"heart-beat" => b"heart-beat",
        b"session" => b"session",
        b"server" => b"server",
        _ => return None,
    })
}

/// `base + r` as a range of `src` (`None` if out of range, which `scan` never produces).
fn shifted(src: &Bytes, base: usize, r: &Range<usize>) -> Option<Range<usize>> {
    let (start, end) = (base.checked_add(r.start)?, base.checked_add(r.end)?);
    (start <= end && end <= src.len()).then_some(start..end)
}

/// `src[base + r.start .. base + r.end]`, borrowed.
fn sub_slice<'a>(src: &'a Bytes, base: usize, r: &Range<usize>) -> Option<&'a [u8]> {
    src.get(shifted(src, base, r)?)
}

/// `src[base + r.start .. base + r.end]` as a zero-copy slice (empty if out of range).
fn sub(src: &Bytes, base: usize, r: Range<usize>) -> Bytes {
    shifted(src, base, &r).map_or_else(Bytes::new, |r| src.slice(r))
}
