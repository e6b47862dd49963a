//! A passthrough's relay on arbitrary bytes from the sender, in either role and arriving in
//! two reads: never panics, writes on exactly a prefix of what came (whole frames, byte for
//! byte), and stops (an error, the close, or the bytes ran out) without hanging.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard::websocket::Frames;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let role = if first & 1 == 0 { Role::Server } else { Role::Client };
    let other = if first & 1 == 0 { Role::Client } else { Role::Server };
    let split = usize::from(first >> 1) % (data.len() + 1);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else { return };
    rt.block_on(async {
        let (a, mut sender) = tokio::io::duplex(1 << 16);
        let (b, mut receiver) = tokio::io::duplex(1 << 20);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX))
            .max_frame_size(Some(MAX))
            .read_buffer_size(256);
        let mut from = Frames::new(a, role, &config);
        let mut to = Frames::new(b, other, &config);
        from.relay();
        let (head, tail) = data.split_at(split);
        let feed = async move {
            let _ = sender.write_all(head).await;
            tokio::task::yield_now().await;
            let _ = sender.write_all(tail).await;
            // Dropped: the sender is gone once its bytes are read.
        };
        let relay = async move {
            let mut messages = 0u64;
            loop {
                if std::future::poll_fn(|cx| from.poll_relay_write(&mut to, cx))
                    .await
                    .is_err()
                {
                    break;
                }
                if !from.relay_reads() {
                    break;
                }
                if std::future::poll_fn(|cx| from.poll_relay_read(cx)).await.is_err() {
                    break;
                }
                match from.relay_scan(|len| len <= MAX) {
                    Ok(found) => messages += found.messages,
                    Err(_) => break,
                }
            }
            let _ = std::future::poll_fn(|cx| from.poll_relay_write(&mut to, cx)).await;
            messages
        };
        let (_, messages) = tokio::join!(feed, relay);
        let mut out = Vec::new();
        let _ = receiver.read_to_end(&mut out).await;
        assert!(data.starts_with(&out), "the relay wrote what it did not read");
        assert!(messages as usize <= out.len() / 2 + 1);
    });
});
