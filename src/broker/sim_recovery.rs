//! Connection state recovery in the deterministic simulation (tests only): ghosts, offsets,
//! the packet log, the recovery window, the buffer bound, and recovery across cores.

use std::time::Duration;

use super::sim::{Log, Sent, Sim, WsClient};
use crate::api::{DisconnectReason, Event, ServerBuilder, Socket};
use crate::config::Config;

fn config(on: bool) -> Config {
    let mut cfg = Config::default();
    cfg.recovery.enabled = on;
    cfg.recovery.window = Duration::from_secs(120);
    cfg
}

/// `/`: connect logged as `connect <id> recovered=<bool>`, disconnect as `disconnect <id>
/// <reason>`; `join` room (acked); `to-room` room payload -> `room-msg` payload to the room's
/// other members; `direct` payload -> `direct-msg` payload to the sender itself; `everyone`
/// payload -> `room-msg` payload to every other socket of the namespace.
fn app(cfg: Config, log: &Log) -> ServerBuilder {
    let mut b = ServerBuilder::new(cfg);
    let l = log.clone();
    b.namespace("/", move |ns| {
        let l1 = l.clone();
        ns.on_connect(move |s: &mut Socket<'_>| {
            l1.push(format!("connect {} recovered={}", s.id(), s.recovered()));
            // The connect handler of a recovered socket sees its restored rooms.
            let mut rooms = s.rooms();
            rooms.sort();
            l1.push(format!("rooms {}", rooms.join(",")));
        });
        let l2 = l.clone();
        ns.on_disconnect(move |s: &mut Socket<'_>, r: DisconnectReason| {
            l2.push(format!("disconnect {} {r}", s.id()));
            // A handler that leaves its rooms does not change what a ghost keeps.
            for room in s.rooms().iter().skip(1) {
                s.leave(room);
            }
        });
        ns.on("join", |s: &mut Socket<'_>, ev: Event| {
            let ok = ev.arg::<String>(0).is_some_and(|r| s.join(&r));
            if let Some(id) = ev.ack() {
                s.ack(id, &(ok,));
            }
        });
        ns.on("to-room", |s: &mut Socket<'_>, ev: Event| {
            if let (Some(room), Some(payload)) = (ev.arg::<String>(0), ev.arg_raw(1)) {
                s.to(&room).emit_raw("room-msg", payload, Vec::new());
            }
        });
        ns.on("direct", |s: &mut Socket<'_>, ev: Event| {
            s.emit_raw("direct-msg", ev.args_raw(), Vec::new());
        });
        ns.on("everyone", |s: &mut Socket<'_>, ev: Event| {
            s.broadcast().emit_raw("room-msg", ev.args_raw(), Vec::new());
        });
    });
    b
}

fn sim(cores: usize, cfg: Config) -> (Sim, Log) {
    let log = Log::default();
    let sim = Sim::new(cores, app(cfg, &log), 5);
    (sim, log)
}

/// The CONNECT answer's JSON object.
fn connect_answer(text: &str) -> serde_json::Value {
    serde_json::from_str(text.strip_prefix("40").unwrap_or_else(|| panic!("not a CONNECT: {text}")))
        .expect("JSON")
}

/// A WebSocket client connected to `/` with `auth`; returns it, its id and its pid.
fn connect(sim: &mut Sim, core: u8, auth: &str) -> (WsClient, String, Option<String>, Vec<String>) {
    let c = sim.ws_open(core);
    sim.ws_send(c.conn, &format!("40{auth}"));
    let mut texts = sim.ws_texts(c.conn);
    assert!(!texts.is_empty(), "no CONNECT answer");
    let answer = connect_answer(&texts.remove(0));
    let id = answer["sid"].as_str().expect("sid").to_owned();
    let pid = answer["pid"].as_str().map(str::to_owned);
    (c, id, pid, texts)
}

/// `42["room-msg",N,"<offset>"]` -> (N, offset).
fn numbered(text: &str) -> (u64, String) {
    let v: serde_json::Value =
        serde_json::from_str(text.strip_prefix("42").unwrap_or_else(|| panic!("not an EVENT: {text}")))
            .expect("JSON");
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), 3, "event, number, offset: {text}");
    (a[1].as_u64().expect("number"), a[2].as_str().expect("offset").to_owned())
}

fn numbers(texts: &[String]) -> Vec<u64> {
    texts.iter().map(|t| numbered(t).0).collect()
}

fn send_numbers(sim: &mut Sim, from: &WsClient, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        sim.ws_send(from.conn, &format!(r#"42["to-room","r",{n}]"#));
    }
}

/// A member `a` of room `r` (on `core_a`) and a sender `b` (on `core_b`); `a` has received
/// 1..=3. Returns a, its id, pid, the offsets of 1..=3, and b.
fn member_and_sender(
    sim: &mut Sim,
    core_a: u8,
    core_b: u8,
) -> (WsClient, String, String, Vec<String>, WsClient) {
    let (a, id, pid, _) = connect(sim, core_a, "");
    let pid = pid.expect("recovery on: the CONNECT answer carries a pid");
    assert_ne!(pid, id);
    sim.ws_send(a.conn, r#"421["join","r"]"#);
    assert_eq!(sim.ws_texts(a.conn), ["431[true]"]);
    let (b, _, _, _) = connect(sim, core_b, "");
    send_numbers(sim, &b, 1..=3);
    let got = sim.ws_texts(a.conn);
    assert_eq!(numbers(&got), [1, 2, 3]);
    let offsets: Vec<String> = got.iter().map(|t| numbered(t).1).collect();
    assert!(offsets[0] != offsets[1] && offsets[1] != offsets[2], "{offsets:?}");
    (a, id, pid, offsets, b)
}

#[test]
fn recovery_off_sends_no_pid_and_no_offset() {
    let (mut sim, _log) = sim(1, config(false));
    let (a, _, pid, _) = connect(&mut sim, 0, "");
    assert_eq!(pid, None);
    sim.ws_send(a.conn, r#"421["join","r"]"#);
    sim.ws_texts(a.conn);
    let (b, _, _, _) = connect(&mut sim, 0, "");
    sim.ws_send(b.conn, r#"42["to-room","r",1]"#);
    sim.ws_send(a.conn, r#"42["direct",2]"#);
    assert_eq!(sim.ws_texts(a.conn), [r#"42["room-msg",1]"#, r#"42["direct-msg",2]"#]);
    sim.client_close(a.conn);
    assert_eq!(sim.shard(0).ghost_count(), 0);
}

#[test]
fn transport_close_keeps_ghost_that_recovers_id_rooms_and_missed_packets_in_order() {
    let (mut sim, log) = sim(1, config(true));
    let (a, id, pid, offsets, b) = member_and_sender(&mut sim, 0, 0);
    let offset = &offsets[2];
    log.take();
    sim.client_close(a.conn);
    assert_eq!(log.take(), [format!("disconnect {id} transport close")]);
    assert_eq!((sim.shard(0).ghost_count(), sim.shard(0).socket_count()), (1, 1));

    send_numbers(&mut sim, &b, 4..=6);
    let (a2, id2, pid2, missed) = connect(&mut sim, 0, &format!(r#"{{"pid":"{pid}","offset":"{offset}"}}"#));
    assert_eq!((&id2, pid2.as_deref()), (&id, Some(pid.as_str())));
    assert_eq!(numbers(&missed), [4, 5, 6]);
    assert_eq!(log.take(), [format!("connect {id} recovered=true"), format!("rooms {},r", id)]);
    assert_eq!(sim.shard(0).ghost_count(), 0);

    // Live again: still in the room, and emits to it carry offsets.
    send_numbers(&mut sim, &b, 7..=7);
    assert_eq!(numbers(&sim.ws_texts(a2.conn)), [7]);
    sim.ws_send(a2.conn, r#"42["direct",8]"#);
    let direct = sim.ws_texts(a2.conn);
    assert_eq!(direct.len(), 1);
    assert!(direct[0].starts_with(r#"42["direct-msg",8,""#), "{direct:?}");
}

#[test]
fn packets_in_flight_at_the_cut_are_sent_again_from_the_client_offset() {
    let (mut sim, _log) = sim(1, config(true));
    let (a, _id, pid, offsets, b) = member_and_sender(&mut sim, 0, 0);
    // Say the client saw only 1: 2 and 3 were written to a connection that died.
    sim.ws_send(a.conn, r#"42["direct","x"]"#);
    let _ = sim.ws_texts(a.conn);
    sim.client_close(a.conn);
    send_numbers(&mut sim, &b, 4..=4);
    let first_offset = &offsets[0];
    let (_a2, _, _, missed) =
        connect(&mut sim, 0, &format!(r#"{{"pid":"{pid}","offset":"{first_offset}"}}"#));
    let events: Vec<&String> = missed.iter().filter(|t| t.starts_with(r#"42["room-msg""#)).collect();
    assert_eq!(events.iter().map(|t| numbered(t).0).collect::<Vec<_>>(), [2, 3, 4]);
    assert!(missed.iter().any(|t| t.starts_with(r#"42["direct-msg","x""#)), "{missed:?}");
}

#[test]
fn recovery_across_cores_hands_the_ghost_over() {
    let (mut sim, log) = sim(2, config(true));
    let (a, id, pid, offsets, b) = member_and_sender(&mut sim, 0, 1);
    let offset = &offsets[2];
    sim.client_close(a.conn);
    send_numbers(&mut sim, &b, 4..=5);
    log.take();
    sim.sent.clear();
    // The client comes back on core 1.
    let (a2, id2, pid2, missed) = connect(&mut sim, 1, &format!(r#"{{"pid":"{pid}","offset":"{offset}"}}"#));
    assert_eq!((&id2, pid2.as_deref()), (&id, Some(pid.as_str())));
    assert_eq!(numbers(&missed), [4, 5]);
    assert_eq!(log.take(), [format!("connect {id} recovered=true"), format!("rooms {id},r")]);
    assert_eq!((sim.shard(0).ghost_count(), sim.shard(0).socket_count()), (0, 0));
    assert!(sim.sent.iter().any(|s| matches!(s, Sent::Other { from: 1, to: 0 })), "asked core 0");
    assert_eq!(sim.core_of(a2.conn), 1);

    // A room broadcast from core 0 and an emit to its id (which names core 0) reach it on 1.
    let (c, _, _, _) = connect(&mut sim, 0, "");
    sim.ws_send(c.conn, r#"42["to-room","r",6]"#);
    sim.ws_send(c.conn, &format!(r#"42["to-room","{id}",7]"#));
    send_numbers(&mut sim, &b, 8..=8);
    assert_eq!(numbers(&sim.ws_texts(a2.conn)), [6, 7, 8]);

    // Cut again: now core 1 keeps the ghost, and a client coming back on core 0 finds it.
    let got_offset = {
        sim.ws_send(c.conn, r#"42["to-room","r",9]"#);
        numbered(&sim.ws_texts(a2.conn)[0]).1
    };
    sim.client_close(a2.conn);
    assert_eq!(sim.shard(1).ghost_count(), 1);
    let (a3, id3, _, missed) = connect(&mut sim, 0, &format!(r#"{{"pid":"{pid}","offset":"{got_offset}"}}"#));
    assert_eq!(id3, id);
    assert!(missed.is_empty(), "{missed:?}");
    send_numbers(&mut sim, &b, 10..=10);
    assert_eq!(numbers(&sim.ws_texts(a3.conn)), [10]);
}

#[test]
fn past_the_window_the_client_gets_a_fresh_session() {
    let (mut sim, log) = sim(2, config(true));
    let (a, id, pid, offsets, _b) = member_and_sender(&mut sim, 0, 1);
    let offset = &offsets[2];
    sim.client_close(a.conn);
    // Pongs keep `b` alive while two minutes pass.
    sim.advance(Duration::from_secs(121));
    assert_eq!(sim.shard(0).ghost_count(), 0, "dropped at the end of the window");
    log.take();
    let (_a2, id2, pid2, missed) = connect(&mut sim, 1, &format!(r#"{{"pid":"{pid}","offset":"{offset}"}}"#));
    assert_ne!(id2, id);
    assert_ne!(pid2.as_deref(), Some(pid.as_str()));
    assert!(missed.is_empty());
    assert_eq!(log.take(), [format!("connect {id2} recovered=false"), format!("rooms {id2}")]);
}

#[test]
fn unknown_pid_or_offset_gives_a_fresh_session() {
    let (mut sim, _log) = sim(1, config(true));
    let (a, id, pid, _offsets, _b) = member_and_sender(&mut sim, 0, 0);
    sim.client_close(a.conn);
    for auth in [
        r#"{"pid":"nope","offset":"0.1"}"#.to_owned(),
        format!(r#"{{"pid":"{pid}","offset":"f.ffff"}}"#),
        format!(r#"{{"pid":"{pid}"}}"#),
        format!(r#"{{"pid":"{pid}","offset":7}}"#),
        format!(r#"{{"pid":"{pid}","offset":"{}"}}"#, "9".repeat(100_000)),
    ] {
        let (_c, id2, _, _) = connect(&mut sim, 0, &auth);
        assert_ne!(id2, id, "{auth}");
    }
    // The ghost is still there for the right offset.
    assert_eq!(sim.shard(0).ghost_count(), 1);
}

#[test]
fn client_namespace_disconnect_keeps_nothing() {
    let (mut sim, _log) = sim(1, config(true));
    let (a, _id, _pid, _offsets, _b) = member_and_sender(&mut sim, 0, 0);
    sim.ws_send(a.conn, "41");
    sim.client_close(a.conn);
    assert_eq!(sim.shard(0).ghost_count(), 0);
}

#[test]
fn ghost_over_its_buffer_is_dropped() {
    let mut cfg = config(true);
    // Each 300-byte message counts about 390 bytes (frame plus 64 of bookkeeping), and the
    // three small ones logged before the cut about 90 each.
    cfg.recovery.max_buffer_bytes = 2048;
    let (mut sim, _log) = sim(1, cfg);
    let (a, id, pid, offsets, b) = member_and_sender(&mut sim, 0, 0);
    let offset = &offsets[2];
    sim.client_close(a.conn);
    let big = "x".repeat(300);
    for _ in 0..2 {
        sim.ws_send(b.conn, &format!(r#"42["to-room","r","{big}"]"#));
    }
    assert_eq!(sim.shard(0).ghost_count(), 1, "still within the bound");
    for _ in 0..3 {
        sim.ws_send(b.conn, &format!(r#"42["to-room","r","{big}"]"#));
    }
    assert_eq!(sim.shard(0).ghost_count(), 0, "over the bound");
    let (_a2, id2, _, _) = connect(&mut sim, 0, &format!(r#"{{"pid":"{pid}","offset":"{offset}"}}"#));
    assert_ne!(id2, id);
}

#[test]
fn broadcasts_racing_a_cross_core_recovery_arrive_once_in_order() {
    let (mut sim, _log) = sim(2, config(true));
    // The member and the sender on core 0; the client comes back on core 1.
    let (a, id, pid, offsets, b) = member_and_sender(&mut sim, 0, 0);
    sim.client_close(a.conn);
    send_numbers(&mut sim, &b, 4..=4);

    sim.hold = true;
    let a2 = sim.ws_open(1);
    sim.ws_send(a2.conn, &format!(r#"40{{"pid":"{pid}","offset":"{}"}}"#, offsets[2]));
    sim.deliver(1);
    assert_eq!(sim.inbox_len(0), 1, "core 1 asked core 0");
    sim.deliver(0); // core 0 hands the ghost over and keeps forwarding
    send_numbers(&mut sim, &b, 5..=5); // core 0 does not know core 1 is in the room yet
    sim.deliver(1); // the socket is created, missed 4 sent, then the forwarded 5
    send_numbers(&mut sim, &b, 6..=6); // forwarded again
    sim.deliver_one(0); // core 0 learns that core 1 is in the room
    send_numbers(&mut sim, &b, 7..=7); // sent directly and forwarded: must arrive once
    sim.hold = false;
    sim.run_until_idle(); // Fence, Released
    send_numbers(&mut sim, &b, 8..=8);

    let texts = sim.ws_texts(a2.conn);
    assert_eq!(connect_answer(&texts[0])["sid"], id.as_str());
    assert_eq!(numbers(&texts[1..]), [4, 5, 6, 7, 8]);
    assert_eq!((sim.shard(0).ghost_count(), sim.shard(0).socket_count()), (0, 1), "only b on core 0");
}

#[test]
fn ghost_on_one_core_gets_room_and_namespace_broadcasts_from_a_third_and_recovers_on_another() {
    let (mut sim, _log) = sim(3, config(true));
    let (a, id, pid, offsets, b) = member_and_sender(&mut sim, 0, 2);
    sim.client_close(a.conn);
    send_numbers(&mut sim, &b, 4..=4);
    sim.ws_send(b.conn, r#"42["everyone",5]"#);
    sim.ws_send(b.conn, &format!(r#"42["to-room","{id}",6]"#));
    let (a2, id2, _, missed) =
        connect(&mut sim, 1, &format!(r#"{{"pid":"{pid}","offset":"{}"}}"#, offsets[2]));
    assert_eq!(id2, id);
    assert_eq!(numbers(&missed), [4, 5, 6]);
    send_numbers(&mut sim, &b, 7..=7);
    sim.ws_send(b.conn, r#"42["everyone",8]"#);
    sim.ws_send(b.conn, &format!(r#"42["to-room","{id}",9]"#));
    assert_eq!(numbers(&sim.ws_texts(a2.conn)), [7, 8, 9]);
    assert_eq!((sim.shard(0).ghost_count(), sim.shard(0).socket_count()), (0, 0));
}

/// Two cores, every placement of member, sender and reconnection, and random interleavings of
/// inbox deliveries with the stream, the cut and the reconnection: the client ends with every
/// number exactly once, in order.
#[test]
fn random_interleavings_on_two_cores_deliver_every_number_once_in_order() {
    random_interleavings(2, 300);
}

/// The same with three cores: the sender may be on a third core, whose broadcasts race the
/// handover (the fences).
#[test]
fn random_interleavings_on_three_cores_deliver_every_number_once_in_order() {
    random_interleavings(3, 1000);
}

fn random_interleavings(cores: u8, seeds: u64) {
    use rand::{RngExt, SeedableRng};
    for seed in 0..seeds {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (core_a, core_b, core_back) =
            (rng.random_range(0..cores), rng.random_range(0..cores), rng.random_range(0..cores));
        let (mut sim, _log) = sim(cores as usize, config(true));
        let (a, id, pid, offsets, b) = member_and_sender(&mut sim, core_a, core_b);
        let mut got: Vec<u64> = vec![1, 2, 3];
        let mut last_offset = None;
        let total = 40u64;
        let cut_at = rng.random_range(4..20u64);
        let back_at = rng.random_range(cut_at..30u64);
        let mut a2: Option<WsClient> = None;
        sim.hold = true;
        let read = |sim: &mut Sim, conn, got: &mut Vec<u64>, last: &mut Option<String>| {
            for t in sim.ws_texts(conn) {
                if t.starts_with(r#"42["room-msg""#) {
                    let (n, o) = numbered(&t);
                    got.push(n);
                    *last = Some(o);
                }
            }
        };
        for n in 4..=total {
            if n == cut_at {
                read(&mut sim, a.conn, &mut got, &mut last_offset);
                sim.client_close(a.conn);
            }
            if n == back_at {
                let c = sim.ws_open(core_back);
                let offset = last_offset.clone().unwrap_or_else(|| offsets[2].clone());
                sim.ws_send(c.conn, &format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#));
                a2 = Some(c);
            }
            sim.ws_send(b.conn, &format!(r#"42["to-room","r",{n}]"#));
            for _ in 0..rng.random_range(0..3) {
                let core = rng.random_range(0..cores);
                if rng.random_bool(0.5) {
                    sim.deliver_one(core);
                } else {
                    sim.deliver(core);
                }
            }
            if n < cut_at {
                read(&mut sim, a.conn, &mut got, &mut last_offset);
            }
        }
        sim.hold = false;
        sim.run_until_idle();
        let a2 = a2.expect("reconnected");
        let texts = sim.ws_texts(a2.conn);
        let answer = connect_answer(&texts[0]);
        assert_eq!(answer["sid"], id.as_str(), "seed {seed}: recovered");
        got.extend(texts[1..].iter().filter(|t| t.starts_with(r#"42["room-msg""#)).map(|t| numbered(t).0));
        let expected: Vec<u64> = (1..=total).collect();
        assert_eq!(
            got, expected,
            "seed {seed}: cores {core_a} {core_b} {core_back}, cut {cut_at}, back {back_at}"
        );
        let ghosts: usize = (0..cores).map(|c| sim.shard(c).ghost_count()).sum();
        assert_eq!(ghosts, 0, "seed {seed}: no ghost or forwarder left");
    }
}
