//! JSON Web Token verification for the chat service's connection authentication.
//!
//! A [`JwtVerifier`] holds one key (an HMAC secret, or an RSA or EC public key in PEM) and the
//! signing algorithms it accepts. [`JwtVerifier::verify`] checks a compact JWS token
//! (`header.payload.signature`) and returns the [`Identity`] it names, or an [`AuthError`] whose
//! [`code`](AuthError::code) is the stable string sent to clients. Signatures are checked by the
//! `jsonwebtoken` crate (pure-Rust `rust_crypto` backend); the algorithm allow-list, the time
//! claims and the identity claim are checked here.
//!
//! What it checks, in this order:
//! 1. The token is non-empty ([`AuthError::Missing`]) and at most [`MAX_TOKEN_LEN`] bytes, before
//!    any parsing, so hostile input costs bounded work ([`AuthError::Malformed`]).
//! 2. Three base64url parts; the header is a JSON object with a string `alg` and no `crit`
//!    (RFC 7515 section 4.1.11: we understand no extension, so a critical one must be refused).
//! 3. `alg` is one of the configured algorithms, compared case-sensitively as RFC 7515 requires.
//!    `none`, and any algorithm of another key family, is [`AuthError::AlgorithmNotAllowed`]:
//!    the key's family is fixed when the verifier is built, never taken from the token, which
//!    rules out algorithm confusion (an HS256 token "signed" with an RSA public key as secret).
//! 4. The signature ([`AuthError::BadSignature`]); the payload is parsed only after it verifies.
//! 5. `exp` and `nbf` against the caller's `now_unix_s` with a leeway (default
//!    [`DEFAULT_LEEWAY_S`]). Both are optional; when present they must be JSON numbers (RFC 7519
//!    NumericDate), else the token is [`AuthError::Malformed`].
//! 6. The identity: the first of `username`, `name`, `sub` that is a non-empty string.
//!
//! A duplicated registered claim (`exp`, `nbf`, `sub`, `iss`, `aud`) makes the token
//! [`AuthError::Malformed`] (jsonwebtoken's claim parser refuses it); for any other duplicated
//! claim, `username` included, the last value wins.
//!
//! What it does not do: no IO (keys come in as bytes; reading `JWT_SECRET` or a PEM file is the
//! caller's job), no clock (`jsonwebtoken`'s own time checks, which read the system clock, are
//! switched off and the caller passes the time), no `aud`/`iss`/`iat` checks, no JWK sets, `kid`
//! lookup or key rotation, no encrypted tokens (JWE), and no PS*/EdDSA algorithms.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes. Longer ones are refused before any decoding. Real tokens
/// with a handful of claims are a few hundred bytes; 8 KiB is also a common header size limit.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Default clock-skew allowance applied to `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_S: u64 = 30;

/// Smallest RSA modulus accepted for a verification key, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// The signing algorithms a verifier can be configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
}

impl JwtAlg {
    /// Every supported algorithm.
    pub const ALL: [JwtAlg; 8] = [
        JwtAlg::HS256,
        JwtAlg::HS384,
        JwtAlg::HS512,
        JwtAlg::RS256,
        JwtAlg::RS384,
        JwtAlg::RS512,
        JwtAlg::ES256,
        JwtAlg::ES384,
    ];

    /// The `alg` header value (RFC 7518 section 3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlg::HS256 => "HS256",
            JwtAlg::HS384 => "HS384",
            JwtAlg::HS512 => "HS512",
            JwtAlg::RS256 => "RS256",
            JwtAlg::RS384 => "RS384",
            JwtAlg::RS512 => "RS512",
            JwtAlg::ES256 => "ES256",
            JwtAlg::ES384 => "ES384",
        }
    }

    fn family(self) -> Family {
        match self {
            JwtAlg::HS256 | JwtAlg::HS384 | JwtAlg::HS512 => Family::Hmac,
            JwtAlg::RS256 | JwtAlg::RS384 | JwtAlg::RS512 => Family::Rsa,
            JwtAlg::ES256 | JwtAlg::ES384 => Family::Ec,
        }
    }

    fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlg::HS256 => Algorithm::HS256,
            JwtAlg::HS384 => Algorithm::HS384,
            JwtAlg::HS512 => Algorithm::HS512,
            JwtAlg::RS256 => Algorithm::RS256,
            JwtAlg::RS384 => Algorithm::RS384,
            JwtAlg::RS512 => Algorithm::RS512,
            JwtAlg::ES256 => Algorithm::ES256,
            JwtAlg::ES384 => Algorithm::ES384,
        }
    }
}

impl fmt::Display for JwtAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlg {
    type Err = AuthError;

    /// Parses a configuration value such as `RS256` or `rs256`. Case-insensitive because it
    /// comes from an operator's setting, not from a token (token headers are matched exactly).
    /// An unknown name is a configuration error, so it is [`AuthError::BadKey`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        JwtAlg::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            AuthError::BadKey(format!(
                "unknown JWT algorithm {s:?}; expected one of HS256, HS384, HS512, RS256, RS384, \
                 RS512, ES256, ES384"
            ))
        })
    }
}

/// Key families; a verifier's key belongs to exactly one, and so do all its algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Hmac => "HMAC",
            Family::Rsa => "RSA",
            Family::Ec => "EC",
        }
    }
}

/// Who a verified token says the client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The `username`, else `name`, else `sub` claim.
    pub user: String,
    /// The `exp` claim in Unix seconds, if the token has one (a fractional value rounded down,
    /// a negative one clamped to 0).
    pub exp: Option<u64>,
}

/// Why a token was refused, or why a key could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token was given.
    Missing,
    /// Not a well-formed JWS: wrong shape, bad base64 or JSON, longer than [`MAX_TOKEN_LEN`], a
    /// `crit` header, or an `exp`/`nbf` claim that is not a number.
    Malformed,
    /// The signature does not verify with the configured key.
    BadSignature,
    /// The header's `alg` is not one of the configured algorithms (this includes `none`).
    AlgorithmNotAllowed,
    /// `exp` has passed, beyond the leeway.
    Expired,
    /// `nbf` is still in the future, beyond the leeway.
    NotYetValid,
    /// None of `username`, `name`, `sub` is a non-empty string.
    NoIdentity,
    /// The server's key or algorithm configuration is unusable. The text describes the key
    /// configuration only, never a token.
    BadKey(String),
}

impl AuthError {
    /// Stable machine code sent to clients in CONNECT_ERROR data and HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed => "malformed_token",
            AuthError::BadSignature => "invalid_signature",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::NoIdentity => "no_identity",
            AuthError::BadKey(_) => "bad_key",
        }
    }

    /// A short human sentence. It never contains the token: none of the variants carries token
    /// text, and `BadKey`'s detail is written by this module about the key configuration.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "no authentication token was given".to_owned(),
            AuthError::Malformed => "the authentication token is not a well-formed JWT".to_owned(),
            AuthError::BadSignature => "the authentication token's signature is not valid".to_owned(),
            AuthError::AlgorithmNotAllowed => {
                "the authentication token's signing algorithm is not accepted".to_owned()
            }
            AuthError::Expired => "the authentication token has expired".to_owned(),
            AuthError::NotYetValid => "the authentication token is not valid yet".to_owned(),
            AuthError::NoIdentity => {
                "the authentication token names no user (no username, name or sub claim)".to_owned()
            }
            AuthError::BadKey(detail) => format!("the server's token key is unusable: {detail}"),
        }
    }

    /// HTTP status: 401 for every token problem, 500 for a server key problem.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::BadKey(_) => 500,
            _ => 401,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for AuthError {}

/// Verifies tokens against one key and a set of algorithms of that key's family.
#[derive(Clone, Debug)]
pub struct JwtVerifier {
    key: DecodingKey,
    family: Family,
    algorithms: Vec<JwtAlg>,
    leeway_s: u64,
    /// HMAC with an empty secret "verifies" tokens that anyone can forge. The constructor cannot
    /// fail, so the refusal happens in `verify`, as `BadKey` (a server error, not a token error).
    empty_secret: bool,
}

impl JwtVerifier {
    /// HMAC secret (`JWT_SECRET`); accepts exactly HS256 unless [`with_algorithms`] says
    /// otherwise (HMAC family only). An empty secret makes every `verify` fail with `BadKey`.
    ///
    /// [`with_algorithms`]: JwtVerifier::with_algorithms
    pub fn hmac(secret: &[u8]) -> Self {
        JwtVerifier {
            key: DecodingKey::from_secret(secret),
            family: Family::Hmac,
            algorithms: vec![JwtAlg::HS256],
            leeway_s: DEFAULT_LEEWAY_S,
            empty_secret: secret.is_empty(),
        }
    }

    /// RSA or EC public key in PEM (the file's content: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY`
    /// (PKCS#1)). `alg` must match the key: RS* for RSA (at least [`MIN_RSA_BITS`] bits), ES256
    /// for a P-256 key, ES384 for a P-384 key. Anything else, including a private key, an HMAC
    /// algorithm or unparsable PEM, is `Err(AuthError::BadKey)`.
    pub fn from_public_key_pem(pem: &[u8], alg: JwtAlg) -> Result<Self, AuthError> {
        let family = alg.family();
        if family == Family::Hmac {
            return Err(AuthError::BadKey(format!(
                "{alg} uses a shared secret, not a public key; use an RS* or ES* algorithm"
            )));
        }
        if pem_label(pem).is_some_and(|label| contains(label, b"PRIVATE")) {
            // jsonwebtoken would take some private keys and then fail every signature; say so.
            return Err(AuthError::BadKey(
                "the PEM holds a private key; the verifier needs the public key".to_owned(),
            ));
        }
        let parsed = match family {
            Family::Rsa => DecodingKey::from_rsa_pem(pem),
            _ => DecodingKey::from_ec_pem(pem),
        };
        let key = parsed.map_err(|_| {
            AuthError::BadKey(format!("not an {} public key in PEM, which {alg} needs", family.name()))
        })?;
        if family == Family::Rsa {
            check_rsa_key(&key)?;
        }
        let verifier = JwtVerifier {
            key,
            family,
            algorithms: Vec::new(),
            leeway_s: DEFAULT_LEEWAY_S,
            empty_secret: false,
        };
        verifier.with_algorithms(&[alg])
    }

    /// Clock-skew allowance for `exp` and `nbf`, in seconds (default [`DEFAULT_LEEWAY_S`]).
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway_s = seconds;
        self
    }

    /// Replaces the accepted algorithms. They must all belong to the key's family (and, for an
    /// EC key, to its curve), and the list must not be empty; otherwise `BadKey`. Duplicates
    /// are dropped.
    pub fn with_algorithms(mut self, algs: &[JwtAlg]) -> Result<Self, AuthError> {
        if algs.is_empty() {
            return Err(AuthError::BadKey("no JWT algorithm is configured".to_owned()));
        }
        let mut kept = Vec::with_capacity(algs.len());
        for &alg in algs {
            if alg.family() != self.family {
                return Err(AuthError::BadKey(format!(
                    "{alg} does not fit the configured {} key; one key serves one algorithm family",
                    self.family.name()
                )));
            }
            // Building a verifier parses the key for this algorithm: an EC key on the wrong
            // curve fails here rather than making every token fail later. The signature is
            // empty, so the answer itself is always "does not verify".
            if jsonwebtoken::crypto::verify("", b"", &self.key, alg.to_jwt()).is_err() {
                return Err(AuthError::BadKey(match alg {
                    JwtAlg::ES256 => "ES256 needs a P-256 key".to_owned(),
                    JwtAlg::ES384 => "ES384 needs a P-384 key".to_owned(),
                    _ => format!("the configured key cannot verify {alg}"),
                }));
            }
            if !kept.contains(&alg) {
                kept.push(alg);
            }
        }
        self.algorithms = kept;
        Ok(self)
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[JwtAlg] {
        &self.algorithms
    }

    /// The leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway_s
    }

    /// Verifies `token` at time `now_unix_s` and returns who it names. See the module
    /// documentation for the checks and their order. Never panics.
    ///
    /// Time rules (RFC 7519 sections 4.1.4 and 4.1.5, widened by the leeway `L`): the token is
    /// valid while `now < exp + L` and once `now + L >= nbf`.
    pub fn verify(&self, token: &str, now_unix_s: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        if self.empty_secret {
            return Err(AuthError::BadKey("the HMAC secret is empty".to_owned()));
        }

        let mut parts = token.split('.');
        let (Some(header), Some(_payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let alg = self.header_alg(header)?;

        // jsonwebtoken checks the signature before it decodes the payload. Its time and claim
        // checks are all off: `exp`, `nbf` and the identity are checked below against the
        // caller's clock, and the system clock is never read.
        let mut validation = Validation::new(alg.to_jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &validation)
            .map_err(|e| map_decode_error(e.kind()))?
            .claims;

        let exp = numeric_date(&claims, "exp", Round::Down)?;
        let nbf = numeric_date(&claims, "nbf", Round::Up)?;
        if let Some(exp) = exp
            && now_unix_s >= exp.saturating_add(self.leeway_s)
        {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = nbf
            && now_unix_s.saturating_add(self.leeway_s) < nbf
        {
            return Err(AuthError::NotYetValid);
        }
        let user = identity(&claims).ok_or(AuthError::NoIdentity)?;
        Ok(Identity { user, exp })
    }

    /// The header's `alg`, if it is one of ours. Parsed here rather than by jsonwebtoken so that
    /// `none` and unknown names are told apart from a broken header: jsonwebtoken's `Header`
    /// fails to deserialize both alike.
    fn header_alg(&self, encoded: &str) -> Result<JwtAlg, AuthError> {
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| AuthError::Malformed)?;
        let header: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        if header.contains_key("crit") {
            return Err(AuthError::Malformed);
        }
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(AuthError::Malformed);
        };
        self.algorithms.iter().copied().find(|a| a.as_str() == alg).ok_or(AuthError::AlgorithmNotAllowed)
    }
}

fn map_decode_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed,
        // Time checks are off, so these two do not occur; mapped for completeness.
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        // The key was checked for every configured algorithm when the verifier was built, and
        // only those algorithms get this far, so a token cannot cause these.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::UnsupportedAlgorithm => {
            AuthError::BadKey("the configured key could not be used to verify a token".to_owned())
        }
        // Shape, base64, JSON and UTF-8 errors, and anything a later jsonwebtoken adds.
        _ => AuthError::Malformed,
    }
}

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A NumericDate claim (RFC 7519 section 2: seconds, possibly fractional). Absent: `None`.
/// Present but not a number (a string, `null`, ...): `Malformed`. A fraction is rounded the way
/// that makes the token valid for less time: `exp` down, `nbf` up. Out-of-range values saturate
/// (negative to 0, huge to `u64::MAX`).
fn numeric_date(claims: &Map<String, Value>, name: &str, round: Round) -> Result<Option<u64>, AuthError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(AuthError::Malformed);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    if n.is_i64() {
        return Ok(Some(0));
    }
    let f = n.as_f64().ok_or(AuthError::Malformed)?;
    let rounded = match round {
        Round::Down => f.floor(),
        Round::Up => f.ceil(),
    };
    // `as` saturates: negative to 0, beyond u64::MAX to u64::MAX (JSON has no NaN or infinity).
    Ok(Some(rounded as u64))
}

/// The first of `username`, `name`, `sub` that is a non-empty string.
fn identity(claims: &Map<String, Value>) -> Option<String> {
    ["username", "name", "sub"].into_iter().find_map(|claim| match claims.get(claim) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// Refuses RSA keys that do not parse as a public key or are too short. jsonwebtoken's RSA
/// verifier re-parses the key on each call and reports a bad key as a bad signature, which
/// would hide the misconfiguration behind every client's `invalid_signature`.
fn check_rsa_key(key: &DecodingKey) -> Result<(), AuthError> {
    let jwk = Jwk::from_decoding_key(key, None)
        .map_err(|_| AuthError::BadKey("the PEM does not hold a valid RSA public key".to_owned()))?;
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return Err(AuthError::BadKey("the PEM does not hold an RSA public key".to_owned()));
    };
    let modulus = URL_SAFE_NO_PAD
        .decode(&rsa.n)
        .map_err(|_| AuthError::BadKey("the RSA public key's modulus is unreadable".to_owned()))?;
    let bits = modulus_bits(&modulus);
    if bits < MIN_RSA_BITS {
        return Err(AuthError::BadKey(format!(
            "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        )));
    }
    Ok(())
}

/// Bit length of a big-endian unsigned integer.
fn modulus_bits(be: &[u8]) -> usize {
    let Some(first) = be.iter().position(|&b| b != 0) else {
        return 0;
    };
    (be.len() - first - 1) * 8 + (8 - be[first].leading_zeros() as usize)
}

/// The label of the first `-----BEGIN <label>-----` line, if any.
fn pem_label(pem: &[u8]) -> Option<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let start = pem.windows(BEGIN.len()).position(|w| w == BEGIN)? + BEGIN.len();
    let rest = &pem[start..];
    let end = rest.windows(5).position(|w| w == b"-----")?;
    Some(&rest[..end])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Mints an HS256 development token: claims `{sub: user, username: user, iat: now, exp: now +
/// ttl_s}` (the sum saturates).
pub fn mint_hs256(secret: &[u8], user: &str, now_unix_s: u64, ttl_s: u64) -> String {
    let claims = serde_json::json!({
        "sub": user,
        "username": user,
        "iat": now_unix_s,
        "exp": now_unix_s.saturating_add(ttl_s),
    });
    // Cannot fail: HMAC takes a key of any length (empty included), the header and key are both
    // HMAC, and a JSON value always serializes.
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing with an HMAC key cannot fail")
}

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 section 2.1): the
/// scheme is case-insensitive and surrounding spaces are trimmed. `None` for another scheme, an
/// empty token, or a "token" with whitespace inside.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, rest) = header_value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use jsonwebtoken::{EncodingKey, Header, encode};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The jwt.io example token, signed with the HMAC secret `your-256-bit-secret`. Its claims
    /// are `{"sub":"1234567890","name":"John Doe","iat":1516239022}`: no `username`, no `exp`.
    const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gR\
                          G9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    // Test-only key pairs; see testdata/README.md.
    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("testdata/rsa_public.pem");
    const RSA1024_PUBLIC: &[u8] = include_bytes!("testdata/rsa1024_public.pem");
    const EC256_PRIVATE: &[u8] = include_bytes!("testdata/ec_p256_private.pem");
    const EC256_PUBLIC: &[u8] = include_bytes!("testdata/ec_p256_public.pem");
    const EC384_PRIVATE: &[u8] = include_bytes!("testdata/ec_p384_private.pem");
    const EC384_PUBLIC: &[u8] = include_bytes!("testdata/ec_p384_public.pem");

    const SECRET: &[u8] = b"test-secret-of-reasonable-length";
    const NOW: u64 = 1_700_000_000;

    static HMAC: LazyLock<JwtVerifier> = LazyLock::new(|| JwtVerifier::hmac(SECRET));
    static RSA: LazyLock<JwtVerifier> = LazyLock::new(|| {
        JwtVerifier::from_public_key_pem(RSA_PUBLIC, JwtAlg::RS256)
            .unwrap()
            .with_algorithms(&[JwtAlg::RS256, JwtAlg::RS384, JwtAlg::RS512])
            .unwrap()
    });
    static EC256: LazyLock<JwtVerifier> =
        LazyLock::new(|| JwtVerifier::from_public_key_pem(EC256_PUBLIC, JwtAlg::ES256).unwrap());

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs256(secret: &[u8], claims: &Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(secret), claims)
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
    }

    fn ec256_key() -> EncodingKey {
        EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap()
    }

    /// A token from raw header and payload text, with a correct HS256 signature over them
    /// whatever the header says.
    fn raw_hs256(header: &str, payload: &str, secret: &[u8]) -> String {
        let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let key = EncodingKey::from_secret(secret);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{message}.{signature}")
    }

    fn user(name: &str, exp: Option<u64>) -> Result<Identity, AuthError> {
        Ok(Identity { user: name.to_owned(), exp })
    }

    fn verify_claims(claims: Value, now: u64) -> Result<Identity, AuthError> {
        HMAC.verify(&hs256(SECRET, &claims), now)
    }

    // --- the jwt.io example ---

    #[test]
    fn jwt_io_example_verifies_with_its_secret_and_names_john_doe() {
        let verifier = JwtVerifier::hmac(b"your-256-bit-secret");
        // `name` is used because there is no `username`; it has no `exp`, so any time will do.
        assert_eq!(verifier.verify(JWT_IO, NOW), user("John Doe", None));
        assert_eq!(verifier.verify(JWT_IO, u64::MAX), user("John Doe", None));
    }

    #[test]
    fn jwt_io_example_is_a_bad_signature_under_another_secret() {
        assert_eq!(JwtVerifier::hmac(b"s3cr3t").verify(JWT_IO, NOW), Err(AuthError::BadSignature));
    }

    // --- minting and identity ---

    #[test]
    fn minted_token_round_trips() {
        let token = mint_hs256(SECRET, "alice", NOW, 3600);
        assert_eq!(HMAC.verify(&token, NOW), user("alice", Some(NOW + 3600)));
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert_eq!(claims, json!({"sub": "alice", "username": "alice", "iat": NOW, "exp": NOW + 3600}));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.typ.as_deref()), (Algorithm::HS256, Some("JWT")));
        // Expires after the TTL plus the leeway, and not under another secret.
        assert_eq!(HMAC.verify(&token, NOW + 3600 + DEFAULT_LEEWAY_S), Err(AuthError::Expired));
        assert_eq!(JwtVerifier::hmac(b"other").verify(&token, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn minting_saturates_the_expiry() {
        let token = mint_hs256(SECRET, "bob", u64::MAX - 1, 10);
        assert_eq!(HMAC.verify(&token, u64::MAX - 100), user("bob", Some(u64::MAX)));
    }

    #[test]
    fn identity_prefers_username_then_name_then_sub() {
        assert_eq!(verify_claims(json!({"username": "u", "name": "n", "sub": "s"}), NOW), user("u", None));
        assert_eq!(verify_claims(json!({"name": "n", "sub": "s"}), NOW), user("n", None));
        assert_eq!(verify_claims(json!({"sub": "s"}), NOW), user("s", None));
        assert_eq!(verify_claims(json!({"sub": "s", "username": "u"}), NOW), user("u", None));
    }

    #[test]
    fn empty_and_non_string_identity_claims_are_skipped() {
        assert_eq!(verify_claims(json!({"username": "", "name": 42, "sub": "s"}), NOW), user("s", None));
        assert_eq!(verify_claims(json!({"username": null, "name": "n"}), NOW), user("n", None));
        assert_eq!(
            verify_claims(json!({"username": ["a"], "name": {"first": "x"}, "sub": "ok"}), NOW),
            user("ok", None)
        );
        assert_eq!(verify_claims(json!({"username": true, "name": "", "sub": "s"}), NOW), user("s", None));
    }

    #[test]
    fn no_usable_identity_claim_is_no_identity() {
        assert_eq!(verify_claims(json!({}), NOW), Err(AuthError::NoIdentity));
        assert_eq!(verify_claims(json!({"iat": NOW, "email": "a@b"}), NOW), Err(AuthError::NoIdentity));
        assert_eq!(
            verify_claims(json!({"username": "", "name": "", "sub": 1234567890}), NOW),
            Err(AuthError::NoIdentity)
        );
    }

    // --- time ---

    #[test]
    fn expiry_honours_the_leeway() {
        let at = |exp: u64| verify_claims(json!({"sub": "s", "exp": exp}), NOW);
        assert_eq!(at(NOW - 31), Err(AuthError::Expired));
        // Valid while now < exp + leeway (RFC 7519: "before" exp), so the boundary is expired.
        assert_eq!(at(NOW - 30), Err(AuthError::Expired));
        assert_eq!(at(NOW - 29), user("s", Some(NOW - 29)));
        assert_eq!(at(NOW + 3600), user("s", Some(NOW + 3600)));

        let strict = JwtVerifier::hmac(SECRET).with_leeway(0);
        assert_eq!(strict.leeway(), 0);
        let token = hs256(SECRET, &json!({"sub": "s", "exp": NOW}));
        assert_eq!(strict.verify(&token, NOW), Err(AuthError::Expired));
        assert_eq!(strict.verify(&token, NOW - 1), user("s", Some(NOW)));
    }

    #[test]
    fn not_before_honours_the_leeway() {
        let at = |nbf: u64| verify_claims(json!({"sub": "s", "nbf": nbf}), NOW);
        assert_eq!(at(NOW + 31), Err(AuthError::NotYetValid));
        assert_eq!(at(NOW + 30), user("s", None));
        assert_eq!(at(NOW - 1000), user("s", None));

        let strict = JwtVerifier::hmac(SECRET).with_leeway(0);
        let token = hs256(SECRET, &json!({"sub": "s", "nbf": NOW}));
        assert_eq!(strict.verify(&token, NOW - 1), Err(AuthError::NotYetValid));
        assert_eq!(strict.verify(&token, NOW), user("s", None));
    }

    #[test]
    fn the_given_time_is_used_not_the_system_clock() {
        // Long expired by the real clock, valid at the time passed in.
        let old = hs256(SECRET, &json!({"sub": "s", "exp": 100, "nbf": 50}));
        assert_eq!(HMAC.verify(&old, 60), user("s", Some(100)));
        assert_eq!(HMAC.verify(&old, 10), Err(AuthError::NotYetValid));
        // Far in the future by the real clock, expired at the time passed in.
        let future = hs256(SECRET, &json!({"sub": "s", "exp": 4_000_000_000u64}));
        assert_eq!(HMAC.verify(&future, 4_000_000_100), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_without_exp_is_accepted() {
        assert_eq!(verify_claims(json!({"sub": "s", "iat": 1}), u64::MAX), user("s", None));
    }

    #[test]
    fn non_numeric_exp_or_nbf_is_malformed() {
        for bad in [json!("1700000000"), json!(null), json!(true), json!({}), json!([NOW])] {
            assert_eq!(
                verify_claims(json!({"sub": "s", "exp": bad}), NOW),
                Err(AuthError::Malformed),
                "{bad}"
            );
            assert_eq!(
                verify_claims(json!({"sub": "s", "nbf": bad}), NOW),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn fractional_negative_and_huge_numeric_dates() {
        // A fraction shortens validity: exp rounds down, nbf rounds up.
        let token = hs256(SECRET, &json!({"sub": "s", "exp": 100.9}));
        assert_eq!(HMAC.verify(&token, 129), user("s", Some(100)));
        assert_eq!(HMAC.verify(&token, 130), Err(AuthError::Expired));
        let token = hs256(SECRET, &json!({"sub": "s", "nbf": 100.1}));
        assert_eq!(HMAC.verify(&token, 70), Err(AuthError::NotYetValid));
        assert_eq!(HMAC.verify(&token, 71), user("s", None));
        // Before the epoch: clamped to 0.
        let token = hs256(SECRET, &json!({"sub": "s", "exp": -5}));
        assert_eq!(HMAC.verify(&token, 0), user("s", Some(0)));
        assert_eq!(HMAC.verify(&token, 30), Err(AuthError::Expired));
        // Beyond u64: saturates, and nothing overflows at the far end of time.
        let token = hs256(SECRET, &json!({"sub": "s", "exp": 1e300, "nbf": -1e300}));
        assert_eq!(HMAC.verify(&token, u64::MAX - 1), user("s", Some(u64::MAX)));
        assert_eq!(HMAC.verify(&token, u64::MAX), Err(AuthError::Expired));
        let token = hs256(SECRET, &json!({"sub": "s", "nbf": 1e300}));
        assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::NotYetValid));
        // At the end of time `now + leeway` saturates and reaches the saturated nbf.
        assert_eq!(HMAC.verify(&token, u64::MAX), user("s", None));
    }

    // --- algorithms ---

    #[test]
    fn alg_none_is_refused() {
        let payload = b64(br#"{"sub":"admin"}"#);
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            // Unsigned, and with a signature that verifies under the HMAC secret.
            let unsigned = format!("{header}.{payload}.");
            let signed = raw_hs256(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"sub":"admin"}"#, SECRET);
            for verifier in [&*HMAC, &*RSA, &*EC256] {
                assert_eq!(verifier.verify(&unsigned, NOW), Err(AuthError::AlgorithmNotAllowed), "{alg}");
                assert_eq!(verifier.verify(&signed, NOW), Err(AuthError::AlgorithmNotAllowed), "{alg}");
            }
        }
    }

    #[test]
    fn header_alg_is_matched_case_sensitively() {
        // RFC 7515 section 4.1.1: "alg" is a case-sensitive string.
        let token = raw_hs256(r#"{"alg":"hs256"}"#, r#"{"sub":"s"}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
        let token = raw_hs256(r#"{"alg":"HS256"}"#, r#"{"sub":"s"}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), user("s", None));
    }

    #[test]
    fn unsupported_algorithms_are_not_allowed() {
        for alg in ["PS256", "EdDSA", "HS1", "RS1", ""] {
            let token = raw_hs256(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"sub":"s"}"#, SECRET);
            for verifier in [&*HMAC, &*RSA, &*EC256] {
                assert_eq!(verifier.verify(&token, NOW), Err(AuthError::AlgorithmNotAllowed), "{alg}");
            }
        }
    }

    #[test]
    fn hs256_token_is_refused_by_an_rs256_verifier() {
        let token = hs256(SECRET, &json!({"sub": "s"}));
        let rs256 = JwtVerifier::from_public_key_pem(RSA_PUBLIC, JwtAlg::RS256).unwrap();
        assert_eq!(rs256.verify(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(RSA.verify(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(EC256.verify(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn hmac_token_forged_with_the_rsa_public_key_as_secret_is_refused() {
        // The classic algorithm confusion attack: the attacker knows the public key, signs an
        // HS256 token with its PEM bytes as the HMAC secret, and hopes the server feeds the
        // same bytes to HMAC because the header says HS256.
        let forged = hs256(RSA_PUBLIC, &json!({"sub": "admin", "username": "admin"}));
        let rs256 = JwtVerifier::from_public_key_pem(RSA_PUBLIC, JwtAlg::RS256).unwrap();
        assert_eq!(rs256.verify(&forged, NOW), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(RSA.verify(&forged, NOW), Err(AuthError::AlgorithmNotAllowed));
        // Same attack against the EC key.
        let forged = hs256(EC256_PUBLIC, &json!({"sub": "admin"}));
        assert_eq!(EC256.verify(&forged, NOW), Err(AuthError::AlgorithmNotAllowed));
        // And the verifier cannot be talked into HMAC with a public key.
        assert!(matches!(rs256.with_algorithms(&[JwtAlg::HS256]), Err(AuthError::BadKey(_))));
        assert!(matches!(
            JwtVerifier::from_public_key_pem(RSA_PUBLIC, JwtAlg::HS256),
            Err(AuthError::BadKey(_))
        ));
    }

    #[test]
    fn tokens_of_another_public_key_family_are_refused() {
        let rs = sign(Algorithm::RS256, &rsa_key(), &json!({"sub": "s"}));
        let es = sign(Algorithm::ES256, &ec256_key(), &json!({"sub": "s"}));
        assert_eq!(HMAC.verify(&rs, NOW), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(EC256.verify(&rs, NOW), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(HMAC.verify(&es, NOW), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(RSA.verify(&es, NOW), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn only_the_configured_hmac_algorithms_are_accepted() {
        let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET), &json!({"sub": "s"}));
        assert_eq!(HMAC.algorithms(), [JwtAlg::HS256]);
        assert_eq!(HMAC.verify(&hs512, NOW), Err(AuthError::AlgorithmNotAllowed));
        let only_512 = JwtVerifier::hmac(SECRET).with_algorithms(&[JwtAlg::HS512]).unwrap();
        assert_eq!(only_512.verify(&hs512, NOW), user("s", None));
        let hs256 = hs256(SECRET, &json!({"sub": "s"}));
        assert_eq!(only_512.verify(&hs256, NOW), Err(AuthError::AlgorithmNotAllowed));
    }

    // --- RSA and EC keys ---

    #[test]
    fn rs256_rs384_rs512_tokens_verify_with_the_public_key() {
        let rs256_only = JwtVerifier::from_public_key_pem(RSA_PUBLIC, JwtAlg::RS256).unwrap();
        assert_eq!(rs256_only.algorithms(), [JwtAlg::RS256]);
        for (alg, jalg) in [
            (Algorithm::RS256, JwtAlg::RS256),
            (Algorithm::RS384, JwtAlg::RS384),
            (Algorithm::RS512, JwtAlg::RS512),
        ] {
            let token = sign(alg, &rsa_key(), &json!({"username": "rosa", "exp": NOW + 60}));
            assert_eq!(RSA.verify(&token, NOW), user("rosa", Some(NOW + 60)), "{jalg}");
            assert_eq!(RSA.verify(&token, NOW + 90), Err(AuthError::Expired), "{jalg}");
            let expected = if jalg == JwtAlg::RS256 {
                user("rosa", Some(NOW + 60))
            } else {
                Err(AuthError::AlgorithmNotAllowed)
            };
            assert_eq!(rs256_only.verify(&token, NOW), expected, "{jalg}");
        }
    }

    #[test]
    fn es256_and_es384_tokens_verify_with_the_public_key() {
        let token = sign(Algorithm::ES256, &ec256_key(), &json!({"name": "eve", "nbf": NOW}));
        assert_eq!(EC256.verify(&token, NOW), user("eve", None));
        assert_eq!(EC256.verify(&token, NOW - 100), Err(AuthError::NotYetValid));

        let ec384 = JwtVerifier::from_public_key_pem(EC384_PUBLIC, JwtAlg::ES384).unwrap();
        let key = EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap();
        let token = sign(Algorithm::ES384, &key, &json!({"sub": "p384"}));
        assert_eq!(ec384.verify(&token, NOW), user("p384", None));
        assert_eq!(EC256.verify(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn tampered_payloads_and_signatures_are_bad_signatures() {
        let claims = json!({"sub": "alice", "exp": NOW + 60});
        let cases = [
            (&*HMAC, hs256(SECRET, &claims)),
            (&*RSA, sign(Algorithm::RS256, &rsa_key(), &claims)),
            (&*EC256, sign(Algorithm::ES256, &ec256_key(), &claims)),
        ];
        for (verifier, token) in cases {
            assert_eq!(verifier.verify(&token, NOW), user("alice", Some(NOW + 60)));
            let parts: Vec<&str> = token.split('.').collect();
            // Another payload under the original signature.
            let payload = b64(br#"{"sub":"mallory","exp":1800000000}"#);
            let swapped = format!("{}.{payload}.{}", parts[0], parts[2]);
            assert_eq!(verifier.verify(&swapped, NOW), Err(AuthError::BadSignature), "{token}");
            // A payload that is not even JSON: the signature is checked first.
            let garbage = format!("{}.{}.{}", parts[0], b64(b"not json"), parts[2]);
            assert_eq!(verifier.verify(&garbage, NOW), Err(AuthError::BadSignature), "{token}");
            // One changed signature character (the first, so the base64 stays canonical).
            let mut signature = parts[2].to_owned();
            let first = if signature.starts_with('A') { "B" } else { "A" };
            signature.replace_range(0..1, first);
            let resigned = format!("{}.{}.{signature}", parts[0], parts[1]);
            assert_eq!(verifier.verify(&resigned, NOW), Err(AuthError::BadSignature), "{token}");
            // A truncated or empty signature.
            let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..8]);
            assert_eq!(verifier.verify(&short, NOW), Err(AuthError::BadSignature), "{token}");
            let empty = format!("{}.{}.", parts[0], parts[1]);
            assert_eq!(verifier.verify(&empty, NOW), Err(AuthError::BadSignature), "{token}");
        }
    }

    #[test]
    fn key_and_algorithm_mismatch_is_bad_key() {
        let cases: [(&[u8], JwtAlg); 9] = [
            (RSA_PUBLIC, JwtAlg::ES256),
            (RSA_PUBLIC, JwtAlg::HS256),
            (EC256_PUBLIC, JwtAlg::RS256),
            (EC256_PUBLIC, JwtAlg::ES384),
            (EC384_PUBLIC, JwtAlg::ES256),
            (EC256_PUBLIC, JwtAlg::HS512),
            (b"", JwtAlg::RS256),
            (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", JwtAlg::ES256),
            (b"not a pem at all \xff\xfe", JwtAlg::RS512),
        ];
        for (pem, alg) in cases {
            let result = JwtVerifier::from_public_key_pem(pem, alg);
            assert!(matches!(result, Err(AuthError::BadKey(_))), "{alg}: {result:?}");
        }
    }

    #[test]
    fn private_keys_and_short_rsa_keys_are_bad_keys() {
        for (pem, alg) in [(RSA_PRIVATE, JwtAlg::RS256), (EC256_PRIVATE, JwtAlg::ES256)] {
            let Err(AuthError::BadKey(detail)) = JwtVerifier::from_public_key_pem(pem, alg) else {
                panic!("{alg}: a private key was accepted");
            };
            assert!(detail.contains("private key"), "{detail}");
        }
        let Err(AuthError::BadKey(detail)) = JwtVerifier::from_public_key_pem(RSA1024_PUBLIC, JwtAlg::RS256)
        else {
            panic!("a 1024-bit RSA key was accepted");
        };
        assert!(detail.contains("1024 bits"), "{detail}");
    }

    #[test]
    fn with_algorithms_stays_within_the_key_family() {
        let all_hmac = JwtVerifier::hmac(SECRET).with_algorithms(&[
            JwtAlg::HS512,
            JwtAlg::HS256,
            JwtAlg::HS384,
            JwtAlg::HS256,
        ]);
        assert_eq!(all_hmac.unwrap().algorithms(), [JwtAlg::HS512, JwtAlg::HS256, JwtAlg::HS384]);
        let bad = |r: Result<JwtVerifier, AuthError>| matches!(r, Err(AuthError::BadKey(_)));
        assert!(bad(JwtVerifier::hmac(SECRET).with_algorithms(&[])));
        assert!(bad(JwtVerifier::hmac(SECRET).with_algorithms(&[JwtAlg::HS256, JwtAlg::RS256])));
        assert!(bad(RSA.clone().with_algorithms(&[JwtAlg::RS256, JwtAlg::ES256])));
        assert!(bad(EC256.clone().with_algorithms(&[JwtAlg::ES256, JwtAlg::ES384])));
        assert!(bad(EC256.clone().with_algorithms(&[JwtAlg::HS256])));
    }

    #[test]
    fn an_empty_hmac_secret_is_a_key_error_not_a_token_error() {
        // Anyone can forge a token "signed" with the empty secret.
        let forged = hs256(b"", &json!({"sub": "admin"}));
        let err = JwtVerifier::hmac(b"").verify(&forged, NOW).unwrap_err();
        assert!(matches!(err, AuthError::BadKey(_)));
        assert_eq!(err.http_status(), 500);
        // A missing token is still reported as such.
        assert_eq!(JwtVerifier::hmac(b"").verify("", NOW), Err(AuthError::Missing));
    }

    // --- malformed input ---

    #[test]
    fn an_empty_token_is_missing() {
        assert_eq!(HMAC.verify("", NOW), Err(AuthError::Missing));
    }

    #[test]
    fn garbage_is_malformed() {
        let valid = hs256(SECRET, &json!({"sub": "s"}));
        let parts: Vec<&str> = valid.split('.').collect();
        let cases = [
            "garbage".to_owned(),
            " ".to_owned(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            "a.b".to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{valid}.extra"),
            format!("{valid}."),
            "!!!.###.$$$".to_owned(),
            "é.è.ê".to_owned(),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!(" {valid}"),
            format!("{valid}\n"),
            // Standard base64 (`+/`) instead of base64url.
            format!("{}.{}.{}", parts[0], parts[1], parts[2].replace('-', "+").replace('_', "/") + "+/"),
            // Headers that decode but are not usable.
            format!("{}.{}.{}", b64(b"[]"), parts[1], parts[2]),
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            format!("{}.{}.{}", b64(br#"{"typ":"JWT"}"#), parts[1], parts[2]),
            format!("{}.{}.{}", b64(br#"{"alg":256}"#), parts[1], parts[2]),
            format!("{}.{}.{}", b64(br#"{"alg":null}"#), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&[0xff, 0xfe]), parts[1], parts[2]),
        ];
        for token in &cases {
            assert_eq!(HMAC.verify(token, NOW), Err(AuthError::Malformed), "{token:?}");
        }
    }

    #[test]
    fn correctly_signed_but_malformed_parts_are_malformed() {
        // Payloads that are not JSON objects, under valid signatures.
        for payload in ["not json", "[]", "\"sub\"", "42", "null", r#"{"sub":"s""#] {
            let token = raw_hs256(r#"{"alg":"HS256"}"#, payload, SECRET);
            assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::Malformed), "{payload}");
        }
        // A header field of the wrong type, which jsonwebtoken's header parser refuses.
        let token = raw_hs256(r#"{"alg":"HS256","typ":7}"#, r#"{"sub":"s"}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn duplicated_claims() {
        // jsonwebtoken's claim parser refuses a duplicated registered claim (RFC 7519 section 4
        // allows rejecting duplicates); other duplicates keep the last value, as serde_json does.
        let token = raw_hs256(r#"{"alg":"HS256"}"#, r#"{"sub":"s","exp":1,"exp":4000000000}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::Malformed));
        let token = raw_hs256(r#"{"alg":"HS256"}"#, r#"{"username":"a","username":"b"}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), user("b", None));
    }

    #[test]
    fn a_critical_header_extension_is_refused() {
        // RFC 7515 section 4.1.11: a recipient that does not understand a listed extension must
        // reject the token. RFC 7797's unencoded payload (b64: false) is such an extension.
        let token = raw_hs256(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, r#"{"sub":"s"}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::Malformed));
        let token = raw_hs256(r#"{"alg":"HS256","crit":[]}"#, r#"{"sub":"s"}"#, SECRET);
        assert_eq!(HMAC.verify(&token, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn tokens_over_8_kib_are_refused_before_parsing() {
        assert_eq!(HMAC.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW), Err(AuthError::Malformed));
        assert_eq!(HMAC.verify(&".".repeat(1 << 20), NOW), Err(AuthError::Malformed));
        // Validly signed tokens on either side of the limit.
        let padded = |n: usize| hs256(SECRET, &json!({"sub": "s", "pad": "x".repeat(n)}));
        let mut n = 5000;
        while padded(n + 1).len() <= MAX_TOKEN_LEN {
            n += 1;
        }
        let (fits, over) = (padded(n), padded(n + 1));
        assert!(fits.len() <= MAX_TOKEN_LEN && fits.len() > MAX_TOKEN_LEN - 4, "{}", fits.len());
        assert_eq!(HMAC.verify(&fits, NOW), user("s", None));
        assert_eq!(HMAC.verify(&over, NOW), Err(AuthError::Malformed));
    }

    // --- errors, algorithm names, bearer headers ---

    #[test]
    fn error_codes_and_statuses_are_stable() {
        let table = [
            (AuthError::Missing, "missing_token", 401),
            (AuthError::Malformed, "malformed_token", 401),
            (AuthError::BadSignature, "invalid_signature", 401),
            (AuthError::AlgorithmNotAllowed, "algorithm_not_allowed", 401),
            (AuthError::Expired, "token_expired", 401),
            (AuthError::NotYetValid, "token_not_yet_valid", 401),
            (AuthError::NoIdentity, "no_identity", 401),
            (AuthError::BadKey("x".to_owned()), "bad_key", 500),
        ];
        for (err, code, status) in table {
            assert_eq!((err.code(), err.http_status()), (code, status));
            assert_eq!(err.to_string(), err.message());
            assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn error_messages_never_contain_the_token() {
        let claims = json!({"sub": "s", "exp": NOW - 100});
        let tokens = [
            hs256(SECRET, &claims),
            hs256(b"other", &claims),
            hs256(SECRET, &json!({"iat": 1})),
            raw_hs256(r#"{"alg":"none"}"#, "{}", SECRET),
            "tok.en.x".repeat(3),
        ];
        for token in &tokens {
            let err = HMAC.verify(token, NOW).unwrap_err();
            for part in token.split('.').filter(|p| p.len() > 3) {
                assert!(!err.message().contains(part), "{err:?}");
                assert!(!format!("{err:?}").contains(part), "{err:?}");
            }
        }
    }

    #[test]
    fn algorithm_names_parse_case_insensitively() {
        for alg in JwtAlg::ALL {
            assert_eq!(alg.as_str().parse::<JwtAlg>(), Ok(alg));
            assert_eq!(alg.as_str().to_lowercase().parse::<JwtAlg>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        assert_eq!(" Rs384\n".parse::<JwtAlg>(), Ok(JwtAlg::RS384));
        for bad in ["none", "PS256", "EdDSA", "", "HS256x"] {
            assert!(matches!(bad.parse::<JwtAlg>(), Err(AuthError::BadKey(_))), "{bad}");
        }
    }

    #[test]
    fn bearer_tokens_are_extracted_from_authorization_values() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer_token("  Bearer    abc  "), Some("abc"));
        for none in
            ["", "Bearer", "Bearer ", "Bearer  \t ", "Basic dXNlcjpwdw==", "Bearerabc", "Bearer a b", "abc"]
        {
            assert_eq!(bearer_token(none), None, "{none:?}");
        }
    }

    #[test]
    fn rsa_modulus_bits_are_counted_from_the_first_set_bit() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[1]), 1);
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0x7f; 256]), 2047);
    }

    // --- properties ---

    fn id_claim() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            "[a-z ]{0,3}".prop_map(|s| Some(Value::String(s))),
            any::<i32>().prop_map(|n| Some(json!(n))),
            Just(Some(Value::Null)),
            any::<bool>().prop_map(|b| Some(json!(b))),
        ]
    }

    fn time_claim() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            3 => Just(None),
            6 => (0u64..200).prop_map(|n| Some(json!(n))),
            1 => Just(Some(json!("soon"))),
            1 => Just(Some(Value::Null)),
        ]
    }

    fn three_part() -> impl Strategy<Value = String> {
        let part = "[A-Za-z0-9_-]{0,80}";
        let header = prop_oneof![
            part.prop_map(|s| s.to_owned()),
            prop::sample::select(vec![
                r#"{"alg":"HS256"}"#,
                r#"{"alg":"RS256","typ":"JWT"}"#,
                r#"{"alg":"ES256"}"#,
                r#"{"alg":"none"}"#,
            ])
            .prop_map(|h| b64(h.as_bytes())),
        ];
        (header, part, part).prop_map(|(h, p, s)| format!("{h}.{p}.{s}"))
    }

    proptest! {
        #[test]
        fn verify_never_panics_on_arbitrary_strings(s in any::<String>(), now in any::<u64>()) {
            for verifier in [&*HMAC, &*RSA, &*EC256] {
                let result = verifier.verify(&s, now);
                prop_assert!(result.is_err());
                prop_assert!(!matches!(result, Err(AuthError::BadKey(_))));
            }
        }

        #[test]
        fn verify_never_panics_on_three_part_base64url(token in three_part(), now in any::<u64>()) {
            for verifier in [&*HMAC, &*RSA, &*EC256] {
                let result = verifier.verify(&token, now);
                // Nobody guesses a signature; a token never makes the server's key look bad.
                prop_assert!(result.is_err());
                prop_assert!(!matches!(result, Err(AuthError::BadKey(_)) | Err(AuthError::Missing)));
            }
        }

        #[test]
        fn signed_claims_follow_the_documented_rules(
            username in id_claim(),
            name in id_claim(),
            sub in id_claim(),
            exp in time_claim(),
            nbf in time_claim(),
            now in 0u64..250,
            leeway in 0u64..40,
        ) {
            let mut claims = Map::new();
            for (key, value) in [("username", &username), ("name", &name), ("sub", &sub), ("exp", &exp), ("nbf", &nbf)] {
                if let Some(v) = value {
                    claims.insert(key.to_owned(), v.clone());
                }
            }
            let token = hs256(SECRET, &Value::Object(claims));
            let got = JwtVerifier::hmac(SECRET).with_leeway(leeway).verify(&token, now);

            // The model, written from the documentation.
            let number = |v: &Option<Value>| v.as_ref().map(|v| v.as_u64().ok_or(AuthError::Malformed)).transpose();
            let expected = (|| {
                let exp = number(&exp)?;
                let nbf = number(&nbf)?;
                if exp.is_some_and(|e| now >= e + leeway) {
                    return Err(AuthError::Expired);
                }
                if nbf.is_some_and(|n| now + leeway < n) {
                    return Err(AuthError::NotYetValid);
                }
                let user = [&username, &name, &sub]
                    .into_iter()
                    .find_map(|v| v.as_ref().and_then(Value::as_str).filter(|s| !s.is_empty()))
                    .ok_or(AuthError::NoIdentity)?;
                Ok(Identity { user: user.to_owned(), exp })
            })();
            prop_assert_eq!(got, expected);
        }
    }
}
