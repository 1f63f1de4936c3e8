//! Benchmark peer: the sockeye bench contract on socketioxide, served by axum on tokio.
//!
//! The contract, on namespace `/`:
//! - `bench` (payload): `io.emit("bench", payload)` to every socket, sender included.
//! - `echo` (payload) with ack: ack with the same payload.
//! - `join` (room) with ack: join the room, ack `true`.
//! - `bench-room` (room, payload): `io.to(room).emit("bench-room", payload)`, sender included.
//!
//! TCP_NODELAY is set on accepted connections (see `serve`). Everything else is left at
//! socketioxide's defaults (ping interval 25 s, ping timeout 20 s,
//! 128 queued packets per socket, 100 kB max payload, both transports). Payloads are
//! `serde_json::Value`: socketioxide documents no raw-value type for event data, so each payload
//! is parsed into a `Value` and serialised again, as a user of its documented API would do.
//!
//! Usage: `bench-socketioxide [--host H] [--port P] [--threads N]` (env `PORT` also sets the
//! port). `--threads N` runs a multi-thread tokio runtime with N workers (default 1, for a
//! process pinned to one core); `--threads 0` runs the current-thread runtime instead.

use axum::Router;
use axum::serve::ListenerExt;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

struct Options {
    host: String,
    port: u16,
    threads: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        host: "127.0.0.1".to_owned(),
        port: std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000),
        threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => options.host = value()?,
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--threads" => options.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: bench-socketioxide [--host H] [--port P] [--threads N]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

/// Registers the four contract events on each socket of `/`.
async fn on_connect(socket: SocketRef) {
    socket.on("bench", async |io: SocketIo, Data::<Value>(payload)| {
        // A broadcast error only means the namespace is gone; nothing to report to a sender.
        io.emit("bench", &payload).await.ok();
    });
    socket.on("echo", async |Data::<Value>(payload), ack: AckSender| {
        ack.send(&payload).ok();
    });
    socket.on("join", async |socket: SocketRef, Data::<String>(room), ack: AckSender| {
        socket.join(room);
        ack.send(&true).ok();
    });
    // Two arguments arrive as a tuple: socketioxide deserialises a tuple from the rest of the
    // event array, anything else from its first element.
    socket.on("bench-room", async |io: SocketIo, Data::<(String, Value)>((room, payload))| {
        io.to(room).emit("bench-room", &payload).await.ok();
    });
}

async fn serve(options: Options) -> std::io::Result<()> {
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", on_connect);
    let app = Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port)).await?;
    let port = listener.local_addr()?.port();
    // TCP_NODELAY, as axum's own `tap_io` example shows; Node's http server, `ws`, sockeye and
    // the rawws floor all set it, and without it Nagle plus delayed ACKs would dominate latency.
    let listener = listener.tap_io(|stream| {
        stream.set_nodelay(true).ok();
    });
    println!("listening on {port}");
    // No graceful shutdown: the runner ends the peer with SIGTERM, and open WebSockets would
    // hold a graceful shutdown forever.
    axum::serve(listener, app).await
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let mut builder = if options.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(options.threads);
        builder
    };
    let runtime = builder.enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(serve(options)) {
        eprintln!("bench-socketioxide: {e}");
        std::process::exit(1);
    }
}
