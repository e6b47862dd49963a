//! Engine.IO v4 server transport for Socket.IO routes (in progress).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::listener::{Upgrader, text};
use crate::session::RouteCtx;

/// Engine.IO sessions of one route.
pub struct Engine {
    _ctx: Arc<RouteCtx>,
}

impl Engine {
    /// An engine for a Socket.IO route.
    pub fn new(ctx: Arc<RouteCtx>) -> Self {
        Self { _ctx: ctx }
    }

    /// Handle one HTTP request on the route's path.
    pub async fn handle(&self, _req: Request<Incoming>, _up: Upgrader) -> Response<Full<Bytes>> {
        text(
            StatusCode::NOT_IMPLEMENTED,
            "Socket.IO clients are not served yet\n",
        )
    }
}
