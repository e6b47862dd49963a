//! ACK and NACK toward the broker: the token that names a MESSAGE under each STOMP version,
//! and the frame that acknowledges it (1.0 has no NACK).
//!
//! Must not touch: when a message is acked (`inbound.rs`, `role.rs`).

use bytes::Bytes;

use super::StompClient;
use crate::dialect::ClientOut;
use crate::dialect::stomp::codec::{Command, Frame, Version};

impl StompClient {
    /// What identifies a MESSAGE in ACK/NACK: 1.2 names its `ack` header; 1.1 needs the
    /// `subscription` and `message-id` together (carried as `subscription\nmessage-id`,
    /// since neither may hold a raw line feed); 1.0 the `message-id` alone.
    pub(super) fn ack_token(&self, f: &Frame) -> Option<Bytes> {
        match self.version {
            Version::V1_2 => f.header("ack").or_else(|| f.header("message-id")).cloned(),
            Version::V1_1 => {
                let sub = f.header("subscription")?;
                let id = f.header("message-id")?;
                let mut t = Vec::with_capacity(sub.len() + 1 + id.len());
                t.extend_from_slice(sub);
                t.push(b'\n');
                t.extend_from_slice(id);
                Some(Bytes::from(t))
            }
            Version::V1_0 => f.header("message-id").cloned(),
        }
    }

    pub(super) fn send_ack(&mut self, token: Bytes, positive: bool, out: &mut ClientOut) {
        let command = if positive {
            Command::Ack
        } else {
            Command::Nack
        };
        let f = match self.version {
            Version::V1_2 => Frame::new(command).with_header("id", token),
            Version::V1_1 => {
                let Some(nl) = token.iter().position(|&b| b == b'\n') else {
                    return;
                };
                Frame::new(command)
                    .with_header("subscription", token.slice(..nl))
                    .with_header("message-id", token.slice(nl + 1..))
            }
            // 1.0 has no NACK: the broker redelivers what stays unacknowledged.
            Version::V1_0 if !positive => return,
            Version::V1_0 => Frame::new(command).with_header("message-id", token),
        };
        self.send(&f, out);
    }
}
