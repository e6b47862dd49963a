//! Transactions: BEGIN opens one (a bounded number at once), SEND and ACK/NACK frames naming
//! it are held (bounded in frames and in bytes across the session) until COMMIT sends them in
//! order or ABORT drops them; the receipts of held frames are still answered.
//!
//! Must not touch: what a held frame does once released (`send.rs`, `delivery.rs`).

use bytes::Bytes;

use super::{MAX_TRANSACTIONS, State, StompServer, Tx, TxItem, Wait};
use crate::dialect::ServerOut;
use crate::dialect::stomp::codec::{Command, Frame};
use crate::frame::own;

/// What one held frame costs besides its bytes (its entry in the transaction's list), charged
/// to `max_transaction_bytes` so that empty frames are not free.
const ITEM_COST: usize = 64;

impl TxItem {
    /// The bytes this held frame keeps.
    fn held_bytes(&self) -> usize {
        match self {
            Self::Publish { op, receipt } => {
                op.held_bytes() + receipt.as_ref().map_or(0, Bytes::len)
            }
            Self::Ack { id, .. } => id.len(),
        }
    }

    /// Copies what this frame holds out of the message it was read from; the bytes copied.
    fn detach(&mut self) -> usize {
        match self {
            Self::Publish { op, receipt } => op.detach() + receipt.as_mut().map_or(0, own),
            Self::Ack { id, .. } => own(id),
        }
    }
}

impl StompServer {
    /// Holds `item` in transaction `tx` until COMMIT or ABORT; a refusal is an ERROR that
    /// answers the frame's `receipt` (STOMP: an ERROR for a frame that asked for one
    /// carries its receipt-id), after which the session is closed.
    pub(super) fn buffer(
        &mut self,
        tx: &Bytes,
        mut item: TxItem,
        receipt: Option<Bytes>,
        out: &mut ServerOut,
    ) {
        let Some(t) = self.transactions.get_mut(tx) else {
            return self.fatal(
                "unknown transaction",
                tx.clone().as_ref(),
                receipt,
                1002,
                out,
            );
        };
        // Everything the frame keeps (headers, ids, receipt: not just its body) counts, as
        // what it keeps: a held frame is copied out of the message it came in, whose other
        // frames (or padding) would otherwise stay alive with it. Each frame also costs its
        // place in the list.
        let size = item.held_bytes() + ITEM_COST;
        if t.items.len() >= self.settings.max_transaction_frames
            || self.tx_bytes.saturating_add(size) > self.settings.max_transaction_bytes
        {
            return self.fatal(
                "transaction too large",
                tx.clone().as_ref(),
                receipt,
                1008,
                out,
            );
        }
        self.copied.one(item.detach());
        t.items.push(item);
        t.bytes += size;
        self.tx_bytes += size;
    }

    pub(super) fn on_begin(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(tx) = f.header("transaction").cloned() else {
            return self.fatal("missing transaction", b"", receipt, 1002, out);
        };
        if self.transactions.len() >= MAX_TRANSACTIONS || self.transactions.contains_key(&tx) {
            return self.fatal("bad transaction", tx.as_ref(), receipt, 1002, out);
        }
        // Its own copy: the name is kept for as long as the transaction is open (a name,
        // not payload: not a counted copy).
        self.transactions
            .insert(Bytes::copy_from_slice(&tx), Tx::default());
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }

    pub(super) fn on_end_tx(&mut self, f: Frame, receipt: Option<Bytes>, out: &mut ServerOut) {
        let Some(tx) = f.header("transaction").cloned() else {
            return self.fatal("missing transaction", b"", receipt, 1002, out);
        };
        let Some(t) = self.transactions.remove(&tx) else {
            return self.fatal("unknown transaction", tx.as_ref(), receipt, 1002, out);
        };
        self.tx_bytes = self.tx_bytes.saturating_sub(t.bytes);
        let mut receipt = receipt;
        if f.command == Command::Abort {
            // Discarded frames were processed all the same: their receipts are due now.
            for item in t.items {
                if let TxItem::Publish {
                    receipt: Some(r), ..
                } = item
                {
                    self.queue_receipt(r, Wait::Nothing, out);
                }
            }
        } else {
            let last_publish = t
                .items
                .iter()
                .rposition(|i| matches!(i, TxItem::Publish { .. }));
            for (i, item) in t.items.into_iter().enumerate() {
                match item {
                    // The COMMIT's receipt rides on the last SEND when that has none, so it
                    // is answered only once the committed frames were taken upstream.
                    TxItem::Publish { op, receipt: None } if Some(i) == last_publish => {
                        self.publish(*op, receipt.take(), out);
                    }
                    TxItem::Publish { op, receipt: r } => self.publish(*op, r, out),
                    TxItem::Ack { id, positive } => self.apply_ack(&id, positive, out),
                }
                if self.state == State::Closed {
                    return;
                }
            }
        }
        if let Some(r) = receipt {
            self.queue_receipt(r, Wait::Nothing, out);
        }
    }
}
