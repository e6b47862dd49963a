//! Transactions: BEGIN opens one (a bounded number at once), SEND and ACK/NACK frames naming
//! it are held (bounded in frames and in bytes across the session) until COMMIT sends them in
//! order or ABORT drops them; the receipts of held frames are still answered.
//!
//! Must not touch: what a held frame does once released (`send.rs`, `delivery.rs`).

use bytes::Bytes;

use super::{MAX_TRANSACTIONS, State, StompServer, Tx, TxItem, Wait};
use crate::dialect::ServerOut;
use crate::dialect::stomp::codec::{Command, Frame};

impl StompServer {
    /// Holds `item` in transaction `tx` until COMMIT or ABORT; a refusal is an ERROR that
    /// answers the frame's `receipt` (STOMP: an ERROR for a frame that asked for one
    /// carries its receipt-id), after which the session is closed.
    pub(super) fn buffer(
        &mut self,
        tx: &Bytes,
        item: TxItem,
        size: usize,
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
        self.transactions.insert(tx, Tx::default());
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
