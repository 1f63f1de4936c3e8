//! `accept` failing for lack of descriptors (EMFILE) is retried on a timer. The connections
//! waiting in the backlog raise no new readiness event, so without the retry they would wait
//! for the next connection to arrive, which here never comes.
//!
//! Its own test binary: it lowers the process's open-file limit, which would break tests
//! running beside it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sockeye::api::ServerBuilder;
use sockeye::config::Config;

fn nofile() -> libc::rlimit {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl
}

fn set_nofile(rl: libc::rlimit) {
    // SAFETY: setrlimit only reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
}

#[test]
fn accept_out_of_descriptors_is_retried_on_a_timer() {
    let mut cfg = Config { host: "127.0.0.1".into(), port: 0, cores: 1, ..Config::default() };
    cfg.limits.accept_retry_delay = Duration::from_millis(100);
    let mut b = ServerBuilder::new(cfg);
    sockeye::apps::echo::install(&mut b);
    let running = b.start().expect("server starts");
    let addr = running.local_addr();
    let handle = running.handle();

    // The client sockets exist before descriptors run out; connecting them needs no new one.
    let clients: Vec<socket2::Socket> = (0..3)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    // Lower the soft limit to just above what is open now, then use up the rest.
    let saved = nofile();
    let probe = File::open("/dev/null").unwrap();
    set_nofile(libc::rlimit { rlim_cur: probe.as_raw_fd() as libc::rlim_t + 8, rlim_max: saved.rlim_max });
    let mut filler = vec![probe];
    loop {
        match File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }

    let mut streams: Vec<TcpStream> = clients
        .into_iter()
        .map(|c| {
            // Completes in the kernel's backlog, whether or not the server can accept.
            c.connect(&addr.into()).unwrap();
            let mut s: TcpStream = c.into();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while handle.stats().accept_errors == 0 {
        assert!(Instant::now() < deadline, "accept never failed: {:?}", handle.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Long enough for every arrival's edge to be handled, and for a few retries.
    std::thread::sleep(Duration::from_millis(350));
    let stats = handle.stats();
    assert!(stats.accept_errors >= 3, "retried every 100 ms: {stats:?}");
    assert_eq!(stats.connections_accepted, 0);

    // Descriptors come back; no new connection arrives to raise an edge.
    drop(filler);
    set_nofile(saved);
    let freed = Instant::now();
    for s in &mut streams {
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answered once the server could accept again");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    assert!(freed.elapsed() < Duration::from_secs(1), "served after {:?}", freed.elapsed());
    assert_eq!(handle.stats().connections_accepted, 3);

    handle.shutdown();
    running.join();
}
