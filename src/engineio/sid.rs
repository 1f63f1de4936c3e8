//! Session and socket ids.
//!
//! An id is 18 bytes written as 24 base64url characters. The first byte names the core that owns
//! the session, so a request that lands on another core can be handed to the owner without any
//! shared table. The other 17 bytes (136 bits) are random, supplied by the caller: the runtime
//! draws them from a CSPRNG seeded by the operating system (an Engine.IO sid is a bearer
//! credential for its polling session); tests pass fixed bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Length of an id in characters.
pub const SID_LEN: usize = 24;

/// Random bytes in an id.
pub const SID_RANDOM_BYTES: usize = 17;

/// Build an id owned by `core` from its random bytes.
pub fn make_sid(core: u8, random: [u8; SID_RANDOM_BYTES]) -> String {
    let mut raw = [0u8; SID_RANDOM_BYTES + 1];
    raw[0] = core;
    raw[1..].copy_from_slice(&random);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The core that owns an id, or `None` when the text is not an id of ours.
pub fn sid_core(sid: &str) -> Option<u8> {
    if sid.len() != SID_LEN {
        return None;
    }
    let mut raw = [0u8; SID_RANDOM_BYTES + 1];
    match URL_SAFE_NO_PAD.decode_slice(sid, &mut raw) {
        Ok(n) if n == SID_RANDOM_BYTES + 1 => Some(raw[0]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_carries_its_core() {
        for core in [0u8, 1, 7, 63, 255] {
            let sid = make_sid(core, [0xab; SID_RANDOM_BYTES]);
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
        assert_eq!(sid_core("aaaaaaaaaaaaaaaaaaaa"), None); // the reference server's length
    }
}
