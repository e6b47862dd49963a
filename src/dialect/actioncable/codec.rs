//! Action Cable's `actioncable-v1-json` messages: client commands
//! (`{"command","identifier","data"?}`, with `identifier` and `data` JSON in strings) and
//! server messages (`{"type",..}` for protocol messages, `{"identifier","message"}` for
//! data), and identifiers compared canonically.
//!
//! Owns: decoding both directions, encoding them in one allocation, identifier parsing and
//! its canonical form (keys sorted, scalar values as strings, so `{"id":7}` and `{"id":"7"}`
//! are one subscription).
//!
//! Must not touch: what the messages mean (the roles'), I/O, time, other dialects.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dialect::json::{json_string_len, put_json_string};

/// Why an Action Cable message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CableError {
    /// Not a JSON object of the expected shape.
    #[error("invalid Action Cable message: {0}")]
    Invalid(String),
}

/// One decoded message, either direction. String fields unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Msg {
    /// A client command: `subscribe`, `unsubscribe`, `message`.
    pub command: Option<Bytes>,
    /// A server protocol message: `welcome`, `ping`, `confirm_subscription`, …
    pub kind: Option<String>,
    /// The identifier exactly as it was on the wire: its JSON string token, quotes and
    /// escapes included (a slice of the message; [`Msg::identifier`] gives its content).
    /// Why the token: the JS client sends one identifier string, escaped the same way, with
    /// every command of a subscription, so a subscription is found by it without
    /// unescaping (an allocation per message) or parsing the JSON inside.
    pub identifier_token: Option<Bytes>,
    /// A command's `data` (a JSON object in a string), unescaped.
    pub data: Option<Bytes>,
    /// A data message's `message` (raw JSON), or a ping's timestamp.
    pub message: Option<Bytes>,
    /// A `disconnect`'s reason.
    pub reason: Option<String>,
    /// A `disconnect`'s reconnect flag.
    pub reconnect: Option<bool>,
    /// Payload bytes decoding copied (a `data` string with escapes, unescaped).
    pub copied: usize,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    command: Option<&'a RawValue>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(borrow, default)]
    identifier: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reconnect: Option<bool>,
}

impl Msg {
    /// The identifier's content (the JSON object in the string), unescaped: a slice of the
    /// message unless it had escapes.
    pub fn identifier(&self) -> Option<Bytes> {
        crate::dialect::json::unescape(self.identifier_token.as_ref()?).map(|(b, _)| b)
    }
}

/// Decode one text message.
pub fn decode(src: &Bytes) -> Result<Msg, CableError> {
    let w: Wire<'_> =
        serde_json::from_slice(src).map_err(|e| CableError::Invalid(e.to_string()))?;
    // `data` is a JSON string holding JSON (a client command's); take its content.
    let mut copied = 0;
    let data = w.data.map(|d| {
        let raw = src.slice_ref(d.get().as_bytes());
        match crate::dialect::json::unescape(&raw) {
            Some((content, n)) => {
                copied = n;
                content
            }
            // Not a string: the value itself.
            None => raw,
        }
    });
    let identifier_token = match w.identifier {
        Some(i) if i.get().starts_with('"') => Some(src.slice_ref(i.get().as_bytes())),
        Some(_) => return Err(CableError::Invalid("identifier is not a string".into())),
        None => None,
    };
    Ok(Msg {
        command: crate::dialect::json::string_field(src, w.command)
            .map_err(|_| CableError::Invalid("command is not a string".into()))?,
        kind: w.kind,
        identifier_token,
        data,
        message: w.message.map(|m| src.slice_ref(m.get().as_bytes())),
        reason: w.reason,
        reconnect: w.reconnect,
        copied,
    })
}

/// An identifier's channel, its other keys (a JSON object, raw values), and its canonical
/// form (the key subscriptions are compared on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// `channel`: the channel class name.
    pub channel: String,
    /// Every other key, as a JSON object; `None` when there are none.
    pub params: Option<Bytes>,
    /// Keys sorted, scalar values as strings.
    pub canonical: String,
}

/// Parse an identifier (the string's content, a JSON object with a `channel`).
pub fn identifier(raw: &[u8]) -> Result<Identifier, CableError> {
    let obj: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(raw).map_err(|e| CableError::Invalid(e.to_string()))?;
    let channel = match obj.get("channel") {
        Some(serde_json::Value::String(c)) => c.clone(),
        _ => return Err(CableError::Invalid("identifier without a channel".into())),
    };
    let canonical_map: BTreeMap<&String, serde_json::Value> = obj
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::Number(n) => serde_json::Value::String(n.to_string()),
                serde_json::Value::Bool(b) => serde_json::Value::String(b.to_string()),
                other => other.clone(),
            };
            (k, v)
        })
        .collect();
    let canonical =
        serde_json::to_string(&canonical_map).map_err(|e| CableError::Invalid(e.to_string()))?;
    let rest: serde_json::Map<String, serde_json::Value> =
        obj.into_iter().filter(|(k, _)| k != "channel").collect();
    let params =
        (!rest.is_empty()).then(|| Bytes::from(serde_json::Value::Object(rest).to_string()));
    Ok(Identifier {
        channel,
        params,
        canonical,
    })
}

/// The identifier for `channel` with `params` (a JSON object's keys added after
/// `channel`), as a JSON text.
pub fn build_identifier(channel: &[u8], params: Option<&[u8]>) -> Result<String, CableError> {
    let mut obj = serde_json::Map::new();
    obj.insert(
        "channel".into(),
        serde_json::Value::String(String::from_utf8_lossy(channel).into_owned()),
    );
    if let Some(p) = params {
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(p).map_err(|e| CableError::Invalid(e.to_string()))?;
        for (k, v) in extra {
            if k != "channel" {
                obj.insert(k, v);
            }
        }
    }
    Ok(serde_json::Value::Object(obj).to_string())
}

/// `{"type":..}` plus raw extra fields (`,"key":value` pairs, already JSON).
pub fn server_type(kind: &str, extra: &[(&str, &[u8])]) -> Bytes {
    let len = 9
        + json_string_len(kind.as_bytes())
        + extra
            .iter()
            .map(|(k, v)| 2 + json_string_len(k.as_bytes()) + v.len())
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"type\":");
    put_json_string(&mut out, kind.as_bytes());
    for (k, v) in extra {
        out.put_u8(b',');
        put_json_string(&mut out, k.as_bytes());
        out.put_u8(b':');
        out.extend_from_slice(v);
    }
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// `{"identifier":..,"type":..}` (confirm or reject): the identifier as the client sent it.
pub fn subscription_answer(identifier: &[u8], kind: &str) -> Bytes {
    let len = 23 + json_string_len(identifier) + json_string_len(kind.as_bytes());
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"identifier\":");
    put_json_string(&mut out, identifier);
    out.extend_from_slice(b",\"type\":");
    put_json_string(&mut out, kind.as_bytes());
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// `{"identifier":..,"message":..}` with the message's raw JSON.
pub fn data_message(identifier: &[u8], message: &[u8]) -> Bytes {
    let len = 26 + json_string_len(identifier) + message.len();
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"identifier\":");
    put_json_string(&mut out, identifier);
    out.extend_from_slice(b",\"message\":");
    out.extend_from_slice(message);
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// A client command: `{"command":..,"identifier":..}` plus `"data"` (a JSON text written as
/// a string) when given.
pub fn command(command: &str, identifier: &[u8], data: Option<&[u8]>) -> Bytes {
    let len = 26
        + json_string_len(command.as_bytes())
        + json_string_len(identifier)
        + data.map_or(0, |d| 8 + json_string_len(d));
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"{\"command\":");
    put_json_string(&mut out, command.as_bytes());
    out.extend_from_slice(b",\"identifier\":");
    put_json_string(&mut out, identifier);
    if let Some(d) = data {
        out.extend_from_slice(b",\"data\":");
        put_json_string(&mut out, d);
    }
    out.put_u8(b'}');
    debug_assert_eq!(out.len(), len, "length computed exactly");
    out.freeze()
}

/// The `data` of a `perform(action, payload)`: the action merged into a JSON object body
/// (spliced in front of its keys, no DOM built), else beside the body as `data`.
pub fn perform_data(action: Option<&str>, payload: &crate::frame::Payload) -> Vec<u8> {
    use crate::frame::PayloadKind;
    let body = &payload.data[..];
    let trimmed = body.trim_ascii_start();
    if payload.kind == PayloadKind::Json && trimmed.starts_with(b"{") {
        let keys: Result<std::collections::HashMap<Cow<'_, str>, &RawValue>, _> =
            serde_json::from_slice(body);
        if let Ok(keys) = keys
            && !keys.contains_key("action")
        {
            let Some(a) = action else {
                return body.to_vec();
            };
            let mut out = Vec::with_capacity(body.len() + a.len() + 14);
            out.extend_from_slice(b"{\"action\":");
            let mut a_json = BytesMut::with_capacity(json_string_len(a.as_bytes()));
            put_json_string(&mut a_json, a.as_bytes());
            out.extend_from_slice(&a_json);
            // The object's members after its `{`, unless it has none.
            let rest = trimmed.get(1..).unwrap_or_default();
            if keys.is_empty() {
                out.push(b'}');
            } else {
                out.push(b',');
                out.extend_from_slice(rest);
            }
            return out;
        }
    }
    // Not a JSON object (or one with an `action` of its own, which the performed one
    // replaces): built as a value.
    let mut obj = match payload.kind {
        PayloadKind::Json => {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
                .unwrap_or_else(|_| {
                    let mut m = serde_json::Map::new();
                    if let Ok(v) = serde_json::from_slice(body) {
                        m.insert("data".into(), v);
                    }
                    m
                })
        }
        _ => {
            let mut m = serde_json::Map::new();
            m.insert(
                "data".into(),
                serde_json::Value::String(String::from_utf8_lossy(body).into_owned()),
            );
            m
        }
    };
    if let Some(a) = action {
        obj.insert("action".into(), serde_json::Value::String(a.to_owned()));
    }
    serde_json::Value::Object(obj).to_string().into_bytes()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests;
