//! WebSocket framing (RFC 6455 §5) on a connection whose handshake is done.
//!
//! Owns: [`Frames`], the WebSocket the session reads and writes on both legs once hyper has
//! upgraded the connection ([`Socket`]): frames read into one buffer (never zero-filled), unmasked in place and handed
//! out as slices of it; messages encoded into one write buffer, written with one flush; the
//! control frames (a ping answered with a pong, the close handshake, a protocol error
//! answered with 1002 or 1007), fragmented messages,
//! the size limits (from the frame header, before anything is buffered), the UTF-8 check of
//! text (not on a relay: see [`Frames::relay`]).
//!
//! Must not touch: handshakes (hyper does both: `handshake` for clients, `upstream` for
//! backends), sessions, dialects. It speaks tungstenite's `Message` and `Error`, so that where a session holds a
//! WebSocket it can hold either this or tokio-tungstenite's.
//!
//! Why not tokio-tungstenite on this side: its stream reaches the socket through a std-io
//! shim with waker proxies, zero-fills its read buffer before every read, and a message
//! passes three layers each way. Reading and writing a frame here is a header parse and a
//! slice (callgrind, per STOMP → Socket.IO round trip: see the README's performance section).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Sink, Stream};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const FIN: u8 = 0x80;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A connection a WebSocket runs over: TCP, or TLS over TCP, boxed (one stream type for
/// both legs, plain or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket on a connection hyper upgraded: a client's (server role) or a backend's
/// (client role).
pub type Socket = Frames<Box<dyn Io>>;

impl Socket {
    /// The WebSocket on the connection hyper upgraded, read and written without hyper's
    /// layers in between: the listener and the dialer hand hyper a `TokioIo<Box<dyn Io>>`, so
    /// the upgrade gives that stream back, with what hyper had read past the handshake (a
    /// first frame sent right behind it) as the start of the read buffer. Through
    /// `Upgraded`, every read passed four adaptors and two dynamic calls (callgrind: about
    /// 100 instructions a read).
    pub fn upgraded(up: hyper::upgrade::Upgraded, role: Role, config: &WebSocketConfig) -> Self {
        match up.downcast::<TokioIo<Box<dyn Io>>>() {
            Ok(parts) => {
                let mut ws = Frames::new(parts.io.into_inner(), role, config);
                ws.rd.extend_from_slice(&parts.read_buf);
                ws
            }
            // Another stream type (none today): through hyper's adaptors, as it was.
            Err(up) => Frames::new(Box::new(TokioIo::new(up)), role, config),
        }
    }
}

/// A WebSocket over `S`, as one stream of messages in and one sink of messages out.
pub struct Frames<S> {
    io: S,
    role: Role,
    /// Bytes read and not yet taken as frames.
    rd: BytesMut,
    /// Room asked for before each read: the configured read buffer.
    read_size: usize,
    /// Bytes the frame at the front of `rd` still lacks (at least one read's worth is asked
    /// for anyway).
    missing: usize,
    max_frame: usize,
    max_message: usize,
    /// A fragmented message being gathered: text or not, and its bytes so far.
    partial: Option<(bool, BytesMut)>,
    /// Frames encoded and not yet written.
    wr: BytesMut,
    /// Past this many unwritten bytes a new message first tries to write them out.
    write_size: usize,
    /// A close frame was queued: nothing more is written.
    sent_close: bool,
    /// A close frame arrived, the connection ended or a frame was refused: nothing more is
    /// read.
    done: bool,
    /// Text is handed on unchecked (see [`Frames::relay`]).
    relay: bool,
}

impl<S> Frames<S> {
    /// A WebSocket in `role` over `io`, sized and limited by `config` (its read and write
    /// buffer sizes, its frame and message limits).
    pub fn new(io: S, role: Role, config: &WebSocketConfig) -> Self {
        Self {
            io,
            role,
            rd: BytesMut::new(),
            read_size: config.read_buffer_size.max(64),
            missing: 0,
            max_frame: config.max_frame_size.unwrap_or(usize::MAX),
            max_message: config.max_message_size.unwrap_or(usize::MAX),
            partial: None,
            wr: BytesMut::new(),
            write_size: config.write_buffer_size,
            sent_close: false,
            done: false,
            relay: false,
        }
    }

    /// Hand text messages on without checking that they are UTF-8, as raw text frames
    /// (`Message::Frame` with the text opcode, unmasked, whole): for a passthrough, which
    /// forwards them as they came and leaves the check to the endpoints, as a plain proxy
    /// does (it was a check of every message read, on both legs). Close reasons are still
    /// checked: the session reads them.
    pub fn relay(&mut self) {
        self.relay = true;
    }

    /// Whether this WebSocket relays (see [`Frames::relay`]): what is written to it was read
    /// by one, so its text is written unchecked too.
    pub fn relays(&self) -> bool {
        self.relay
    }

    /// The next whole message or control frame in `rd`; `None` when more bytes are needed
    /// (`missing` says how many at least).
    fn parse(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let buf = &self.rd[..];
            if buf.len() < 2 {
                self.missing = 2 - buf.len();
                return Ok(None);
            }
            let (b0, b1) = (buf[0], buf[1]);
            if b0 & 0x70 != 0 {
                return Err(ProtocolError::NonZeroReservedBits.into());
            }
            let fin = b0 & FIN != 0;
            let op = b0 & 0x0F;
            let masked = b1 & 0x80 != 0;
            let (len, mut head) = match b1 & 0x7F {
                126 => match buf.get(2..4) {
                    Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                    None => {
                        self.missing = 4 - buf.len();
                        return Ok(None);
                    }
                },
                127 => match buf.get(2..10) {
                    Some(b) => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(b);
                        (u64::from_be_bytes(n), 10)
                    }
                    None => {
                        self.missing = 10 - buf.len();
                        return Ok(None);
                    }
                },
                n => (u64::from(n), 2),
            };
            match (self.role, masked) {
                (Role::Server, false) => return Err(ProtocolError::UnmaskedFrameFromClient.into()),
                (Role::Client, true) => return Err(ProtocolError::MaskedFrameFromServer.into()),
                _ => {}
            }
            if op >= CLOSE {
                if !fin {
                    return Err(ProtocolError::FragmentedControlFrame.into());
                }
                if len > 125 {
                    return Err(ProtocolError::ControlFrameTooBig.into());
                }
            }
            // The limits, from the header: nothing of an oversize frame is buffered.
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > self.max_frame {
                return Err(too_long(len, self.max_frame));
            }
            let gathered = self.partial.as_ref().map_or(0, |(_, b)| b.len());
            if op < CLOSE && gathered.saturating_add(len) > self.max_message {
                return Err(too_long(gathered.saturating_add(len), self.max_message));
            }
            let key = if masked {
                let Some(k) = buf.get(head..head + 4) else {
                    self.missing = head + 4 - buf.len();
                    return Ok(None);
                };
                head += 4;
                Some([k[0], k[1], k[2], k[3]])
            } else {
                None
            };
            let total = head.saturating_add(len);
            if buf.len() < total {
                self.missing = total - buf.len();
                return Ok(None);
            }
            let mut payload = self.rd.split_to(total);
            payload.advance(head);
            if let Some(k) = key {
                apply_mask(&mut payload, k);
            }
            match op {
                TEXT | BINARY => {
                    if self.partial.is_some() {
                        let data = if op == TEXT { Data::Text } else { Data::Binary };
                        return Err(ProtocolError::ExpectedFragment(data).into());
                    }
                    if !fin {
                        self.partial = Some((op == TEXT, payload));
                        continue;
                    }
                    return self.data_message(op == TEXT, payload).map(Some);
                }
                CONTINUATION => {
                    let Some((text, mut gathered)) = self.partial.take() else {
                        return Err(ProtocolError::UnexpectedContinueFrame.into());
                    };
                    gathered.extend_from_slice(&payload);
                    if !fin {
                        self.partial = Some((text, gathered));
                        continue;
                    }
                    return self.data_message(text, gathered).map(Some);
                }
                CLOSE => {
                    self.done = true;
                    let close = close_frame(payload)?;
                    if !self.sent_close {
                        // Echoed, as RFC 6455 §5.5.1 asks; a code that may not be sent is
                        // answered as a protocol error.
                        let reply = close.clone().map(|f| {
                            if f.code.is_allowed() {
                                f
                            } else {
                                CloseFrame {
                                    code: CloseCode::Protocol,
                                    reason: Utf8Bytes::from_static("Protocol violation"),
                                }
                            }
                        });
                        self.encode_close(reply.as_ref());
                    }
                    return Ok(Some(Message::Close(close)));
                }
                PING => {
                    if !self.sent_close {
                        self.encode(PONG, &payload);
                    }
                    return Ok(Some(Message::Ping(payload.freeze())));
                }
                PONG => return Ok(Some(Message::Pong(payload.freeze()))),
                other if other >= CLOSE => {
                    return Err(ProtocolError::UnknownControlFrameType(other).into());
                }
                other => return Err(ProtocolError::UnknownDataFrameType(other).into()),
            }
        }
    }

    fn data_message(&self, text: bool, payload: BytesMut) -> Result<Message, Error> {
        let payload = payload.freeze();
        if !text {
            Ok(Message::Binary(payload))
        } else if self.relay {
            Ok(Message::Frame(Frame::message(
                payload,
                OpCode::Data(Data::Text),
                true,
            )))
        } else {
            Utf8Bytes::try_from(payload)
                .map(Message::Text)
                .map_err(|e| Error::Utf8(e.to_string()))
        }
    }

    /// Queue one data message (after `poll_ready`, as `start_send`), text or binary as told:
    /// the caller knows text is UTF-8.
    pub fn start_send_data(&mut self, text: bool, payload: &[u8]) -> Result<(), Error> {
        if self.sent_close {
            return Err(ProtocolError::SendAfterClosing.into());
        }
        self.encode(if text { TEXT } else { BINARY }, payload);
        Ok(())
    }

    /// One frame into the write buffer, masked in the client role.
    fn encode(&mut self, op: u8, payload: &[u8]) {
        let len = payload.len();
        let mask = matches!(self.role, Role::Client);
        // The longest header (64-bit length and a key): a few bytes more than some frames
        // need, and the length is branched on once.
        self.wr.reserve(14 + len);
        self.wr.put_u8(FIN | op);
        let m = if mask { 0x80 } else { 0 };
        match u16::try_from(len) {
            Ok(n) if n <= 125 => self.wr.put_u8(m | n as u8),
            Ok(n) => {
                self.wr.put_u8(m | 126);
                self.wr.put_u16(n);
            }
            Err(_) => {
                self.wr.put_u8(m | 127);
                self.wr.put_u64(len as u64);
            }
        }
        if mask {
            let key: [u8; 4] = rand::random();
            self.wr.put_slice(&key);
            let start = self.wr.len();
            self.wr.put_slice(payload);
            apply_mask(&mut self.wr[start..], key);
        } else {
            self.wr.put_slice(payload);
        }
    }

    fn encode_close(&mut self, frame: Option<&CloseFrame>) {
        self.sent_close = true;
        match frame {
            None => self.encode(CLOSE, &[]),
            Some(f) => {
                // A reason is cut to what a control frame holds, at a character boundary.
                let mut reason = f.reason.as_str();
                while reason.len() > 123 {
                    let mut end = 123;
                    while !reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    reason = &reason[..end];
                }
                let mut body = [0u8; 125];
                body[..2].copy_from_slice(&u16::from(f.code).to_be_bytes());
                body[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                self.encode(CLOSE, &body[..2 + reason.len()]);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Frames<S> {
    /// Write out the write buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while !self.wr.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wr))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
            }
            self.wr.advance(n);
        }
        if self.wr.capacity() > 4 * self.write_size.max(self.read_size) {
            // Written: what a burst grew is let go.
            self.wr = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Frames<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // A pong or close reply goes out as soon as the socket takes it; a write error shows
        // in the read that follows or in the next write.
        if !this.wr.is_empty() {
            let _ = this.poll_write_out(cx);
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.parse() {
                Ok(Some(m)) => {
                    if !this.wr.is_empty() {
                        // The answer to a ping or a close, out at once.
                        let _ = this.poll_write_out(cx);
                    }
                    return Poll::Ready(Some(Ok(m)));
                }
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    // The connection is failed (RFC 6455 §7.1.7), and a peer that broke the
                    // protocol hears why before the session lets the socket go.
                    if let Some(code) = fail_code(&e)
                        && !this.sent_close
                    {
                        let reason = Utf8Bytes::from(e.to_string());
                        this.encode_close(Some(&CloseFrame { code, reason }));
                        let _ = this.poll_write_out(cx);
                    }
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let want = this.missing.max(this.read_size);
            if this.rd.capacity() - this.rd.len() < want {
                this.rd.reserve(want);
                if this.rd.is_empty() && this.rd.capacity() > 4 * want {
                    // The reserve took back what a large message grew: an idle socket holds
                    // one read's worth.
                    this.rd = BytesMut::with_capacity(want);
                }
            }
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.rd
            )) {
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(
                        ProtocolError::ResetWithoutClosingHandshake.into()
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Frames<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.wr.len() >= this.write_size {
            // Gathered enough: no more until the socket took it. This is the backpressure
            // that keeps the session's queue (bounded in messages and bytes) where a slow
            // reader's backlog waits, instead of growing this buffer.
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        let this = self.get_mut();
        if this.sent_close {
            return Err(ProtocolError::SendAfterClosing.into());
        }
        match item {
            Message::Text(t) => this.encode(TEXT, t.as_bytes()),
            Message::Binary(b) => this.encode(BINARY, &b),
            Message::Ping(b) => this.encode(PING, &b[..b.len().min(125)]),
            Message::Pong(b) => this.encode(PONG, &b[..b.len().min(125)]),
            Message::Close(f) => this.encode_close(f.as_ref()),
            Message::Frame(_) => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "raw frames are not sent",
                )));
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx).map_err(Error::Io)
    }

    /// Sends a close frame (unless one went already) and flushes; the connection itself
    /// closes when this is dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if !this.sent_close {
            this.encode_close(None);
        }
        Pin::new(this).poll_flush(cx)
    }
}

/// The close code a read error fails the connection with: 1007 for text that is not UTF-8,
/// 1002 for the rest of the protocol. None when the peer is gone (nothing to tell) or sent
/// a message over the limit (the session answers that, in the peer's dialect, with 1009).
fn fail_code(e: &Error) -> Option<CloseCode> {
    match e {
        Error::Utf8(_) => Some(CloseCode::Invalid),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(_) => Some(CloseCode::Protocol),
        _ => None,
    }
}

fn too_long(size: usize, max_size: usize) -> Error {
    Error::Capacity(CapacityError::MessageTooLong { size, max_size })
}

/// A close frame's code and reason (RFC 6455 §5.5.1); none when it had no body.
fn close_frame(payload: BytesMut) -> Result<Option<CloseFrame>, Error> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidCloseSequence.into()),
        _ => {
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            let reason = Utf8Bytes::try_from(payload.freeze().slice(2..))
                .map_err(|e| Error::Utf8(e.to_string()))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// XOR with the masking key (RFC 6455 §5.3), eight bytes at a time: the key repeats every
/// four, so a word-aligned chunk always starts on the key's first byte.
fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests;
