//! Presence: who is online, owned by one thread for the whole server.
//!
//! Every core reports its sockets coming and going ([`PresenceMsg`]). The [`Presence`] state
//! machine keeps the sockets (for seed 000's `online_users`) and the users with at least one
//! socket, in the order they came online (for `getOnlineUsers` and `online`). It answers a
//! newcomer directly and emits the full lists to everyone, coalesced: at most one per interval,
//! carrying the list as it is when it goes out. [`run`] is the thin thread around it; the state
//! machine itself takes time as input and returns what to send, so it is tested without threads.
//!
//! What it does not do: no socket IO (the thread hands its output to the server handle), no
//! storage (presence is not persisted), no per-room presence (rooms announce joins themselves).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

/// A change reported by a core.
#[derive(Debug)]
pub enum PresenceMsg {
    Up { sid: Arc<str>, core: usize, user: Option<Arc<str>>, public_key: Option<String> },
    Down { sid: Arc<str> },
    Shutdown,
}

/// What the presence owner asks the server to send.
#[derive(Debug, PartialEq)]
pub enum PresenceOut {
    /// To the newcomer `sid` on `core`: `online_users` (the other identified sockets, as a
    /// JSON object) and the current user list, unless a list broadcast is already pending (it
    /// will reach the newcomer too).
    Newcomer { core: usize, sid: Arc<str>, online_users: String, users: Option<String> },
    /// To everyone: the user list (a JSON array), for each enabled list event.
    Lists { users: String },
}

struct SocketInfo {
    user: Option<Arc<str>>,
    public_key: Option<String>,
    seq: u64,
}

struct UserInfo {
    sockets: u32,
    seq: u64,
}

/// The presence state machine.
pub struct Presence {
    interval: Duration,
    sockets: HashMap<Arc<str>, SocketInfo>,
    socket_order: BTreeMap<u64, Arc<str>>,
    users: HashMap<Arc<str>, UserInfo>,
    user_order: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
    /// The user set changed since the last list went out.
    pending: bool,
    last_emit: Option<Instant>,
    out: Vec<PresenceOut>,
}

impl Presence {
    pub fn new(interval: Duration) -> Self {
        Presence {
            interval,
            sockets: HashMap::new(),
            socket_order: BTreeMap::new(),
            users: HashMap::new(),
            user_order: BTreeMap::new(),
            next_seq: 0,
            pending: false,
            last_emit: None,
            out: Vec::new(),
        }
    }

    pub fn handle(&mut self, msg: PresenceMsg, now: Instant) {
        match msg {
            PresenceMsg::Up { sid, core, user, public_key } => self.up(sid, core, user, public_key),
            PresenceMsg::Down { sid } => self.down(&sid),
            PresenceMsg::Shutdown => {}
        }
        self.poll(now);
    }

    fn up(&mut self, sid: Arc<str>, core: usize, user: Option<Arc<str>>, public_key: Option<String>) {
        if self.sockets.contains_key(&sid) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let others: Vec<serde_json::Value> = self
            .socket_order
            .values()
            .filter_map(|id| {
                let s = &self.sockets[id];
                let user = s.user.as_deref()?;
                Some(json!({"id": &**id, "username": user, "publicKey": s.public_key}))
            })
            .collect();
        if let Some(u) = &user {
            let entry = self.users.entry(u.clone()).or_insert(UserInfo { sockets: 0, seq });
            if entry.sockets == 0 {
                self.user_order.insert(seq, u.clone());
                self.pending = true;
            }
            entry.sockets += 1;
        }
        self.socket_order.insert(seq, sid.clone());
        self.sockets.insert(sid.clone(), SocketInfo { user, public_key, seq });
        self.out.push(PresenceOut::Newcomer {
            core,
            sid,
            online_users: json!({ "online_users": others }).to_string(),
            users: if self.pending { None } else { Some(self.user_list()) },
        });
    }

    fn down(&mut self, sid: &str) {
        let Some(info) = self.sockets.remove(sid) else {
            return;
        };
        self.socket_order.remove(&info.seq);
        if let Some(u) = info.user
            && let Some(entry) = self.users.get_mut(&u)
        {
            entry.sockets -= 1;
            if entry.sockets == 0 {
                let seq = entry.seq;
                self.users.remove(&u);
                self.user_order.remove(&seq);
                self.pending = true;
            }
        }
    }

    /// Emits the coalesced list when it is due.
    pub fn poll(&mut self, now: Instant) {
        if !self.pending {
            return;
        }
        let due = match self.last_emit {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= self.interval,
        };
        if due {
            self.pending = false;
            self.last_emit = Some(now);
            let users = self.user_list();
            self.out.push(PresenceOut::Lists { users });
        }
    }

    /// When `poll` must run next; `None` while nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        Some(self.last_emit.map_or_else(Instant::now, |t| t + self.interval))
    }

    pub fn take_output(&mut self) -> Vec<PresenceOut> {
        std::mem::take(&mut self.out)
    }

    /// Online users in the order they came online, as a JSON array.
    pub fn user_list(&self) -> String {
        let names: Vec<&str> = self.user_order.values().map(|u| &**u).collect();
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }
}

/// The presence thread: feeds messages and timeouts to [`Presence`] and hands its output to
/// `send`. Returns on [`PresenceMsg::Shutdown`] or when every sender is gone.
pub fn run(
    rx: crossbeam_channel::Receiver<PresenceMsg>,
    interval: Duration,
    mut send: impl FnMut(PresenceOut),
) {
    let mut p = Presence::new(interval);
    loop {
        let msg = match p.poll_timeout() {
            None => rx.recv().ok(),
            Some(at) => match rx.recv_deadline(at) {
                Ok(m) => Some(m),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    p.poll(Instant::now());
                    for o in p.take_output() {
                        send(o);
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(msg) = msg else {
            return;
        };
        if matches!(msg, PresenceMsg::Shutdown) {
            return;
        }
        p.handle(msg, Instant::now());
        // Take whatever else is queued before sending, so a burst of connects costs one list.
        while let Ok(m) = rx.try_recv() {
            if matches!(m, PresenceMsg::Shutdown) {
                return;
            }
            p.handle(m, Instant::now());
        }
        for o in p.take_output() {
            send(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(p: &mut Presence, sid: &str, user: Option<&str>, now: Instant) {
        p.handle(
            PresenceMsg::Up {
                sid: sid.into(),
                core: 0,
                user: user.map(Arc::from),
                public_key: user.map(|u| format!("pk-{u}")),
            },
            now,
        );
    }

    fn lists(out: &[PresenceOut]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                PresenceOut::Lists { users } => Some(users.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn newcomer_gets_other_identified_sockets_and_users_in_arrival_order() {
        let t = Instant::now();
        let mut p = Presence::new(Duration::from_millis(100));
        up(&mut p, "s1", Some("bob"), t);
        up(&mut p, "s2", None, t);
        up(&mut p, "s3", Some("alice"), t);
        let out = p.take_output();
        let PresenceOut::Newcomer { sid, online_users, users, .. } = &out[out.len() - 1] else {
            panic!("{out:?}")
        };
        assert_eq!(&**sid, "s3");
        assert_eq!(online_users, r#"{"online_users":[{"id":"s1","publicKey":"pk-bob","username":"bob"}]}"#);
        assert_eq!(users, &None, "the list broadcast is pending and will reach s3");
        let l = lists(&out);
        assert_eq!(l, vec![r#"["bob"]"#], "only the first change went out at once");
    }

    #[test]
    fn lists_are_coalesced_to_one_per_interval_with_the_latest_state() {
        let t = Instant::now();
        let mut p = Presence::new(Duration::from_millis(100));
        up(&mut p, "s1", Some("a"), t);
        assert_eq!(lists(&p.take_output()), vec![r#"["a"]"#], "first change goes out at once");
        for i in 0..10 {
            up(&mut p, &format!("x{i}"), Some(&format!("u{i}")), t + Duration::from_millis(10 + i));
        }
        assert!(lists(&p.take_output()).is_empty(), "within the interval: held back");
        assert_eq!(p.poll_timeout(), Some(t + Duration::from_millis(100)));
        p.poll(t + Duration::from_millis(100));
        let l = lists(&p.take_output());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0], r#"["a","u0","u1","u2","u3","u4","u5","u6","u7","u8","u9"]"#);
        assert_eq!(p.poll_timeout(), None, "nothing pending");
    }

    #[test]
    fn second_tab_and_anonymous_sockets_do_not_change_the_user_list() {
        let t = Instant::now();
        let mut p = Presence::new(Duration::from_millis(100));
        up(&mut p, "s1", Some("a"), t);
        p.take_output();
        let later = t + Duration::from_secs(1);
        up(&mut p, "s2", Some("a"), later);
        up(&mut p, "s3", None, later);
        let out = p.take_output();
        assert!(lists(&out).is_empty());
        for o in &out {
            let PresenceOut::Newcomer { users, .. } = o else { panic!("{o:?}") };
            assert_eq!(users.as_deref(), Some(r#"["a"]"#), "no broadcast pending: told directly");
        }
        p.handle(PresenceMsg::Down { sid: "s1".into() }, later);
        assert!(lists(&p.take_output()).is_empty(), "a still has s2");
        p.handle(PresenceMsg::Down { sid: "s2".into() }, later);
        assert_eq!(lists(&p.take_output()), vec!["[]"]);
        assert_eq!(p.socket_count(), 1);
    }

    #[test]
    fn unknown_down_and_duplicate_up_are_ignored() {
        let t = Instant::now();
        let mut p = Presence::new(Duration::from_millis(100));
        p.handle(PresenceMsg::Down { sid: "nope".into() }, t);
        up(&mut p, "s1", Some("a"), t);
        up(&mut p, "s1", Some("a"), t);
        assert_eq!(p.socket_count(), 1);
        p.handle(PresenceMsg::Down { sid: "s1".into() }, t + Duration::from_secs(1));
        assert_eq!(p.user_list(), "[]");
    }

    #[test]
    fn thread_coalesces_a_burst() {
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..50 {
            tx.send(PresenceMsg::Up {
                sid: format!("s{i}").into(),
                core: 0,
                user: Some(format!("u{i}").into()),
                public_key: None,
            })
            .unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        run(rx, Duration::from_secs(10), |o| got.push(o));
        // 50 newcomer answers, and one list: the first change went out at once, the other 49
        // wait for the interval (and the thread stopped first, as every sender was gone).
        assert_eq!(got.iter().filter(|o| matches!(o, PresenceOut::Newcomer { .. })).count(), 50);
        assert_eq!(lists(&got), vec![r#"["u0"]"#]);
    }

    #[test]
    fn thread_sends_the_held_back_list_when_the_interval_ends() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            run(rx, Duration::from_millis(20), |o| got.push(o));
            got
        });
        for u in ["a", "b"] {
            tx.send(PresenceMsg::Up { sid: u.into(), core: 0, user: Some(u.into()), public_key: None })
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        tx.send(PresenceMsg::Shutdown).unwrap();
        let got = t.join().unwrap();
        let l = lists(&got);
        assert_eq!(l.last().map(String::as_str), Some(r#"["a","b"]"#), "{got:?}");
    }
}
