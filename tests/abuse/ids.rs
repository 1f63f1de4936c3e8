//! Finding 1: guessable session ids. An Engine.IO sid is a bearer credential for its polling
//! session, and a socket id names a socket to every other client. Both must come from a CSPRNG
//! seeded by the operating system, with at least 120 random bits.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::common::{POLL, Server, http, sid_of};

/// Decodes an id to its raw bytes (the first names the owning core).
fn raw(id: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(id).unwrap_or_else(|e| panic!("id {id:?} is not base64url: {e}"))
}

#[test]
fn session_ids_carry_at_least_120_random_bits_and_differ_between_processes() {
    let _t = crate::turn();
    const N: usize = 200;
    let mut all = Vec::new();
    // Two servers started at once: with a clock-seeded generator their ids were related.
    for _ in 0..2 {
        let server = Server::start(&[]);
        for _ in 0..N / 2 {
            let (status, body) = http(server.port, "GET", POLL, b"");
            assert_eq!(status, 200, "handshake: {body}");
            all.push(sid_of(&body));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for sid in &all {
        assert!(seen.insert(sid.clone()), "sid {sid} drawn twice");
    }
    let ids: Vec<Vec<u8>> = all.iter().map(|s| raw(s)).collect();
    let random_bits = (ids[0].len() - 1) * 8;
    assert!(random_bits >= 120, "an id has {random_bits} random bits: {}", all[0]);
    // Every random bit position varies: set in roughly half of the ids (binomial, N = 200:
    // outside 60..140 has a probability below 1e-8 per position).
    for bit in 0..random_bits {
        let set = ids.iter().filter(|id| id[1 + bit / 8] & (0x80 >> (bit % 8)) != 0).count();
        assert!((60..=140).contains(&set), "bit {bit} is set in {set} of {N} ids");
    }
    crate::report(&format!("ids: {N} sids, {random_bits} random bits each, all distinct, every bit varies"));
}
