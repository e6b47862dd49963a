//! WebSocket framing (RFC 6455 §5) on a connection whose handshake is done.
//!
//! Owns: [`Frames`], the WebSocket the session reads and writes on both legs once hyper has
//! upgraded the connection ([`Socket`]): frames read into one buffer (never zero-filled),
//! unmasked in place and handed out as slices of it; messages encoded into one write
//! buffer, written with one flush; the control frames (a ping answered with a pong, the
//! close handshake, a protocol error answered with 1002 or 1007), fragmented messages, the
//! size limits (from the frame header, before anything is buffered), the UTF-8 check of text
//! (not on a relay: see [`Frames::relay`]), and the relay a passthrough moves frames with:
//! headers checked in place and the frames written on as they were read
//! ([`Frames::relay_scan`], [`Frames::poll_relay_write`]).
//!
//! Must not touch: handshakes (hyper does both: `handshake` for clients, `upstream` for
//! backends), sessions, dialects. It speaks tungstenite's `Message` and `Error`, so that
//! where a session holds a WebSocket it can hold either this or tokio-tungstenite's.
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
                ws.pre_read = !ws.rd.is_empty();
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
    /// Relaying (see [`Frames::relay_scan`]): the front of `rd` that holds whole, checked
    /// frames not yet written to the other side.
    checked: usize,
    /// Relaying: a fragmented message is passing, this many payload bytes of it so far.
    gathering: Option<usize>,
    /// Relaying: this peer's close frame was among the checked frames.
    relayed_close: bool,
    /// `rd` holds what the handshake read past the upgrade (see [`Socket::upgraded`]) and
    /// no relay read has handed it on yet: the first [`Frames::poll_relay_read`] does, or a
    /// first message sent in the same segment as the upgrade would wait for the next one.
    pre_read: bool,
}

/// A frame header as [`Frames::header`] read it.
struct Header {
    fin: bool,
    op: u8,
    /// Header bytes, the masking key's included.
    head: usize,
    /// Payload bytes.
    len: usize,
    key: Option<[u8; 4]>,
}

/// What [`Frames::relay_scan`] found in the bytes read since it last ran.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Whole messages that passed (counted at their last frame).
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// The peer's close frame passed: nothing after it is read.
    pub closed: bool,
    /// The check refused a message: the scan stopped before its first frame.
    pub refused: bool,
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
            checked: 0,
            gathering: None,
            relayed_close: false,
            pre_read: false,
        }
    }

    /// Hand text messages on without checking that they are UTF-8, as raw text frames
    /// (`Message::Frame` with the text opcode, unmasked, whole): a passthrough's sockets,
    /// which leave the check to the endpoints as a plain proxy does. It relays frames
    /// without reading them as messages (see [`Frames::relay_scan`]), and writes only its
    /// closes through a link; this is for what it reads after the relay ended (a refused
    /// client's last frames, dropped while its close is awaited). Close reasons are still
    /// checked here.
    pub fn relay(&mut self) {
        self.relay = true;
    }

    /// The header of the frame at `at` in `rd`, checked (reserved bits, masking, control
    /// frames, the limits with `gathered` bytes of a fragmented message before it): `None`
    /// when the whole frame is not there yet (`missing` says how many bytes it lacks).
    // Inlined into both callers (with `poll_fill`): a call per frame on the reader's path
    // showed in callgrind (Socket.IO → Socket.IO 18,013 → 17,991 instructions per round
    // trip, STOMP → Socket.IO 23,448 → 23,331).
    #[inline(always)]
    fn header(&mut self, at: usize, gathered: usize) -> Result<Option<Header>, Error> {
        let buf = self.rd.get(at..).unwrap_or_default();
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
        Ok(Some(Header {
            fin,
            op,
            head,
            len,
            key,
        }))
    }

    /// The next whole message or control frame in `rd`; `None` when more bytes are needed
    /// (`missing` says how many at least).
    fn parse(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let gathered = self.partial.as_ref().map_or(0, |(_, b)| b.len());
            let Some(Header {
                fin,
                op,
                head,
                len,
                key,
            }) = self.header(0, gathered)?
            else {
                return Ok(None);
            };
            let total = head + len;
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
                    // A peer that pings and does not read would grow the write buffer a
                    // pong at a time: while a buffer's worth waits, the pong is left out
                    // (RFC 6455 §5.5.3 lets a pong answer only the latest of several pings).
                    if !self.sent_close && self.wr.len() < self.write_size {
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

    /// Relay: check the frames read since the last scan without taking them out of `rd`
    /// (nothing is unmasked or copied); the whole ones join the front that
    /// [`Frames::poll_relay_write`] writes to the other side as they are. Headers are
    /// checked as [`Frames::poll_next`] checks them, and the message sequence (continuations,
    /// opcodes); `admit` is asked about each message at its first frame, with that frame's
    /// payload size. The payloads themselves (text as UTF-8, close reasons) are for the
    /// endpoints to check, as behind a plain proxy. An error or the peer's close ends the
    /// reading; a refusal stops this scan.
    pub fn relay_scan(&mut self, mut admit: impl FnMut(usize) -> bool) -> Result<Scanned, Error> {
        let mut found = Scanned::default();
        while !self.done {
            let gathered = self.gathering.unwrap_or(0);
            let h = match self.header(self.checked, gathered) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            if let Err(e) = self.relay_frame(&h, gathered, &mut admit, &mut found) {
                self.done = true;
                return Err(e);
            }
            if found.refused {
                // Stopped at a frame's start: the refused message can still be read (and
                // dropped) while the peer is told why and its close awaited.
                break;
            }
            self.checked += h.head + h.len;
        }
        Ok(found)
    }

    /// One whole frame's place in the message sequence (see [`Frames::relay_scan`]).
    fn relay_frame(
        &mut self,
        h: &Header,
        gathered: usize,
        admit: &mut impl FnMut(usize) -> bool,
        found: &mut Scanned,
    ) -> Result<(), Error> {
        match (h.op, self.gathering) {
            (TEXT, Some(_)) => return Err(ProtocolError::ExpectedFragment(Data::Text).into()),
            (BINARY, Some(_)) => return Err(ProtocolError::ExpectedFragment(Data::Binary).into()),
            (CONTINUATION, None) => return Err(ProtocolError::UnexpectedContinueFrame.into()),
            (TEXT | BINARY, None) if !admit(h.len) => {
                found.refused = true;
                return Ok(());
            }
            (TEXT | BINARY | CONTINUATION, _) => {
                let size = gathered + h.len;
                if h.fin {
                    self.gathering = None;
                    found.messages += 1;
                    found.bytes += size as u64;
                } else {
                    self.gathering = Some(size);
                }
            }
            (CLOSE, _) => {
                // Its code and reason are the receiver's to check, as the text is.
                if h.len == 1 {
                    return Err(ProtocolError::InvalidCloseSequence.into());
                }
                self.done = true;
                self.relayed_close = true;
                found.closed = true;
            }
            (PING | PONG, _) => {}
            (other, _) if other >= CLOSE => {
                return Err(ProtocolError::UnknownControlFrameType(other).into());
            }
            (other, _) => return Err(ProtocolError::UnknownDataFrameType(other).into()),
        }
        Ok(())
    }

    /// Relay: checked bytes not yet written to the other side.
    pub fn relay_pending(&self) -> usize {
        self.checked
    }

    /// Relay: whether to read more from this peer. Not once its reading ended, nor while a
    /// read's worth of checked frames waits for the other side (the backpressure that
    /// bounds a relay's buffer: one read's worth, and the frame being gathered).
    pub fn relay_reads(&self) -> bool {
        !self.done && self.checked < self.read_size
    }

    /// Relay: stop. What was checked and not written goes into `to`'s write buffer (whole
    /// frames, ahead of whatever is written there next), and a close frame relayed into
    /// `to` counts as the one `to` was sent. A message cut off halfway ends this peer's
    /// reading: what follows could not be read as a new one.
    pub fn end_relay<T>(&mut self, to: &mut Frames<T>) {
        to.wr.extend_from_slice(&self.rd[..self.checked]);
        self.rd.advance(self.checked);
        self.checked = 0;
        to.sent_close |= self.relayed_close;
        if self.gathering.take().is_some() {
            self.done = true;
        }
    }

    /// Whether a close frame went to this peer (queued here, or relayed into it).
    pub fn sent_close(&self) -> bool {
        self.sent_close
    }

    /// Answer a read error as [`Frames::poll_next`] does, for a relay that found it: a peer
    /// that broke the protocol hears 1002 (1007), queued behind what is still to be written.
    pub fn refuse(&mut self, e: &Error) {
        self.done = true;
        if let Some(code) = fail_code(e)
            && !self.sent_close
        {
            let reason = Utf8Bytes::from(e.to_string());
            self.encode_close(Some(&CloseFrame { code, reason }));
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
            if let Err(e) = ready!(this.poll_fill(cx)) {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Frames<S> {
    /// Read into `rd`: at least what the frame at its front lacks, at least a read's worth.
    /// The end of the connection is an error (the close handshake did not happen).
    #[inline(always)]
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let want = self.missing.max(self.read_size);
        if self.rd.capacity() - self.rd.len() < want {
            self.rd.reserve(want);
            if self.rd.is_empty() && self.rd.capacity() > 4 * want {
                // The reserve took back what a large message grew: an idle socket holds
                // one read's worth.
                self.rd = BytesMut::with_capacity(want);
            }
        }
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.rd
        )) {
            Ok(0) => Poll::Ready(Err(ProtocolError::ResetWithoutClosingHandshake.into())),
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(Error::Io(e))),
        }
    }

    /// Relay: read more from this peer (see [`Frames::relay_scan`]); the first call is
    /// Ready at once when the handshake had read past the upgrade. An error ends its
    /// reading.
    pub fn poll_relay_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if std::mem::take(&mut self.pre_read) {
            return Poll::Ready(Ok(()));
        }
        let r = ready!(self.poll_fill(cx));
        if r.is_err() {
            self.done = true;
        }
        Poll::Ready(r)
    }

    /// Relay: write the checked frames to `to` as they were read (a client's masked with
    /// its own key, which a client-role frame may be) and flush. Ready(Ok) once all went.
    pub fn poll_relay_write<T: AsyncWrite + Unpin>(
        &mut self,
        to: &mut Frames<T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if !to.wr.is_empty() {
            // Queued before the relay began (none today): first.
            ready!(to.poll_write_out(cx)).map_err(io::Error::other)?;
        }
        while self.checked > 0 {
            let n = ready!(Pin::new(&mut to.io).poll_write(cx, &self.rd[..self.checked]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.rd.advance(n);
            self.checked -= n;
        }
        Pin::new(&mut to.io).poll_flush(cx)
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
