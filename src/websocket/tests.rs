//! [`Frames`] against tungstenite's WebSocket on the other end of an in-memory socket, and
//! against frames written byte by byte.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Frames, apply_mask};

fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(256)
}

async fn server_and_peer() -> (Frames<DuplexStream>, WebSocketStream<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    (Frames::new(a, Role::Server, &config(1 << 20)), peer)
}

async fn next(f: &mut Frames<DuplexStream>) -> Option<Result<Message, Error>> {
    tokio::time::timeout(Duration::from_secs(5), f.next())
        .await
        .expect("a frame within 5 s")
}

/// A client frame as a client writes it: masked with `key`.
fn masked(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let mut body = payload.to_vec();
    apply_mask(&mut body, key);
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn messages_both_ways_with_tungstenite_as_the_client() {
    let (mut server, mut peer) = server_and_peer().await;
    let big = "x".repeat(70_000);
    peer.send(Message::text("hello")).await.unwrap();
    peer.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    peer.send(Message::text("é".repeat(200))).await.unwrap();
    peer.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::text("hello")
    );
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::text("é".repeat(200))
    );
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::text(big.clone())
    );

    // Fed, then flushed once.
    for m in [
        Message::text("a"),
        Message::text(big.clone()),
        Message::binary(vec![7u8; 300]),
    ] {
        server.feed(m).await.unwrap();
    }
    server.flush().await.unwrap();
    assert_eq!(peer.next().await.unwrap().unwrap(), Message::text("a"));
    assert_eq!(peer.next().await.unwrap().unwrap(), Message::text(big));
    assert_eq!(
        peer.next().await.unwrap().unwrap(),
        Message::binary(vec![7u8; 300])
    );
}

#[tokio::test]
async fn the_client_role_masks_what_it_sends() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let mut peer = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    let mut client = Frames::new(a, Role::Client, &config(1 << 20));
    for n in [0usize, 5, 125, 126, 65_535, 65_536, 100_003] {
        let body: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        client.send(Message::text(body.clone())).await.unwrap();
        assert_eq!(
            peer.next().await.unwrap().unwrap(),
            Message::text(body.clone())
        );
        peer.send(Message::text(body.clone())).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), client.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            Message::text(body)
        );
    }
}

#[tokio::test]
async fn golden_server_frames() {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut server = Frames::new(a, Role::Server, &config(1 << 16));
    server.send(Message::text("hi")).await.unwrap();
    server.send(Message::binary(vec![1u8; 126])).await.unwrap();
    let mut got = vec![0u8; 2 + 2 + 4 + 126];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..4], &[0x81, 0x02, b'h', b'i']);
    assert_eq!(&got[4..8], &[0x82, 126, 0, 126]);
    assert!(got[8..].iter().all(|&x| x == 1));
    server
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: Utf8Bytes::from_static("bye"),
        })))
        .await
        .unwrap();
    let mut close = [0u8; 7];
    b.read_exact(&mut close).await.unwrap();
    assert_eq!(close, [0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']);
    // Nothing is sent after a close.
    assert!(matches!(
        server.send(Message::text("late")).await,
        Err(Error::Protocol(ProtocolError::SendAfterClosing))
    ));
}

#[tokio::test]
async fn fragments_are_gathered_and_pings_answered_between_them() {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut server = Frames::new(a, Role::Server, &config(1 << 16));
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut wire = masked(0x01, b"Hel", key); // text, not final
    wire.extend(masked(0x89, b"p", key)); // ping between fragments
    wire.extend(masked(0x00, "lo, wörld".as_bytes(), key)); // continuation
    wire.extend(masked(0x80, b"!", key)); // final continuation
    // Split anywhere: one byte per write.
    for byte in wire {
        b.write_all(&[byte]).await.unwrap();
    }
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"p"))
    );
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::text("Hello, wörld!")
    );
    let mut pong = [0u8; 3];
    b.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, [0x8A, 1, b'p']);
}

#[tokio::test]
async fn an_oversize_frame_is_refused_from_its_header() {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut server = Frames::new(a, Role::Server, &config(1000));
    // Only the header: the payload is never sent, and the refusal does not wait for it.
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 40).to_be_bytes());
    b.write_all(&head).await.unwrap();
    match next(&mut server).await {
        Some(Err(Error::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
            assert_eq!((size, max_size), (1 << 40, 1000));
        }
        other => panic!("{other:?}"),
    }
    assert!(next(&mut server).await.is_none());

    // Fragments that add up past the message limit.
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut server = Frames::new(a, Role::Server, &config(1000));
    let key = [1, 2, 3, 4];
    b.write_all(&masked(0x02, &[0u8; 600], key)).await.unwrap();
    b.write_all(&masked(0x00, &[0u8; 600], key)).await.unwrap();
    assert!(matches!(
        next(&mut server).await,
        Some(Err(Error::Capacity(CapacityError::MessageTooLong {
            size: 1200,
            max_size: 1000
        })))
    ));
}

#[tokio::test]
async fn protocol_violations_end_the_stream_with_an_error() {
    let key = [9, 8, 7, 6];
    type Expected = fn(&Error) -> bool;
    let cases: Vec<(Vec<u8>, Expected)> = vec![
        // Unmasked frame from a client.
        (vec![0x81, 0x01, b'a'], |e| {
            matches!(e, Error::Protocol(ProtocolError::UnmaskedFrameFromClient))
        }),
        // Text that is not UTF-8.
        (masked(0x81, &[0xFF, 0xFE], key), |e| {
            matches!(e, Error::Utf8(_))
        }),
        // Reserved bits.
        (masked(0xC1, b"a", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::NonZeroReservedBits))
        }),
        // A continuation with nothing to continue.
        (masked(0x80, b"a", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::UnexpectedContinueFrame))
        }),
        // A fragmented ping.
        (masked(0x09, b"a", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::FragmentedControlFrame))
        }),
        // A new message inside a fragmented one.
        (
            [masked(0x01, b"a", key), masked(0x81, b"b", key)].concat(),
            |e| matches!(e, Error::Protocol(ProtocolError::ExpectedFragment(_))),
        ),
        // Unknown opcodes.
        (masked(0x83, b"a", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::UnknownDataFrameType(3)))
        }),
        (masked(0x8B, b"a", key), |e| {
            matches!(
                e,
                Error::Protocol(ProtocolError::UnknownControlFrameType(11))
            )
        }),
        // A close body of one byte.
        (masked(0x88, b"a", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::InvalidCloseSequence))
        }),
    ];
    for (wire, expected) in cases {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut server = Frames::new(a, Role::Server, &config(1 << 16));
        b.write_all(&wire).await.unwrap();
        let utf8 = match next(&mut server).await {
            Some(Err(e)) => {
                assert!(expected(&e), "{wire:?}: {e:?}");
                matches!(e, Error::Utf8(_))
            }
            other => panic!("{wire:?}: {other:?}"),
        };
        assert!(next(&mut server).await.is_none());
        // The peer was told why: a close frame, 1007 for the text, 1002 for the rest.
        let mut head = [0u8; 4];
        b.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 0x88, "{wire:?}");
        let code = u16::from_be_bytes([head[2], head[3]]);
        assert_eq!(code, if utf8 { 1007 } else { 1002 }, "{wire:?}");
    }
    // A masked frame from a server.
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut client = Frames::new(a, Role::Client, &config(1 << 16));
    b.write_all(&masked(0x81, b"a", key)).await.unwrap();
    assert!(matches!(
        client.next().await,
        Some(Err(Error::Protocol(ProtocolError::MaskedFrameFromServer)))
    ));
}

/// A relay hands text on unchecked, whole and unmasked, fragmented or not; binary, control
/// frames, close reasons and every other rule stay as they were.
#[tokio::test]
async fn a_relay_hands_text_on_without_the_utf8_check() {
    let key = [9, 8, 7, 6];
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut relay = Frames::new(a, Role::Server, &config(1 << 16));
    relay.relay();
    let wire = [
        masked(0x81, &[b'a', 0xFF, 0xFE], key),
        masked(0x01, &[0xC3], key),
        masked(0x80, &[0xA9, 0xFF], key),
        masked(0x82, &[0xFF], key),
        masked(0xC1, b"a", key),
    ]
    .concat();
    b.write_all(&wire).await.unwrap();
    let text = |m: Option<Result<Message, Error>>| match m {
        Some(Ok(Message::Frame(f))) => {
            assert_eq!(f.header().opcode, OpCode::Data(Data::Text));
            assert!(f.header().is_final && f.header().mask.is_none());
            f.into_payload()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(text(next(&mut relay).await), &[b'a', 0xFF, 0xFE][..]);
    assert_eq!(text(next(&mut relay).await), &[0xC3, 0xA9, 0xFF][..]);
    assert!(matches!(
        next(&mut relay).await,
        Some(Ok(Message::Binary(b))) if b == Bytes::from_static(&[0xFF])
    ));
    assert!(matches!(
        next(&mut relay).await,
        Some(Err(Error::Protocol(ProtocolError::NonZeroReservedBits)))
    ));
    // A close reason is still checked: the session reads it.
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut relay = Frames::new(a, Role::Server, &config(1 << 16));
    relay.relay();
    b.write_all(&masked(0x88, &[0x03, 0xE8, 0xFF], key))
        .await
        .unwrap();
    assert!(matches!(next(&mut relay).await, Some(Err(Error::Utf8(_)))));
}

#[tokio::test]
async fn the_close_handshake_with_tungstenite() {
    // The peer closes: its close comes out as a message and is echoed.
    let (mut server, mut peer) = server_and_peer().await;
    peer.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static("done"),
    }))
    .await
    .unwrap();
    match next(&mut server).await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (1000, "done"));
        }
        other => panic!("{other:?}"),
    }
    assert!(next(&mut server).await.is_none());
    match peer.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("{other:?}"),
    }

    // This side closes: the peer sees the close, and its echo ends this stream.
    let (mut server, mut peer) = server_and_peer().await;
    server.close().await.unwrap();
    assert!(matches!(peer.next().await, Some(Ok(Message::Close(None)))));
    // tungstenite writes its echo on its next poll.
    let echo = tokio::spawn(async move { peer.next().await.is_none() });
    assert!(matches!(
        next(&mut server).await,
        Some(Ok(Message::Close(None)))
    ));
    assert!(next(&mut server).await.is_none());
    // A client waits for the server to end the connection.
    drop(server);
    assert!(echo.await.unwrap());

    // The peer goes without a close.
    let (mut server, peer) = server_and_peer().await;
    drop(peer);
    assert!(matches!(
        next(&mut server).await,
        Some(Err(Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
        )))
    ));
}

#[test]
fn masking_matches_byte_by_byte() {
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    for n in 0..40 {
        let data: Vec<u8> = (0..n as u8).collect();
        let mut fast = data.clone();
        apply_mask(&mut fast, key);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}

#[tokio::test]
async fn buffers_grown_by_a_large_message_are_let_go() {
    let (mut server, mut peer) = server_and_peer().await;
    let big = "y".repeat(100_000);
    peer.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::text(big.clone())
    );
    server.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(peer.next().await.unwrap().unwrap(), Message::text(big));
    peer.send(Message::text("small")).await.unwrap();
    assert_eq!(
        next(&mut server).await.unwrap().unwrap(),
        Message::text("small")
    );
    // The config's read buffer is 256 bytes, its write buffer tungstenite's default.
    assert!(server.rd.capacity() <= 1024, "{}", server.rd.capacity());
    assert!(
        server.wr.capacity() <= 4 * server.write_size,
        "{}",
        server.wr.capacity()
    );
}

#[tokio::test]
async fn a_full_write_buffer_waits_for_the_socket() {
    use futures_util::Sink;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    // A socket that takes 4 KiB and is never read.
    let (a, _b) = tokio::io::duplex(4096);
    let config = config(1 << 20).write_buffer_size(8192);
    let mut server = Frames::new(a, Role::Server, &config);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fed = 0;
    while let Poll::Ready(r) = Pin::new(&mut server).poll_ready(&mut cx) {
        r.unwrap();
        Pin::new(&mut server)
            .start_send(Message::binary(vec![0u8; 1000]))
            .unwrap();
        fed += 1;
        assert!(fed < 100, "the write buffer grows without bound");
    }
    // 4 KiB went to the socket; the buffer holds at most its size plus one message.
    assert!(server.wr.len() < 8192 + 1010, "{}", server.wr.len());
}

/// Read what `f` relays until `want` bytes came, for the relay tests.
async fn read_exact_from(peer: &mut DuplexStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
        .await
        .expect("bytes within 5 s")
        .unwrap();
    got
}

/// A client's and a backend's side of a relay, each with its peer's end of the socket.
fn relay_pair() -> (
    Frames<DuplexStream>,
    DuplexStream,
    Frames<DuplexStream>,
    DuplexStream,
) {
    let (a, client) = tokio::io::duplex(1 << 16);
    let (b, backend) = tokio::io::duplex(1 << 16);
    let mut from_client = Frames::new(a, Role::Server, &config(1 << 10));
    let mut to_backend = Frames::new(b, Role::Client, &config(1 << 10));
    from_client.relay();
    to_backend.relay();
    (from_client, client, to_backend, backend)
}

/// A relay writes whole frames on byte for byte as they were read, the client's masks
/// included (nothing unmasked, checked as UTF-8 or re-masked); a frame not yet whole waits;
/// messages are counted at their last frame; the close ends the reading.
#[tokio::test]
async fn a_relay_writes_frames_on_as_they_were_read() {
    let (key, other) = ([9, 8, 7, 6], [1, 2, 3, 4]);
    let (mut from, mut client, mut to, mut backend) = relay_pair();
    let wire = [
        masked(0x81, &[b'a', 0xFF, 0xFE], key),
        masked(0x02, b"frag", other),
        masked(0x89, b"ping", key),
        masked(0x80, b"ment", other),
        masked(0x88, &[0x0F, 0xA1, b'b', b'y', b'e'], key),
    ]
    .concat();
    let (head, tail) = wire.split_at(wire.len() - 3);
    client.write_all(head).await.unwrap();
    std::future::poll_fn(|cx| from.poll_relay_read(cx))
        .await
        .unwrap();
    let found = from.relay_scan(|_| true).unwrap();
    assert_eq!((found.messages, found.bytes, found.closed), (2, 11, false));
    assert_eq!(
        from.relay_pending(),
        head.len() - 8,
        "the cut close frame waits"
    );
    client.write_all(tail).await.unwrap();
    std::future::poll_fn(|cx| from.poll_relay_read(cx))
        .await
        .unwrap();
    let found = from.relay_scan(|_| true).unwrap();
    assert_eq!((found.messages, found.closed), (0, true));
    assert!(!from.relay_reads(), "nothing is read after the close");
    std::future::poll_fn(|cx| from.poll_relay_write(&mut to, cx))
        .await
        .unwrap();
    assert_eq!(from.relay_pending(), 0);
    assert_eq!(read_exact_from(&mut backend, wire.len()).await, wire);
    // The close went through: the receiver is not sent another.
    from.end_relay(&mut to);
    assert!(to.sent_close());
}

/// A relay checks each header as the reader does (masking, reserved bits, opcodes, the
/// message sequence, the limits) and stops at the first bad one; a refused message stops
/// the scan at its first frame, which can still be read after the relay ends; checked
/// frames not yet written go to the receiver's write buffer, ahead of the close.
#[tokio::test]
async fn a_relay_checks_headers_and_stops_where_told() {
    let key = [5, 6, 7, 8];
    type Expect = fn(&Error) -> bool;
    let cases: [(Vec<u8>, Expect); 6] = [
        (vec![0x81, 0x01, b'x'], |e| {
            matches!(e, Error::Protocol(ProtocolError::UnmaskedFrameFromClient))
        }),
        (masked(0xC1, b"x", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::NonZeroReservedBits))
        }),
        (masked(0x80, b"x", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::UnexpectedContinueFrame))
        }),
        (
            [masked(0x01, b"x", key), masked(0x81, b"y", key)].concat(),
            |e| {
                matches!(
                    e,
                    Error::Protocol(ProtocolError::ExpectedFragment(Data::Text))
                )
            },
        ),
        (masked(0x83, b"x", key), |e| {
            matches!(e, Error::Protocol(ProtocolError::UnknownDataFrameType(3)))
        }),
        (masked(0x82, &[0u8; 2000], key), |e| {
            matches!(
                e,
                Error::Capacity(CapacityError::MessageTooLong { size: 2000, .. })
            )
        }),
    ];
    for (wire, expected) in cases {
        let (mut from, mut client, _to, _backend) = relay_pair();
        client.write_all(&wire).await.unwrap();
        std::future::poll_fn(|cx| from.poll_relay_read(cx))
            .await
            .unwrap();
        let e = from.relay_scan(|_| true).unwrap_err();
        assert!(expected(&e), "{e:?}");
        assert!(!from.relay_reads());
    }

    let (mut from, mut client, mut to, mut backend) = relay_pair();
    let first = masked(0x81, b"one", key);
    let refused = masked(0x81, b"two!", key);
    client
        .write_all(&[first.clone(), refused].concat())
        .await
        .unwrap();
    std::future::poll_fn(|cx| from.poll_relay_read(cx))
        .await
        .unwrap();
    let mut asked = Vec::new();
    let found = from
        .relay_scan(|len| {
            asked.push(len);
            len < 4
        })
        .unwrap();
    assert!(found.refused);
    assert_eq!((asked, found.messages), (vec![3, 4], 1));
    assert_eq!(from.relay_pending(), first.len());
    from.end_relay(&mut to);
    assert!(!to.sent_close());
    to.send(Message::Close(None)).await.unwrap();
    let out = read_exact_from(&mut backend, first.len() + 6).await;
    assert_eq!(&out[..first.len()], &first[..]);
    assert_eq!(&out[first.len()..first.len() + 2], &[0x88, 0x80]);
    assert!(matches!(
        next(&mut from).await,
        Some(Ok(Message::Frame(f))) if f.payload() == b"two!"
    ));
}

/// A peer that floods pings and never reads: the pongs that wait for it stop at a write
/// buffer's worth, however many pings came.
#[tokio::test]
async fn unread_pongs_stay_within_the_write_buffer() {
    let (a, mut b) = tokio::io::duplex(4096);
    let config = config(1 << 16).write_buffer_size(8192);
    let mut server = Frames::new(a, Role::Server, &config);
    let ping = masked(0x89, &[b'p'; 100], [1, 2, 3, 4]);
    let writer = tokio::spawn(async move {
        for _ in 0..5000 {
            b.write_all(&ping).await.unwrap();
        }
        b
    });
    for _ in 0..5000 {
        match next(&mut server).await.unwrap().unwrap() {
            Message::Ping(p) => assert_eq!(&p[..], &[b'p'; 100][..]),
            other => panic!("{other:?}"),
        }
        assert!(server.wr.len() < 8192 + 128, "{}", server.wr.len());
    }
    let mut b = writer.await.unwrap();
    // What did wait is well-formed pongs, and it goes out once the peer reads.
    let mut head = [0u8; 102];
    b.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[..2], &[0x8A, 100]);
    assert_eq!(&head[2..], &[b'p'; 100][..]);
}
