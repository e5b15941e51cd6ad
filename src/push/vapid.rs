//! VAPID (RFC 8292): the key pair that identifies this server to push services, and the
//! `Authorization: vapid t=<JWT>, k=<public key>` header of each push.
//!
//! The JWT is ES256, signed by jsonwebtoken (already the token crate here) from the
//! PKCS#8 form p256 gives the key; no curve arithmetic is written in muster. Its `aud` is
//! the push resource's origin with its port (web-push-native's own VAPID helper drops the
//! port, which breaks any push service off 443, such as the tests' on loopback).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde::Serialize;

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
const JWT_TTL_S: u64 = 12 * 3600;

pub struct Vapid {
    key: EncodingKey,
    /// The public key, base64url of the uncompressed point: the browser's
    /// `applicationServerKey` and the header's `k`.
    pub public_key: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    sub: &'a str,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid").field("public_key", &self.public_key).finish_non_exhaustive()
    }
}

/// A new key pair: (private, public), both base64url.
pub fn generate() -> (String, String) {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let public = B64.encode(secret.public_key().to_encoded_point(false).as_bytes());
    (B64.encode(secret.to_bytes()), public)
}

impl Vapid {
    /// From the configured private key (base64url of the 32-byte scalar).
    pub fn from_private(private: &str) -> Result<Vapid, String> {
        let bytes = B64.decode(private.trim()).map_err(|_| "not base64url".to_string())?;
        let secret = p256::SecretKey::from_slice(&bytes).map_err(|_| "not a P-256 private key".to_string())?;
        let der = secret.to_pkcs8_der().map_err(|e| e.to_string())?;
        let public_key = B64.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(Vapid { key: EncodingKey::from_ec_der(der.as_bytes()), public_key })
    }

    /// The `Authorization` header for a push to `endpoint`.
    pub fn authorization(&self, endpoint: &url::Url, subject: &str, now_s: u64) -> Result<String, String> {
        let origin = endpoint.origin().ascii_serialization();
        let claims = Claims { aud: &origin, exp: now_s + JWT_TTL_S, sub: subject };
        let jwt =
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key).map_err(|e| e.to_string())?;
        Ok(format!("vapid t={jwt}, k={}", self.public_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_loads_and_signs_for_the_endpoints_origin() {
        let (private, public) = generate();
        let v = Vapid::from_private(&private).unwrap();
        assert_eq!(v.public_key, public);
        assert_eq!(B64.decode(&public).unwrap().len(), 65);
        let url = url::Url::parse("http://127.0.0.1:8081/push/abc").unwrap();
        let h = v.authorization(&url, "mailto:ops@example.org", 1_000).unwrap();
        let t = h.strip_prefix("vapid t=").unwrap().split(',').next().unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["aud"], "http://127.0.0.1:8081");
        assert_eq!(claims["exp"], 1_000 + JWT_TTL_S);
        assert!(h.ends_with(&format!(", k={public}")));
        assert!(Vapid::from_private("not a key").is_err());
        assert!(Vapid::from_private(&B64.encode([0u8; 32])).is_err(), "zero is not a scalar");
    }
}
