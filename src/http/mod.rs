//! HTTP/1.1 request parsing, responses, CORS and the WebSocket handshake and frame codec.
pub mod request;
pub mod response;
pub mod cors;
pub mod websocket;
