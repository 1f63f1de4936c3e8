//! Session and socket ids.
//!
//! An id is 15 bytes written as 20 base64url characters, like the reference server's ids. The
//! first byte names the core that owns the session, so a request that lands on another core can
//! be handed to the owner without any shared table. The other 14 bytes are random, supplied by
//! the caller (the runtime owns the random source; tests pass fixed bytes).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Length of an id in characters.
pub const SID_LEN: usize = 20;

/// Build an id owned by `core` from 14 random bytes.
pub fn make_sid(core: u8, random: [u8; 14]) -> String {
    let mut raw = [0u8; 15];
    raw[0] = core;
    raw[1..].copy_from_slice(&random);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The core that owns an id, or `None` when the text is not an id of ours.
pub fn sid_core(sid: &str) -> Option<u8> {
    if sid.len() != SID_LEN {
        return None;
    }
    let mut raw = [0u8; 15];
    match URL_SAFE_NO_PAD.decode_slice(sid, &mut raw) {
        Ok(15) => Some(raw[0]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_carries_its_core() {
        for core in [0u8, 1, 7, 63, 255] {
            let sid = make_sid(core, [0xab; 14]);
            assert_eq!(sid.len(), SID_LEN);
            assert_eq!(sid_core(&sid), Some(core));
        }
    }

    #[test]
    fn foreign_text_is_not_a_sid() {
        assert_eq!(sid_core(""), None);
        assert_eq!(sid_core("short"), None);
        assert_eq!(sid_core("!!!!!!!!!!!!!!!!!!!!"), None);
        assert_eq!(sid_core("aaaaaaaaaaaaaaaaaaaaa"), None);
    }
}
