//! A small room chat on the sockeye API.
//!
//! Run: `cargo run --release --example rooms` then connect any Socket.IO client to
//! `http://127.0.0.1:3000`:
//! ```js
//! const s = io("http://127.0.0.1:3000", { auth: { name: "alice" } });
//! s.emit("join", "lobby", (ok) => s.emit("say", "lobby", "hello"));
//! s.on("said", (from, room, text) => console.log(from, room, text));
//! ```

use std::time::Duration;

use serde::Deserialize;
use sockeye::api::{ConnectError, Event, ServerBuilder, Socket};
use sockeye::config::Config;

#[derive(Deserialize)]
struct Auth {
    name: String,
}

fn main() -> std::io::Result<()> {
    let cfg = Config { host: "127.0.0.1".into(), ..Config::default() };
    let mut server = ServerBuilder::new(cfg);
    server.namespace("/", |ns| {
        // Refuse clients without a name; they get CONNECT_ERROR with this message and data.
        ns.middleware(|hs| match hs.auth::<Auth>() {
            Some(a) if !a.name.is_empty() => Ok(()),
            _ => Err(ConnectError::new("name required").with_data(serde_json::json!({"code": 401}))),
        });
        ns.on_connect(|s: &mut Socket<'_>| {
            let name = s.handshake().and_then(|h| h.auth::<Auth>()).map(|a| a.name).unwrap_or_default();
            s.broadcast().emit("joined", &(name.as_str(),));
            s.set_data(name);
        });
        ns.on("join", |s: &mut Socket<'_>, ev: Event| {
            let ok = ev.arg::<String>(0).is_some_and(|room| s.join(&room));
            if let Some(ack) = ev.ack() {
                s.ack(ack, &(ok,));
            }
        });
        ns.on("say", |s: &mut Socket<'_>, ev: Event| {
            let (Some(room), Some(text)) = (ev.arg::<String>(0), ev.arg::<String>(1)) else {
                return;
            };
            let from = s.data::<String>().cloned().unwrap_or_default();
            // Everyone in the room, the sender included.
            s.io().to(&room).emit("said", &(from, room.as_str(), text));
        });
        ns.on("ping-me", |s: &mut Socket<'_>, _ev: Event| {
            // Server-to-client acknowledgement with a timeout.
            s.emit_with_ack("are-you-there", &(), Duration::from_secs(5), |s, res| {
                let answer = if res.is_ok() { "yes" } else { "no answer" };
                s.emit("answer", &(answer,));
            });
        });
        ns.on_disconnect(|s: &mut Socket<'_>, reason| {
            let name = s.data::<String>().cloned().unwrap_or_default();
            s.broadcast().emit("left", &(name, reason.as_str()));
        });
    });
    let running = server.start()?;
    println!("rooms example listening on http://{}", running.local_addr());
    running.join();
    Ok(())
}
