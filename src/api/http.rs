//! Application HTTP routes: requests to paths that are not an Engine.IO endpoint go to the
//! application's [`HttpApp`] (the chat service's REST API and its web page).
//!
//! A handler answers at once ([`HttpReply::Now`]) or later ([`HttpReply::Later`]): then it keeps
//! the request's [`Responder`] and, when the answer is ready (a storage thread finished, say),
//! calls [`Responder::respond`] from any thread. Until then the connection is parked: the runtime
//! reads no further request from it, so pipelined requests are answered in order.
//!
//! What it does not do: no routing (the app matches paths itself), no body decoding, no IO.

use crate::broker::shard::{ConnKey, CoreId, Shard};
use crate::http::request::Request;
use crate::http::response::Response;

use super::server::ServerHandle;

/// An application's HTTP handler, shared by every core.
pub trait HttpApp: Send + Sync + 'static {
    /// Handle `req`, which arrived on the core that owns `shard`. CORS preflights and origin
    /// checks have already been done; the answer gets the CORS headers added by the server.
    fn handle(&self, req: &Request, responder: Responder, shard: &mut Shard) -> HttpReply;
}

/// What an [`HttpApp`] did with a request.
pub enum HttpReply {
    /// The answer, written at once.
    Now(Response),
    /// The handler kept the [`Responder`] and will answer later.
    Later,
}

/// Answers one parked request, from any thread, exactly once (dropping it leaves the request
/// unanswered until the client gives up; don't).
#[derive(Debug)]
pub struct Responder {
    pub(crate) core: CoreId,
    pub(crate) conn: ConnKey,
    pub(crate) keep_alive: bool,
    pub(crate) cors: Vec<(&'static str, String)>,
    pub(crate) client: Option<std::net::SocketAddr>,
}

impl Responder {
    /// The client's address: the peer, or behind a trusted proxy the address its
    /// `X-Forwarded-For` names (port 0). `None` in the simulation.
    pub fn client(&self) -> Option<std::net::SocketAddr> {
        self.client
    }

    /// The core the request arrived on.
    pub fn core(&self) -> usize {
        self.core as usize
    }

    /// Send the answer through the server (from any thread).
    pub fn respond(self, handle: &ServerHandle, response: Response) {
        let core = self.core as usize;
        handle.run_on(core, move |shard| shard.http_respond(self, response));
    }

    /// Send the answer from code already running on the request's core.
    pub fn respond_here(self, shard: &mut Shard, response: Response) {
        shard.http_respond(self, response);
    }
}

/// Adds the CORS headers and serialises.
pub(crate) fn finish(response: Response, cors: &[(&'static str, String)], keep_alive: bool) -> Vec<u8> {
    let response = cors.iter().fold(response, |r, (name, value)| r.header(*name, value.clone()));
    let mut out = Vec::with_capacity(response.body.len() + 256);
    response.write_to(keep_alive, &mut out);
    out
}
