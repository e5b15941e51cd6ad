//! Tokens: HS256 JWTs with a pinned algorithm and a required `exp`. A token's claims name
//! a role and its scope; `Caller` turns a valid bearer token into a domain `Actor`.
//! Tokens are never logged.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::domain::dispatcher::Actor;
use crate::domain::scope::{self, Action};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Command,
    Staff,
    UnitAdmin,
    Member,
    /// A resident signed in with a code to their phone (issue #20).
    Resident,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Command => "command",
            Role::Staff => "staff",
            Role::UnitAdmin => "unit_admin",
            Role::Member => "member",
            Role::Resident => "resident",
        }
    }
}

/// Parses a role name as the CLI and tokens write it.
pub fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "command" => Ok(Role::Command),
        "staff" => Ok(Role::Staff),
        "unit_admin" => Ok(Role::UnitAdmin),
        "member" => Ok(Role::Member),
        "resident" => Ok(Role::Resident),
        _ => Err(format!("role '{s}' is not one of command, staff, unit_admin, member, resident")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident: Option<String>,
    pub iat: u64,
    /// The session family that issued it (a sign-in link's device); absent in tokens from
    /// `muster token`. A family that ended has its tokens refused at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Required: `Validation` refuses a token without it (the default only lets the
    /// validator, not the parser, say so).
    #[serde(default)]
    pub exp: u64,
}

impl Claims {
    /// Claims for a role and scope, valid for `ttl_s` from `now_s`.
    pub fn new(role: Role, scope: Option<String>, now_s: u64, ttl_s: u64) -> Result<Claims, String> {
        let mut c = Claims {
            sub: String::new(),
            role,
            district: None,
            community: None,
            unit: None,
            member: None,
            resident: None,
            sid: None,
            iat: now_s,
            exp: now_s + ttl_s,
        };
        match role {
            Role::Command => c.district = scope,
            Role::Staff => c.community = Some(scope.ok_or("a staff token needs --community")?),
            Role::UnitAdmin => c.unit = Some(scope.ok_or("a unit_admin token needs --unit")?),
            Role::Member => c.member = Some(scope.ok_or("a member token needs --member")?),
            Role::Resident => c.resident = Some(scope.ok_or("a resident token names the resident")?),
        }
        c.sub = c.actor().map_err(|e| e.to_string())?.label();
        Ok(c)
    }

    /// The actor these claims stand for; claims without the scope their role needs are invalid.
    pub fn actor(&self) -> Result<Actor, &'static str> {
        let need = |v: &Option<String>, what| v.clone().filter(|s| !s.is_empty()).ok_or(what);
        Ok(match self.role {
            // Absent: city-wide. Present, it must name a district: an empty one is refused,
            // never read as the whole city.
            Role::Command => Actor::Command {
                district: match &self.district {
                    None => None,
                    Some(d) if d.is_empty() => return Err("a command token's district must not be empty"),
                    Some(d) => Some(d.clone()),
                },
            },
            Role::Staff => Actor::Staff { community: need(&self.community, "a staff token must name a community")? },
            Role::UnitAdmin => Actor::UnitAdmin { unit: need(&self.unit, "a unit_admin token must name a unit")? },
            Role::Member => Actor::Member { member: need(&self.member, "a member token must name a member")? },
            Role::Resident => {
                Actor::Resident { resident: need(&self.resident, "a resident token must name a resident")? }
            }
        })
    }
}

/// Signs and checks tokens with the configured secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.leeway = 0;
        // RFC 7519: the token is valid only *before* exp, so refuse it from its exp second on.
        validation.reject_tokens_expiring_in_less_than = 1;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Checks signature, algorithm and expiry; the error text is safe to show.
    pub fn verify(&self, token: &str) -> Result<(Claims, Actor), String> {
        use jsonwebtoken::errors::ErrorKind as K;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::InvalidSignature => "the token's signature is not valid",
                K::InvalidAlgorithm => "the token must be signed with HS256",
                K::MissingRequiredClaim(_) => "the token has no exp claim",
                _ => "the token is malformed",
            }
            .to_string()
        })?;
        let actor = data.claims.actor().map_err(str::to_string)?;
        Ok((data.claims, actor))
    }
}

/// The authenticated caller of an HTTP request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send a token: Authorization: Bearer <JWT>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer <JWT>'"))?;
        let (claims, actor) = authenticate(state, token)?;
        Ok(Caller { claims, actor })
    }
}

/// A bearer token, checked: signature, expiry, revocation, the subject's rate limit, and a
/// scope the city holds (a token naming a community, unit, member or district that does not
/// exist is refused, not widened). For HTTP requests and websocket upgrades alike.
pub fn authenticate(app: &AppState, token: &str) -> Result<(Claims, Actor), ApiError> {
    let (claims, actor) = app.keys.verify(token).map_err(ApiError::unauthorized)?;
    if app.engine.is_revoked(&claims.sub, claims.iat) {
        return Err(ApiError::unauthorized("the token has been revoked; ask for a new one"));
    }
    if claims.sid.as_deref().is_some_and(|sid| app.engine.is_family_revoked(sid)) {
        return Err(ApiError::unauthorized("this device was signed out; sign in again"));
    }
    app.limits.check_subject(&claims.sub)?;
    if !scope::known(&app.engine.read(), &actor) {
        // Only a node whose state is the log's last word may say "nothing": one still
        // replaying, or a follower whose replica may lag the engine by a moment, asks for
        // a retry instead of sending a valid token back for a new one.
        if !app.engine.is_started() || !app.engine.is_leader() {
            return Err(ApiError::unavailable("this node does not know the token's scope yet; retry shortly"));
        }
        return Err(ApiError::unauthorized("the token's scope names nothing in this city; ask for a new one"));
    }
    Ok((claims, actor))
}

/// The role table (`scope::permits`): 403 when the caller's role may never do this.
pub(super) fn require(caller: &Caller, action: Action) -> Result<(), ApiError> {
    Ok(scope::require(&caller.actor, action)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_tokens() {
        let keys = TokenKeys::new("a-test-secret-of-some-length");
        let now = crate::engine::now_ms() as u64 / 1000;
        let c = Claims::new(Role::Staff, Some("c001".into()), now, 60).unwrap();
        let t = keys.sign(&c);
        let (back, actor) = keys.verify(&t).unwrap();
        assert_eq!(back, c);
        assert_eq!(actor, Actor::Staff { community: "c001".into() });

        let other = TokenKeys::new("another-secret-of-some-length");
        assert!(other.verify(&t).unwrap_err().contains("signature"));

        let expired = Claims { exp: now - 10, iat: now - 100, ..c.clone() };
        assert!(keys.verify(&keys.sign(&expired)).unwrap_err().contains("expired"));

        // alg none: header {"alg":"none"} with the same claims and no signature
        use base64_like::encode;
        let none = format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(serde_json::to_string(&c).unwrap().as_bytes())
        );
        assert!(keys.verify(&none).is_err());

        // no exp
        let no_exp = serde_json::json!({"sub": "staff:c001", "role": "staff", "community": "c001", "iat": now});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &no_exp,
            &EncodingKey::from_secret(b"a-test-secret-of-some-length"),
        )
        .unwrap();
        assert!(keys.verify(&t).unwrap_err().contains("exp"));

        // HS512 with the right secret is still refused: the algorithm is pinned
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(b"a-test-secret-of-some-length"),
        )
        .unwrap();
        assert!(keys.verify(&t).unwrap_err().contains("HS256"));
    }

    #[test]
    fn scope_is_required_by_role() {
        assert!(Claims::new(Role::Staff, None, 0, 60).is_err());
        assert!(Claims::new(Role::Command, None, 0, 60).is_ok());
    }

    /// Base64url without padding, enough to forge an unsigned token in a test.
    mod base64_like {
        pub fn encode(bytes: &[u8]) -> String {
            const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..chunk.len() + 1 {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
