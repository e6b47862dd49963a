//! The RECEIPT queue: a RECEIPT tells the client that every earlier frame was processed, so
//! each waits in arrival order until what it stands for (nothing, a publish's reply, a
//! subscription's confirmation) is done; a DISCONNECT's RECEIPT closes once it is written.
//!
//! Must not touch: what the frames themselves do (the other concern files).

use bytes::Bytes;

use super::{MAX_PENDING_RECEIPTS, State, StompServer, Wait};
use crate::dialect::stomp::codec::{Command, Frame};
use crate::dialect::{Close, ServerOut};
use crate::frame::ClientOp;

impl StompServer {
    pub(super) fn receipt(&self, id: Bytes, out: &mut ServerOut) {
        let f = Frame::new(Command::Receipt).with_header("receipt-id", id);
        self.send(&f, out);
    }

    /// Queues a RECEIPT behind earlier ones; `false` (after a fatal ERROR) when too many wait.
    pub(super) fn queue_receipt(&mut self, id: Bytes, wait: Wait, out: &mut ServerOut) -> bool {
        if self.receipts.len() >= MAX_PENDING_RECEIPTS {
            self.fatal("too many pending receipts", b"", Some(id), 1008, out);
            return false;
        }
        // Its own copy when it waits: a slice would keep the whole message it came in (an
        // id, not payload: not a counted copy).
        let id = if wait == Wait::Nothing && self.receipts.is_empty() {
            id
        } else {
            Bytes::copy_from_slice(&id)
        };
        self.receipts.push_back((id, wait));
        self.flush_receipts(out);
        true
    }

    /// Marks what `wait` stood for as done and writes every RECEIPT that is now due.
    pub(super) fn resolve(&mut self, wait: Wait, out: &mut ServerOut) {
        if let Some(e) = self.receipts.iter_mut().find(|(_, w)| *w == wait) {
            e.1 = Wait::Nothing;
            self.flush_receipts(out);
        }
    }

    /// Removes the RECEIPT waiting on `wait` (it failed): its id goes into the ERROR.
    pub(super) fn take_receipt(&mut self, wait: Wait) -> Option<Bytes> {
        let i = self.receipts.iter().position(|(_, w)| *w == wait)?;
        self.receipts.remove(i).map(|(id, _)| id)
    }

    pub(super) fn flush_receipts(&mut self, out: &mut ServerOut) {
        while let Some((_, Wait::Nothing)) = self.receipts.front() {
            if let Some((id, _)) = self.receipts.pop_front() {
                self.receipt(id, out);
            }
        }
        if self.state == State::Disconnecting && self.receipts.is_empty() {
            out.ops.push(ClientOp::Disconnect);
            self.state = State::Closed;
            out.close = Some(Close::normal());
        }
    }
}
