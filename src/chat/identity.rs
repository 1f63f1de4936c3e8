//! Who a connection is: a verified JWT in token mode, a self-declared name in development mode.
//! See docs/PROTOCOL.md section 1. Pure functions over the handshake and the current time.

use serde_json::Value;

use crate::api::{ConnectError, Handshake};
use crate::auth::{AuthError, JwtVerifier, bearer_token};

/// The identity of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name; `None` for an anonymous socket (development mode only).
    pub user: Option<String>,
    /// Seed 000's opaque `publicKey`.
    pub public_key: Option<String>,
    /// Seed 004's DM peer (`to`).
    pub peer: Option<String>,
    /// When the token expires (Unix seconds), in token mode.
    pub exp: Option<u64>,
}

/// Why a handshake is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    Token(AuthError),
    InvalidUsername,
}

impl IdentityError {
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Token(e) => e.code(),
            IdentityError::InvalidUsername => "invalid_username",
        }
    }

    pub fn message(&self) -> String {
        match self {
            IdentityError::Token(e) => e.message(),
            IdentityError::InvalidUsername => "user name must be 1 to 64 characters".to_owned(),
        }
    }

    pub fn to_connect_error(&self) -> ConnectError {
        crate::debug!("connection refused: identity"; code = self.code());
        ConnectError::new(self.message())
            .with_data(serde_json::json!({"code": self.code(), "message": self.message()}))
    }
}

/// A string field of the handshake's `auth` object, else of its query.
fn declared(auth: &Option<Value>, hs: &Handshake, name: &str) -> Option<String> {
    if let Some(Value::String(s)) = auth.as_ref().and_then(|a| a.get(name)) {
        return Some(s.clone());
    }
    hs.query(name).map(str::to_owned)
}

/// Trims a name and checks its length (in characters); empty after trimming means "not given".
pub fn clean_name(raw: &str, max_chars: usize) -> Result<Option<String>, IdentityError> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > max_chars || t.chars().any(char::is_control) {
        return Err(IdentityError::InvalidUsername);
    }
    Ok(Some(t.to_owned()))
}

/// Resolves the identity of a handshake at `now_unix_s`. With a verifier (token mode) the token
/// decides and self-declared names are ignored; without one, the declared name does.
pub fn resolve(
    hs: &Handshake,
    verifier: Option<&JwtVerifier>,
    max_name_chars: usize,
    now_unix_s: u64,
) -> Result<Identity, IdentityError> {
    let auth: Option<Value> = hs.auth();
    let public_key = declared(&auth, hs, "publicKey");
    let peer = match declared(&auth, hs, "to") {
        Some(p) => clean_name(&p, max_name_chars)?,
        None => None,
    };
    let mut exp = None;
    let user = match verifier {
        Some(v) => {
            let token = match auth.as_ref().and_then(|a| a.get("token")) {
                Some(Value::String(t)) => Some(t.clone()),
                _ => hs
                    .query("token")
                    .map(str::to_owned)
                    .or_else(|| hs.header("authorization").and_then(bearer_token).map(str::to_owned)),
            };
            let token = token.ok_or(IdentityError::Token(AuthError::Missing))?;
            let id = v.verify(&token, now_unix_s).map_err(IdentityError::Token)?;
            exp = id.exp;
            Some(clean_name(&id.user, max_name_chars)?.ok_or(IdentityError::InvalidUsername)?)
        }
        None => {
            let mut user = None;
            for name in ["username", "userId", "user"] {
                if let Some(Value::String(s)) = auth.as_ref().and_then(|a| a.get(name))
                    && let Some(u) = clean_name(s, max_name_chars)?
                {
                    user = Some(u);
                    break;
                }
            }
            if user.is_none() {
                for name in ["username", "userId", "user"] {
                    if let Some(s) = hs.query(name)
                        && let Some(u) = clean_name(s, max_name_chars)?
                    {
                        user = Some(u);
                        break;
                    }
                }
            }
            user
        }
    };
    Ok(Identity { user, public_key, peer, exp })
}

/// The DM room of two users as clients see it: `dm:<a>_<b>` with the names sorted (seed 004).
/// Names may contain `_`, so this is not unique: ("u", "x_v") and ("u_x", "v") give the same
/// string. It is a label only; [`dm_key`] names the conversation.
pub fn dm_room(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{x}_{y}")
}

/// The unambiguous key of the DM conversation of two users (broker room and store channel):
/// the first name is length-prefixed, so no two pairs share a key.
pub fn dm_key(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{}:{x}:{y}", x.len())
}

/// The peer of `me` in the DM label `pair` (`<a>_<b>` without `dm:`), if `me` is one of its
/// two users.
pub fn dm_peer<'a>(pair: &'a str, me: &str) -> Option<&'a str> {
    let candidates = [
        pair.strip_prefix(me).and_then(|r| r.strip_prefix('_')),
        pair.strip_suffix(me).and_then(|r| r.strip_suffix('_')),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|peer| !peer.is_empty() && dm_room(me, peer) == format!("dm:{pair}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  alice ", 64), Ok(Some("alice".to_owned())));
        assert_eq!(clean_name("   ", 64), Ok(None));
        assert_eq!(clean_name(&"x".repeat(65), 64), Err(IdentityError::InvalidUsername));
        assert_eq!(clean_name(&"é".repeat(64), 64), Ok(Some("é".repeat(64))), "characters, not bytes");
        assert_eq!(clean_name("a\nb", 64), Err(IdentityError::InvalidUsername));
    }

    #[test]
    fn dm_keys_are_unique_where_labels_collide() {
        assert_eq!(dm_room("u", "x_v"), dm_room("u_x", "v"), "the seed's label is ambiguous");
        assert_ne!(dm_key("u", "x_v"), dm_key("u_x", "v"));
        assert_eq!(dm_key("b", "a"), dm_key("a", "b"));
    }

    #[test]
    fn dm_peer_is_found_only_for_participants() {
        assert_eq!(dm_peer("alice_bob", "alice"), Some("bob"));
        assert_eq!(dm_peer("alice_bob", "bob"), Some("alice"));
        assert_eq!(dm_peer("alice_bob", "carol"), None);
        // "u_x_v": u with x_v, or u_x with v; never x or v_x.
        assert_eq!(dm_peer("u_x_v", "u"), Some("x_v"));
        assert_eq!(dm_peer("u_x_v", "v"), Some("u_x"));
        assert_eq!(dm_peer("u_x_v", "x"), None);
        assert_eq!(dm_peer("u_x_v", "x_v"), Some("u"));
        assert_eq!(dm_peer("alice_", "alice"), None);
    }

    #[test]
    fn dm_room_sorts_names() {
        assert_eq!(dm_room("Dummy-2", "Dummy-1"), "dm:Dummy-1_Dummy-2");
        assert_eq!(dm_room("a", "b"), dm_room("b", "a"));
    }
}
