//! Stream tokens: `v1.CLAIMS.SIGNATURE`, both parts base64url without padding. The claims are
//! a small JSON object — key id, action, stream `app/key`, expiry (unix seconds) and an
//! optional client address — and the signature is HMAC-SHA256 of `v1.CLAIMS` under the key the
//! claims name. Any node holding the key verifies a token locally; the comparison is
//! constant-time, and the claims are only believed once the signature matched.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use serde::{Deserialize, Serialize};

use super::keys::{KeyRing, StreamKey};
use super::{Action, Denial};

const VERSION: &str = "v1";
/// Longer tokens are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The signing key's id.
    #[serde(rename = "kid")]
    pub key_id: String,
    /// Publish or play.
    #[serde(rename = "act")]
    pub action: Action,
    /// The stream, `app/key`.
    #[serde(rename = "str")]
    pub stream: String,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "exp")]
    pub expires: u64,
    /// When set, only a client from this address may use the token.
    #[serde(rename = "ip", default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
}

/// What a token is checked against: the attempt being made.
#[derive(Debug, Clone, Copy)]
pub struct TokenCheck<'a> {
    /// Publish or play.
    pub action: Action,
    /// The stream, `app/key`.
    pub stream: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Unix seconds now.
    pub now: u64,
}

/// Mints a token for `claims` under `key` (the claims' key id is set to the key's).
pub fn sign(key: &StreamKey, claims: &Claims) -> String {
    let claims = Claims {
        key_id: key.id.clone(),
        ..claims.clone()
    };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    let signed = format!("{VERSION}.{body}");
    let mut mac = key.mac();
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// Verifies `token` for the attempt `check`: form, key, signature, then action, stream,
/// expiry and client address, in that order.
pub fn verify(token: &str, keys: &KeyRing, check: &TokenCheck<'_>) -> Result<Claims, Denial> {
    let claims = authenticate(token, keys)?;
    if claims.action != check.action {
        return Err(Denial::WrongAction(claims.action, check.action));
    }
    if claims.stream != check.stream {
        return Err(Denial::WrongStream(claims.stream));
    }
    if claims.expires <= check.now {
        return Err(Denial::Expired(check.now - claims.expires));
    }
    if let Some(ip) = claims.client_ip
        && canonical(ip) != canonical(check.client_ip)
    {
        return Err(Denial::WrongClient(ip.to_string()));
    }
    Ok(claims)
}

/// The claims of a well-formed token whose signature matches one of `keys`.
fn authenticate(token: &str, keys: &KeyRing) -> Result<Claims, Denial> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Denial::Malformed("longer than 1024 characters"));
    }
    let mut parts = token.split('.');
    let (Some(version), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denial::Malformed("not three dot-separated parts"));
    };
    if version != VERSION {
        return Err(Denial::Malformed("unknown version (expected v1)"));
    }
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| Denial::Malformed("claims are not base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Denial::Malformed("signature is not base64url"))?;
    // Only the key id is read before the signature is checked; the rest waits for it.
    #[derive(Deserialize)]
    struct KeyId {
        kid: String,
    }
    let KeyId { kid } =
        serde_json::from_slice(&json).map_err(|_| Denial::Malformed("claims are not JSON"))?;
    if keys.is_empty() {
        return Err(Denial::NoKeys);
    }
    let key = keys.get(&kid).ok_or(Denial::UnknownKey(kid))?;
    let mut mac = key.mac();
    mac.update(&token.as_bytes()[..version.len() + 1 + body.len()]);
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| Denial::BadSignature)?;
    serde_json::from_slice(&json).map_err(|_| Denial::Malformed("claims lack a field"))
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(keys: &[&StreamKey]) -> KeyRing {
        KeyRing::new(keys.iter().map(|k| (*k).clone()).collect())
    }

    fn claims(action: Action, stream: &str, expires: u64) -> Claims {
        Claims {
            key_id: String::new(),
            action,
            stream: stream.into(),
            expires,
            client_ip: None,
        }
    }

    fn check(action: Action, stream: &str) -> TokenCheck<'_> {
        TokenCheck {
            action,
            stream,
            client_ip: "127.0.0.1".parse().unwrap(),
            now: 1_000,
        }
    }

    #[test]
    fn a_token_verifies_for_its_stream_action_and_time_only() {
        let key = StreamKey::generate(1);
        let keys = ring(&[&key]);
        let token = sign(&key, &claims(Action::Publish, "live/a", 2_000));
        let ok = verify(&token, &keys, &check(Action::Publish, "live/a")).unwrap();
        assert_eq!(ok.key_id, key.id);
        assert_eq!(
            verify(&token, &keys, &check(Action::Play, "live/a")),
            Err(Denial::WrongAction(Action::Publish, Action::Play))
        );
        assert_eq!(
            verify(&token, &keys, &check(Action::Publish, "live/b")),
            Err(Denial::WrongStream("live/a".into()))
        );
        let late = TokenCheck {
            now: 2_005,
            ..check(Action::Publish, "live/a")
        };
        assert_eq!(verify(&token, &keys, &late), Err(Denial::Expired(5)));
    }

    #[test]
    fn other_keys_forgeries_and_bound_addresses_are_refused() {
        let key = StreamKey::generate(1);
        let other = StreamKey::generate(2);
        let token = sign(&other, &claims(Action::Play, "live/a", 2_000));
        let c = check(Action::Play, "live/a");
        assert_eq!(
            verify(&token, &ring(&[&key]), &c),
            Err(Denial::UnknownKey(other.id.clone()))
        );
        assert_eq!(verify(&token, &KeyRing::default(), &c), Err(Denial::NoKeys));

        // Same key id, different secret: the signature does not match.
        let impostor = StreamKey::from_secret(other.id.clone(), vec![7; 32], 3);
        assert_eq!(
            verify(&token, &ring(&[&impostor]), &c),
            Err(Denial::BadSignature)
        );

        // Claims changed after signing (a longer lifetime): the signature does not match.
        let (head, signature) = token.rsplit_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                key_id: other.id.clone(),
                ..claims(Action::Play, "live/a", 9_999)
            })
            .unwrap(),
        );
        let forged = format!("v1.{forged_claims}.{signature}");
        assert_ne!(forged.rsplit_once('.').unwrap().0, head);
        assert_eq!(
            verify(&forged, &ring(&[&other]), &c),
            Err(Denial::BadSignature)
        );

        let bound = sign(
            &key,
            &Claims {
                client_ip: Some("192.0.2.1".parse().unwrap()),
                ..claims(Action::Play, "live/a", 2_000)
            },
        );
        assert_eq!(
            verify(&bound, &ring(&[&key]), &c),
            Err(Denial::WrongClient("192.0.2.1".into()))
        );
        let mapped = TokenCheck {
            client_ip: "::ffff:192.0.2.1".parse().unwrap(),
            ..c
        };
        assert!(verify(&bound, &ring(&[&key]), &mapped).is_ok());
    }

    #[test]
    fn malformed_tokens_say_so() {
        let keys = ring(&[&StreamKey::generate(1)]);
        let c = check(Action::Play, "live/a");
        for bad in ["", "v1", "v1.a", "v2.a.b", "v1.!!.b", "v1.e30.b", "a.b.c.d"] {
            assert!(
                matches!(verify(bad, &keys, &c), Err(Denial::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            verify(&"a".repeat(5000), &keys, &c),
            Err(Denial::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(token in ".{0,300}") {
            let keys = ring(&[&StreamKey::generate(1)]);
            let _ = verify(&token, &keys, &check(Action::Play, "live/a"));
        }

        #[test]
        fn mangled_real_tokens_never_pass_and_never_panic(
            cut in 0usize..200,
            flip in 0usize..200,
            byte in any::<u8>(),
        ) {
            let key = StreamKey::generate(1);
            let keys = ring(&[&key]);
            let token = sign(&key, &claims(Action::Play, "live/a", 2_000));
            let mut bytes = token.clone().into_bytes();
            bytes.truncate(cut.min(bytes.len()));
            if let Some(b) = bytes.get_mut(flip) {
                *b = byte;
            }
            let mangled = String::from_utf8_lossy(&bytes).into_owned();
            let result = verify(&mangled, &keys, &check(Action::Play, "live/a"));
            prop_assert!(mangled == token || result.is_err());
        }
    }
}
