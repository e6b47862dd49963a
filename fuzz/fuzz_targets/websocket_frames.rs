//! Switchboard's WebSocket framing on arbitrary bytes from the peer, in either role and
//! arriving in two reads: never panics, never yields a message over the limit, and ends
//! (with an error or the close) once the bytes run out.
#![no_main]
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use switchboard::websocket::Frames;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let role = if first & 1 == 0 { Role::Server } else { Role::Client };
    let split = usize::from(first >> 1) % (data.len() + 1);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else { return };
    rt.block_on(async {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX))
            .max_frame_size(Some(MAX))
            .read_buffer_size(256);
        let mut frames = Frames::new(a, role, &config);
        let (head, tail) = data.split_at(split);
        let feed = async move {
            let _ = b.write_all(head).await;
            tokio::task::yield_now().await;
            let _ = b.write_all(tail).await;
            // Dropped: the peer is gone once its bytes are read.
        };
        // Takes the framing with it: once it stops reading, the feed's writes fail rather
        // than wait.
        let read = async move {
            while let Some(item) = frames.next().await {
                match item {
                    Ok(Message::Text(t)) => assert!(t.len() <= MAX),
                    Ok(Message::Binary(b)) => assert!(b.len() <= MAX),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        };
        tokio::join!(feed, read);
    });
});
