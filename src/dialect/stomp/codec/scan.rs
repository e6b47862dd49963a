//! Parsing one item, a heart-beat EOL or a whole frame, at the start of a byte slice: the
//! command line, header lines (unescaped per version), `content-length` or NUL-terminated
//! bodies, and the size limits, checked as soon as a partial frame exceeds them. A frame is
//! returned as ranges of the input, so the decoder can slice rather than copy.
//!
//! Must not touch: state across WebSocket messages and building [`Bytes`](bytes::Bytes) out
//! of the ranges (`decode.rs`), encoding (`encode.rs`).

use std::ops::Range;

use super::decode::Limits;
use super::error::StompError;
use super::frame::{Command, Version};
use crate::dialect::swar;

/// The longest command name (`UNSUBSCRIBE`, `DISCONNECT`) is 11 bytes. An unterminated first
/// line longer than this cannot be a command.
const MAX_COMMAND_LEN: usize = 16;
/// How many bytes of an unknown command [`StompError::UnknownCommand`] keeps.
const MAX_REPORTED_COMMAND: usize = 32;

/// A header name or value found by [`scan`].
#[derive(Debug)]
pub(super) enum Span {
    /// Unchanged bytes at this range of the scanned input.
    Raw(Range<usize>),
    /// Unescaped bytes (a copy).
    Owned(Vec<u8>),
}

/// A frame found by [`scan`], as ranges of the scanned input.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) command: Command,
    pub(super) headers: Vec<(Span, Span)>,
    pub(super) body: Range<usize>,
}

/// What an incomplete frame is waiting for. Offsets are relative to the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
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
pub(super) enum Step {
    /// A heart-beat EOL of this many bytes.
    Heartbeat(usize),
    /// A frame taking this many bytes, up to and including its NUL.
    Frame(Parsed, usize),
    /// The input is the start of a frame (or of a CRLF) that needs more bytes.
    Incomplete(Need),
}

/// Finds the line starting at `start`. Returns the end of its content (any CR before the LF
/// removed) and the start of the next line, or `None` if there is no LF yet.
fn find_line(input: &[u8], start: usize) -> Option<(usize, usize)> {
    let lf = swar::find_any(input, start, [b'\n']);
    input.get(lf)?;
    Some((line_end(input, start, lf), lf + 1))
}

/// The end of a line's content whose LF is at `lf`: a CR before it is not content.
fn line_end(input: &[u8], start: usize, lf: usize) -> usize {
    if lf > start && input.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    }
}

/// A header line as one pass over its bytes found it.
struct HeaderLine {
    /// The end of its content (before any CR) and the start of the next line.
    end: usize,
    next: usize,
    /// Its first `:`.
    colon: Option<usize>,
    nul: bool,
    /// A backslash in the name (before the first `:`) or in the value.
    escaped_name: bool,
    escaped_value: bool,
}

/// The header line at `start`, or `None` if there is no LF yet. Why one pass: finding the LF,
/// a NUL, the colon and a backslash in each part took five scans of every header line, each
/// with its own set-up, on every frame.
fn header_line(input: &[u8], start: usize) -> Option<HeaderLine> {
    let mut line = HeaderLine {
        end: 0,
        next: 0,
        colon: None,
        nul: false,
        escaped_name: false,
        escaped_value: false,
    };
    let mut i = start;
    loop {
        i = swar::find_any(input, i, [b'\n', 0, b':', b'\\']);
        match *input.get(i)? {
            b'\n' => break,
            0 => line.nul = true,
            b':' => {
                line.colon.get_or_insert(i);
            }
            _ if line.colon.is_none() => line.escaped_name = true,
            _ => line.escaped_value = true,
        }
        i += 1;
    }
    line.end = line_end(input, start, i);
    line.next = i + 1;
    Some(line)
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
///
/// `headers` is a recycled (cleared) vector the header spans are gathered in, returned in
/// [`Parsed`]: the decoder hands the same one back each time.
pub(super) fn scan(
    input: &[u8],
    version: Version,
    limits: &Limits,
    mut headers: Vec<(Span, Span)>,
) -> Result<Step, StompError> {
    headers.clear();
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
    let mut content_length = None;
    loop {
        let Some(found) = header_line(input, pos) else {
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
        let (end, next) = (found.end, found.next);
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
        if found.nul {
            return Err(StompError::MalformedHeader);
        }
        let colon = found
            .colon
            .filter(|&c| c < end)
            .ok_or(StompError::MalformedHeader)?;
        let name = span(input, pos..colon, escaping && found.escaped_name, version)?;
        let value = span(
            input,
            colon + 1..end,
            escaping && found.escaped_value,
            version,
        )?;
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

/// A header name or value at `r`, unescaped if `unescape` (escaping applies and the part
/// holds a backslash).
fn span(
    input: &[u8],
    r: Range<usize>,
    unescape: bool,
    version: Version,
) -> Result<Span, StompError> {
    if !unescape {
        return Ok(Span::Raw(r));
    }
    let raw = input.get(r).unwrap_or_default();
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
