//! The Origin allowlist of a Socket.IO route: which origins may use it (listed, same-origin,
//! or any with `*`), the CORS headers of the answer, and preflight answers.
//!
//! Must not touch: Engine.IO packets, sessions, request routing (`mod.rs` asks for a
//! decision and applies it).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::respond;

/// How a request's `Origin` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cors {
    /// No `Origin` header: not a browser, nothing to add.
    NoOrigin,
    /// A listed or same-origin page: its origin is reflected, credentials allowed.
    Reflect(HeaderValue),
    /// Allowed by `*`: `Access-Control-Allow-Origin: *`. Never reflected with credentials,
    /// which would hand every site the client's cookies.
    Any,
}

impl Cors {
    pub(super) fn apply(&self, r: &mut Response<Full<Bytes>>) {
        let h = r.headers_mut();
        match self {
            Self::NoOrigin => {}
            Self::Reflect(o) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            Self::Any => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
        }
    }
}

/// The CORS decision for a request: `None` is Forbidden. An origin listed in `allowed`, or
/// naming the very host the request was sent to, is reflected; otherwise `*` allows any.
pub(super) fn cors(
    allowed: &[String],
    origin: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
) -> Option<Cors> {
    let Some(origin) = origin else {
        return Some(Cors::NoOrigin);
    };
    let listed = allowed.iter().any(|o| o.as_bytes() == origin.as_bytes());
    if listed || host.is_some_and(|h| same_origin(origin.as_bytes(), h.as_bytes())) {
        return Some(Cors::Reflect(origin.clone()));
    }
    allowed.iter().any(|o| o == "*").then_some(Cors::Any)
}

/// Whether `origin` (`scheme://host[:port]`) names the host:port of the `Host` header: a page
/// served from this very listener (same-origin long-polling needs no allowlist). The Host
/// header is read with the origin's scheme so that default ports compare equal
/// (`https://a.example` and `a.example:443`).
pub(super) fn same_origin(origin: &[u8], host: &[u8]) -> bool {
    let (Ok(origin), Ok(host)) = (std::str::from_utf8(origin), std::str::from_utf8(host)) else {
        return false;
    };
    let Ok(o) = url::Url::parse(origin) else {
        // Includes the opaque `null` origin of sandboxed pages and files.
        return false;
    };
    if !matches!(o.scheme(), "http" | "https") {
        return false;
    }
    let Ok(h) = url::Url::parse(&format!("{}://{host}", o.scheme())) else {
        return false;
    };
    // A Host header is only `host[:port]`; anything else parsed into user info or a path
    // is not a host this listener serves.
    let plain = h.username().is_empty()
        && h.password().is_none()
        && h.path() == "/"
        && h.query().is_none()
        && h.fragment().is_none();
    plain
        && h.host().is_some()
        && o.host() == h.host()
        && o.port_or_known_default() == h.port_or_known_default()
}

/// A CORS preflight answer (the allow-origin headers are added by the caller).
pub(super) fn preflight<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::NO_CONTENT, Bytes::new());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    if let Some(v) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    r
}
