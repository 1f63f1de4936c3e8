//! Benchmark floor: a raw WebSocket broadcast server with no Engine.IO or Socket.IO framing.
//!
//! Every text message received from any client is sent to every connected client, sender
//! included. This is the least work a broadcast over WebSocket can cost on tokio +
//! tokio-tungstenite, and the floor that sockeye's fanout CPU and latency are held against.
//! Clients speak plain WebSocket (any path is accepted), so the load generator needs its
//! `--raw` mode to drive it.
//!
//! Shape: one task per connection that both reads and writes (no split, no lock between a
//! reader and a writer half). A received text message goes once into one
//! `tokio::sync::broadcast` channel; the payload is `Utf8Bytes`, reference counted, so it is
//! neither copied nor re-encoded per receiver; only the frame header is written per
//! connection. A writer drains everything already queued for it before one flush, so a burst
//! costs one write syscall per connection. A receiver that falls more than `--capacity`
//! messages behind loses the oldest ones (`Lagged`), the floor's bound on a slow consumer;
//! the count is printed to stderr when the connection closes.
//!
//! Usage: `bench-rawws [--host H] [--port P] [--threads N] [--capacity N]` (env `PORT` also
//! sets the port). `--threads N` runs a multi-thread runtime with N workers (default 1);
//! `--threads 0` the current-thread runtime.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

struct Options {
    host: String,
    port: u16,
    threads: usize,
    capacity: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        host: "127.0.0.1".to_owned(),
        port: std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000),
        threads: 1,
        capacity: 65536,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => options.host = value()?,
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--threads" => options.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--capacity" => options.capacity = value()?.parse().map_err(|e| format!("--capacity: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: bench-rawws [--host H] [--port P] [--threads N] [--capacity N]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.capacity == 0 {
        return Err("--capacity must be at least 1".into());
    }
    Ok(options)
}

/// Serves one client until it closes or fails: forwards its text messages to the channel and
/// writes every channel message to it.
async fn serve_conn(stream: TcpStream, tx: broadcast::Sender<Utf8Bytes>) {
    stream.set_nodelay(true).ok();
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    // Subscribe after the handshake: a client receives what is sent once it is connected.
    let mut rx = tx.subscribe();
    let mut lagged: u64 = 0;
    loop {
        // Both branches are cancel safe: `WebSocketStream::next` keeps partial frames in the
        // stream, and `broadcast::Receiver::recv` loses nothing when dropped before ready.
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    // Fails only when nobody is subscribed, which cannot be while we are.
                    tx.send(text).ok();
                }
                // Pings are answered by tungstenite itself; binary and pongs are ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            outgoing = rx.recv() => {
                let first = match outgoing {
                    Ok(text) => text,
                    Err(RecvError::Lagged(n)) => {
                        lagged += n;
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                if ws.feed(Message::Text(first)).await.is_err() {
                    break;
                }
                let mut failed = false;
                loop {
                    match rx.try_recv() {
                        Ok(text) => {
                            if ws.feed(Message::Text(text)).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        Err(TryRecvError::Lagged(n)) => lagged += n,
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                if failed || ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    if lagged > 0 {
        eprintln!("bench-rawws: a slow client lost {lagged} messages");
    }
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind((options.host.as_str(), options.port)).await?;
    println!("listening on {}", listener.local_addr()?.port());
    let (tx, _) = broadcast::channel::<Utf8Bytes>(options.capacity);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or a connection reset before accept: keep serving the rest.
            Err(e) => {
                eprintln!("bench-rawws: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(serve_conn(stream, tx.clone()));
    }
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
        eprintln!("bench-rawws: {e}");
        std::process::exit(1);
    }
}
