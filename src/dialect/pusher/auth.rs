//! Pusher signatures: HMAC-SHA256 of `<socket_id>:<channel>[:<channel_data>]` (channels) and
//! `<socket_id>::user::<user_data>` (signin) with the app secret, hex, as `<key>:<hex>`.
//!
//! Owns: signing for a client role (the upstream's socket id and secret) and constant-time
//! verification for a server role (the socket id Switchboard issued, its route's secret).
//!
//! Must not touch: I/O, time, key storage.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The string a channel subscription signs.
pub fn channel_string(socket_id: &str, channel: &[u8], channel_data: Option<&[u8]>) -> Vec<u8> {
    let mut s = Vec::with_capacity(socket_id.len() + channel.len() + 2);
    s.extend_from_slice(socket_id.as_bytes());
    s.push(b':');
    s.extend_from_slice(channel);
    if let Some(d) = channel_data {
        s.push(b':');
        s.extend_from_slice(d);
    }
    s
}

/// The string a user signin signs.
pub fn signin_string(socket_id: &str, user_data: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(socket_id.len() + user_data.len() + 8);
    s.extend_from_slice(socket_id.as_bytes());
    s.extend_from_slice(b"::user::");
    s.extend_from_slice(user_data);
    s
}

/// HMAC takes a key of any length, so this is `None` never in practice; the type says
/// `Result` only because fixed-size-key MACs share the constructor.
fn mac(secret: &str) -> Option<HmacSha256> {
    HmacSha256::new_from_slice(secret.as_bytes()).ok()
}

/// `<key>:<hex HMAC-SHA256(secret, string)>`.
pub fn sign(key: &str, secret: &str, string: &[u8]) -> Option<String> {
    let mut m = mac(secret)?;
    m.update(string);
    Some(format!("{key}:{}", hex::encode(m.finalize().into_bytes())))
}

/// Whether `auth` (`<key>:<hex>`) is `key`'s valid signature of `string`: the key must match
/// and the HMAC is compared in constant time.
pub fn verify(auth: &[u8], key: &str, secret: &str, string: &[u8]) -> bool {
    let Some(colon) = auth.iter().position(|&c| c == b':') else {
        return false;
    };
    let (k, sig) = auth.split_at(colon);
    let Some(sig) = sig.get(1..) else {
        return false;
    };
    if k != key.as_bytes() {
        return false;
    }
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    let Some(mut m) = mac(secret) else {
        return false;
    };
    m.update(string);
    m.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pusher's auth-signatures page: key, secret and socket id of its worked examples.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const SOCKET: &str = "1234.1234";

    #[test]
    fn private_channel_signature_matches_pushers_example() {
        let s = sign(
            KEY,
            SECRET,
            &channel_string(SOCKET, b"private-foobar", None),
        )
        .unwrap();
        assert_eq!(
            s,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(verify(
            s.as_bytes(),
            KEY,
            SECRET,
            &channel_string(SOCKET, b"private-foobar", None)
        ));
    }

    #[test]
    fn presence_and_signin_signatures_match_pushers_examples() {
        let data = br#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let s = sign(
            KEY,
            SECRET,
            &channel_string(SOCKET, b"presence-foobar", Some(data)),
        )
        .unwrap();
        assert_eq!(
            s,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        let s = sign(KEY, SECRET, &signin_string(SOCKET, br#"{"id":"12345"}"#)).unwrap();
        assert_eq!(
            s,
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
    }

    #[test]
    fn forged_signatures_are_refused() {
        let string = channel_string(SOCKET, b"private-foobar", None);
        let good = sign(KEY, SECRET, &string).unwrap();
        // Another socket id, another key, another secret, garbage.
        assert!(!verify(
            good.as_bytes(),
            KEY,
            SECRET,
            &channel_string("1.2", b"private-foobar", None)
        ));
        let other_key = good.replacen(KEY, "other", 1);
        assert!(!verify(other_key.as_bytes(), KEY, SECRET, &string));
        assert!(!verify(good.as_bytes(), KEY, "wrong", &string));
        assert!(!verify(b"278d425bdf160c739803:zz", KEY, SECRET, &string));
        assert!(!verify(b"nocolon", KEY, SECRET, &string));
        assert!(!verify(b"", KEY, SECRET, &string));
    }
}
