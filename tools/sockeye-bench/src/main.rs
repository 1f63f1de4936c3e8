//! `sockeye-bench`: a single-threaded load generator for Socket.IO v5 / Engine.IO v4 servers
//! that implement the bench contract (events `bench`, `echo`, `join`, `bench-room`; see
//! README.md). It speaks WebSocket and HTTP long-polling itself, drives every client from one
//! mio loop, and prints one JSON line on stdout plus a human summary on stderr.

mod cli;
mod driver;
mod hist;
mod proto;
mod seq;
mod sys;
mod ws;

use serde_json::{Map, Value, json};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sockeye-bench: {e}");
            std::process::exit(2);
        }
    };
    let mut line = Map::new();
    line.insert("scenario".into(), json!(args.scenario.name()));
    line.insert("label".into(), json!(args.label));
    line.insert("url".into(), json!(args.url));
    line.insert("clients".into(), json!(args.clients));
    line.insert("duration_s".into(), json!(args.duration));
    line.insert("server_pid".into(), json!(args.server_pid));
    line.insert("host_loadavg_1m".into(), json!(sys::loadavg_1m()));

    let outcome = match driver::Driver::new(args) {
        Ok(d) => d.run(),
        Err(e) => driver::Outcome {
            fields: Map::new(),
            error: Some(format!("cannot create the event loop: {e}")),
            summary: String::new(),
        },
    };
    for (k, v) in outcome.fields {
        line.insert(k, v);
    }
    line.insert("ok".into(), json!(outcome.error.is_none()));
    if let Some(e) = &outcome.error {
        line.insert("error".into(), json!(e));
    }
    println!("{}", Value::Object(line));
    if !outcome.summary.is_empty() {
        eprintln!("{}", outcome.summary);
    }
    if let Some(e) = outcome.error {
        eprintln!("sockeye-bench: run failed: {e}");
        std::process::exit(1);
    }
}
