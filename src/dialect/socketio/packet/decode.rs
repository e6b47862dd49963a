//! Decoding: the [`Decoder`] that holds a `BINARY_*` packet until its attachments arrive,
//! and parsing one packet's text (type, attachment count, namespace, ack id, JSON data sliced
//! from the message) with the payload checks of the reference `isPayloadValid`.
//!
//! Must not touch: encoding (`encode.rs`), what is inside the JSON arrays (`args.rs`,
//! `placeholders.rs`).

use bytes::Bytes;

use super::{Args, Packet, PacketType, ROOT_NSP, SioError};

/// A `BINARY_*` packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
}

/// Decodes Socket.IO packets, holding a `BINARY_*` packet until its attachments arrive (the
/// reference parser's reconstructor). After an error the decoder is reset; callers close the
/// connection anyway ("parse error").
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    pending: Option<Pending>,
    /// The array data of the last packet decoded and its top-level elements, found by the
    /// pass that validated it: [`Decoder::split_args`] hands them out instead of scanning
    /// the same bytes again. Holding `data` keeps its memory alive, so a slice with the same
    /// address and length is the same bytes.
    split: Option<(Bytes, Args)>,
}

impl Decoder {
    /// A decoder accepting at most `max_attachments` per packet (the reference default is 10).
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            pending: None,
            split: None,
        }
    }

    /// The top-level elements of `data` as [`super::split_args`] gives them; without a second
    /// pass when `data` is the array data of the packet this decoder returned last.
    pub fn split_args(&mut self, data: &Bytes) -> Result<Args, SioError> {
        match self.split.take() {
            Some((d, args)) if d.as_ptr() == data.as_ptr() && d.len() == data.len() => Ok(args),
            _ => super::split_args(data),
        }
    }

    /// [`super::split_event`], taking the elements from [`Decoder::split_args`].
    pub fn split_event(&mut self, data: &Bytes) -> Result<(Bytes, Args), SioError> {
        super::args::event_parts(self.split_args(data)?)
    }

    /// Decodes the text of one Engine.IO `message` packet (what follows the `4`).
    /// `Ok(Some)` when the packet is complete, `Ok(None)` when it now waits for its binary
    /// attachments (feed them to [`Decoder::decode_binary`]).
    pub fn decode_text(&mut self, text: Bytes) -> Result<Option<Packet>, SioError> {
        if self.pending.take().is_some() {
            return Err(SioError::AwaitingAttachments);
        }
        let (packet, expected, split) = parse(&text, self.max_attachments)?;
        self.split = split;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some(Pending { packet, expected });
        Ok(None)
    }

    /// Adds one binary attachment (an Engine.IO binary packet). `Ok(Some)` with the packet
    /// once its last attachment arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, SioError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(SioError::UnexpectedAttachment);
        };
        pending.packet.attachments.push(data);
        if pending.packet.attachments.len() < pending.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.packet))
    }

    /// Whether a `BINARY_*` packet is waiting for attachments.
    pub fn awaiting_attachments(&self) -> bool {
        self.pending.is_some()
    }
}

/// Splits leading ASCII digits off `s`.
fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at_checked(n).unwrap_or((s, &[]))
}

/// Parses ASCII digits; `None` on overflow.
pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

/// Strips JSON whitespace from the front.
pub(super) fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    s.get(n..).unwrap_or_default()
}

/// What [`parse`] found: the packet, the number of attachments still to come, and for array
/// data, the data with its top-level elements.
type Parsed = (Packet, usize, Option<(Bytes, Args)>);

/// Parses one packet.
fn parse(text: &Bytes, max_attachments: usize) -> Result<Parsed, SioError> {
    let (&first, mut rest) = text.split_first().ok_or(SioError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(SioError::UnknownType(first))?;

    let mut expected = 0;
    if kind.is_binary() {
        let (digits, after) = split_digits(rest);
        rest = match after.split_first() {
            Some((b'-', after)) if !digits.is_empty() => after,
            _ => return Err(SioError::BadAttachmentCount),
        };
        expected = parse_decimal(digits)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= max_attachments)
            .ok_or(SioError::TooManyAttachments {
                max: max_attachments,
            })?;
    }

    let nsp = if rest.first() == Some(&b'/') {
        // Up to the `,` or the end, as the reference parser reads it (`40/custom` is valid).
        let mut parts = rest.splitn(2, |&c| c == b',');
        let nsp = parts.next().unwrap_or_default();
        rest = parts.next().unwrap_or_default();
        std::str::from_utf8(nsp).map_err(|_| SioError::BadNamespace)?;
        text.slice_ref(nsp)
    } else {
        Bytes::from_static(ROOT_NSP)
    };

    let (digits, after) = split_digits(rest);
    let id = if digits.is_empty() {
        None
    } else {
        rest = after;
        Some(parse_decimal(digits).ok_or(SioError::BadAckId)?)
    };

    let mut split = None;
    let data = if rest.is_empty() {
        None
    } else {
        // Validated without a DOM or a heap bracket stack, then sliced without the
        // whitespace around it (what a borrowed `RawValue` would be). An array (events and
        // acks) is split in the same pass, for the role that reads its arguments next.
        let trimmed = crate::dialect::json::trim(rest);
        let data = text.slice_ref(trimmed);
        if trimmed.first() == Some(&b'[') {
            let mut args = Args::new();
            crate::dialect::json::array_elements(rest, |r| {
                args.push(text.slice_ref(rest.get(r).unwrap_or_default()))
            })
            .map_err(|_| SioError::BadJson)?;
            split = Some((data.clone(), args));
        } else if !crate::dialect::json::is_json(rest) {
            return Err(SioError::BadJson);
        }
        Some(data)
    };
    check_payload(kind, data.as_deref())?;

    let attachments = Vec::with_capacity(expected);
    Ok((
        Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        },
        expected,
        split,
    ))
}

/// Checks the kind of an already validated (and trimmed) JSON payload against the packet
/// type, as the reference `isPayloadValid` does. Unlike the reference, a number is not
/// accepted as an event name, and reserved names are left to the roles.
fn check_payload(kind: PacketType, data: Option<&[u8]>) -> Result<(), SioError> {
    let first = data.and_then(|d| d.first().copied());
    match kind {
        PacketType::Connect => match first {
            None | Some(b'{') => Ok(()),
            Some(_) => Err(SioError::BadPayload),
        },
        PacketType::Disconnect => match first {
            None => Ok(()),
            Some(_) => Err(SioError::BadPayload),
        },
        PacketType::ConnectError => match first {
            None | Some(b'{' | b'"') => Ok(()),
            Some(_) => Err(SioError::BadPayload),
        },
        PacketType::Ack | PacketType::BinaryAck => match first {
            None => Err(SioError::MissingData),
            Some(b'[') => Ok(()),
            Some(_) => Err(SioError::NotAnArray),
        },
        PacketType::Event | PacketType::BinaryEvent => {
            let d = data.ok_or(SioError::MissingData)?;
            let (&open, elements) = d.split_first().ok_or(SioError::MissingData)?;
            if open != b'[' {
                return Err(SioError::NotAnArray);
            }
            // The JSON is valid, so after `[` comes `]` or the first element's first byte.
            match skip_ws(elements).first() {
                Some(b'"') => Ok(()),
                Some(b']') => Err(SioError::EmptyEvent),
                _ => Err(SioError::EventNameNotString),
            }
        }
    }
}
