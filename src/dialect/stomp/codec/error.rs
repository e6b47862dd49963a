//! [`StompError`]: the fatal framing errors of the decoder, and the short text the STOMP
//! roles put in the ERROR frame they send before closing.
//!
//! Must not touch: deciding when an error happens (`scan.rs`, `decode.rs`).

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
