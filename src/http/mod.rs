//! HTTP/1.1 request parsing, responses, CORS and the WebSocket handshake and frame codec.
pub mod cors;
pub mod forwarded;
pub mod request;
pub mod response;
pub mod websocket;

pub use request::{HttpError, Limits, Method, Parse, Request, parse_request};
pub use response::{Response, write_simple};
