//! JWT verification: `auth::JwtVerifier::verify` with an HMAC, an RSA and an EC verifier, and
//! `auth::bearer_token`.
//!
//! Input: a mode byte. Even: the rest is a token (non-UTF-8 bytes decoded lossily), verified by
//! every verifier. Odd: a length-prefixed header, then the payload; the harness base64url-encodes
//! both and signs them with HS256 under the HMAC verifier's secret, so the claim checks behind
//! the signature are reachable although the fuzzer cannot forge signatures.
//!
//! Checks, besides no panic, at several times `now`:
//! - a token never causes `BadKey` (a server error): every verifier here is well configured;
//! - `Missing` exactly for the empty token; every error is a 401;
//! - an accepted token is within the length limit and names a non-empty user;
//! - time is consistent: an accepted token with `exp` is still accepted just before
//!   `exp + leeway` and `Expired` from then on; one without `exp` is accepted forever after;
//!   `Expired` stays `Expired` later; `NotYetValid` is `NotYetValid` at time 0; shape,
//!   signature and algorithm errors do not depend on the time;
//! - a token the harness signed is never a `BadSignature` for the HS256 verifier;
//! - `bearer_token` returns a non-empty, whitespace-free part of its input, and finds the
//!   trimmed text behind `Bearer ` exactly when that has no whitespace inside.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use sockeye::auth::{AuthError, JwtAlg, JwtVerifier, MAX_TOKEN_LEN, bearer_token};
use sockeye_fuzz::Input;

/// The jwt.io example's secret, so its well-known token is a valid seed.
const SECRET: &[u8] = b"your-256-bit-secret";
const LEEWAY: u64 = 30;
const TIMES: [u64; 4] = [0, 1_516_239_022, 1_700_000_000, u64::MAX - 1];

struct Verifiers {
    hs256: JwtVerifier,
    all_hmac: JwtVerifier,
    rsa: JwtVerifier,
    ec: JwtVerifier,
}

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(|| {
    let pem = |bytes: &[u8], alg| JwtVerifier::from_public_key_pem(bytes, alg).unwrap();
    Verifiers {
        hs256: JwtVerifier::hmac(SECRET).with_leeway(LEEWAY),
        all_hmac: JwtVerifier::hmac(SECRET)
            .with_algorithms(&[JwtAlg::HS256, JwtAlg::HS384, JwtAlg::HS512])
            .unwrap()
            .with_leeway(LEEWAY),
        rsa: pem(include_bytes!("../../src/auth/testdata/rsa_public.pem"), JwtAlg::RS256)
            .with_algorithms(&[JwtAlg::RS256, JwtAlg::RS384, JwtAlg::RS512])
            .unwrap()
            .with_leeway(LEEWAY),
        ec: pem(include_bytes!("../../src/auth/testdata/ec_p256_public.pem"), JwtAlg::ES256)
            .with_leeway(LEEWAY),
    }
});

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = &*VERIFIERS;
    if input.byte() & 1 == 0 {
        let token = String::from_utf8_lossy(input.rest());
        check_bearer(&token);
        for verifier in [&v.hs256, &v.all_hmac, &v.rsa, &v.ec] {
            check(verifier, &token, false);
        }
    } else {
        let header = URL_SAFE_NO_PAD.encode(input.short_bytes());
        let payload = URL_SAFE_NO_PAD.encode(input.rest());
        let message = format!("{header}.{payload}");
        let key = EncodingKey::from_secret(SECRET);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
        let token = format!("{message}.{signature}");
        check(&v.hs256, &token, true);
        check(&v.all_hmac, &token, false);
    }
});

fn check(verifier: &JwtVerifier, token: &str, signed_hs256: bool) {
    let results: Vec<_> = TIMES.iter().map(|&now| verifier.verify(token, now)).collect();
    for (&now, result) in TIMES.iter().zip(&results) {
        match result {
            Ok(id) => {
                assert!(token.len() <= MAX_TOKEN_LEN, "accepted a {}-byte token", token.len());
                assert!(!id.user.is_empty(), "empty user");
                match id.exp {
                    Some(exp) => {
                        let end = exp.saturating_add(LEEWAY);
                        assert!(now < end, "accepted at {now}, exp {exp}");
                        assert_eq!(verifier.verify(token, end - 1).as_ref(), Ok(id), "just before exp");
                        assert_eq!(verifier.verify(token, end), Err(AuthError::Expired), "at exp + leeway");
                    }
                    None => assert_eq!(verifier.verify(token, u64::MAX).as_ref(), Ok(id), "no exp, later"),
                }
            }
            Err(err) => {
                assert!(!matches!(err, AuthError::BadKey(_)), "a token caused {err:?}");
                assert_eq!(matches!(err, AuthError::Missing), token.is_empty(), "{err:?}");
                assert_eq!(err.http_status(), 401);
                assert!(!err.code().is_empty() && !err.message().is_empty());
                if signed_hs256 {
                    assert_ne!(err, &AuthError::BadSignature, "our own HS256 signature was refused");
                }
                match err {
                    AuthError::Expired => {
                        assert_eq!(
                            verifier.verify(token, u64::MAX),
                            Err(AuthError::Expired),
                            "expired, later"
                        )
                    }
                    AuthError::NotYetValid => {
                        assert_eq!(
                            verifier.verify(token, 0),
                            Err(AuthError::NotYetValid),
                            "not yet valid, earlier"
                        )
                    }
                    AuthError::Missing
                    | AuthError::BadSignature
                    | AuthError::AlgorithmNotAllowed
                    | AuthError::Malformed => {
                        assert!(results.iter().all(|r| r.as_ref() == Err(err)), "{results:?}")
                    }
                    AuthError::NoIdentity | AuthError::BadKey(_) => {}
                }
            }
        }
    }
}

fn check_bearer(text: &str) {
    if let Some(token) = bearer_token(text) {
        assert!(!token.is_empty() && !token.contains(char::is_whitespace), "{token:?}");
        assert!(text.contains(token));
    }
    // Whitespace around the token is trimmed, whitespace inside it refuses it.
    let header = format!("Bearer {text}");
    let trimmed = text.trim();
    let expected = (!trimmed.is_empty() && !trimmed.contains(char::is_whitespace)).then_some(trimmed);
    assert_eq!(bearer_token(&header), expected, "{header:?}");
}
