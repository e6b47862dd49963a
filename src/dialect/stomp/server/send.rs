//! SEND: a destination and a body (checked as JSON when it says so) become a publish, sent at
//! once or held in its transaction; a publish with a RECEIPT asks the upstream for a
//! confirmation, and the RECEIPT waits for it.
//!
//! Must not touch: the RECEIPT queue (`receipts.rs`), transactions (`transactions.rs`).

use bytes::Bytes;

use super::{StompServer, TxItem, Wait};
use crate::dialect::ServerOut;
use crate::dialect::json::is_json;
use crate::dialect::stomp::codec::Frame;
use crate::dialect::stomp::{meta_of, payload_kind};
use crate::frame::{ClientOp, Payload, PayloadKind, Reply};

impl StompServer {
    /// Sends `op` upstream; its RECEIPT, if any, waits for the upstream's answer.
    pub(super) fn publish(
        &mut self,
        mut op: ClientOp,
        receipt: Option<Bytes>,
        out: &mut ServerOut,
    ) {
        if let Some(r) = receipt {
            let id = self.next_reply;
            self.next_reply += 1;
            if let ClientOp::Publish { reply, .. } = &mut op {
                // A receipt asks for a confirmation, not data.
                *reply = Some(Reply::receipt(id));
            }
            if !self.queue_receipt(r, Wait::Reply(id), out) {
                return;
            }
        }
        out.ops.push(op);
    }

    pub(super) fn on_send(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(dest) = f.header("destination").cloned() else {
            return self.fatal(
                "missing destination",
                b"SEND needs a destination header",
                receipt,
                1002,
                out,
            );
        };
        let kind = payload_kind(f.header_str("content-type"), &f.body);
        if kind == PayloadKind::Json && f.header_str("content-type").is_some() && !is_json(&f.body)
        {
            return self.fatal(
                "invalid JSON body",
                b"content-type is application/json but the body is not JSON",
                receipt,
                1007,
                out,
            );
        }
        let op = ClientOp::Publish {
            meta: meta_of(&f, kind),
            channel: dest,
            event: f.header("event").cloned(),
            args: Vec::new(),
            payload: Payload {
                data: f.body.clone(),
                kind,
            },
            reply: None,
            broadcast: false,
            sub: None,
        };
        match f.header("transaction") {
            None => self.publish(op, receipt, out),
            Some(tx) => self.buffer(
                tx,
                TxItem::Publish {
                    op: Box::new(op),
                    receipt: receipt.clone(),
                },
                receipt,
                out,
            ),
        }
    }
}
