//! This member's token provider (`--auth-token`): etcd's simple tokens or JWTs.
//!
//! * **simple** (`auth/simple_token.go`): `<16 random letters>.<raft index>`. The letters are
//!   drawn by the member that proposes the Authenticate entry; every member registers the token
//!   when it applies that entry, so any member accepts it once it applied the index (a member
//!   behind waits for it). Each token lives `--auth-token-ttl` seconds after its last use; the
//!   tokens of a deleted user or a changed password are dropped, all of them when auth is
//!   turned off. They stand for the auth revision current when they are used.
//! * **jwt** (`auth/jwt.go`): `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256[,ttl=5m]`;
//!   claims `username`, `revision` (frozen: any later auth change makes the token old) and
//!   `exp`. With only a public key the member verifies tokens but cannot issue them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;

use super::AuthInfo;
use crate::error::{Error, Result};

const SIMPLE_TOKEN_LETTERS: usize = 16;
const JWT_DEFAULT_TTL: Duration = Duration::from_secs(300);

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Valid(AuthInfo),
    /// A simple token issued at a raft index this member has not applied yet.
    NotYetApplied(u64),
    Invalid,
}

pub enum Tokens {
    Simple(SimpleTokens),
    Jwt(Box<JwtTokens>),
}

impl Tokens {
    /// From etcd's `--auth-token` value and `--auth-token-ttl`.
    pub fn from_flags(auth_token: &str, simple_ttl: Duration) -> Result<Self> {
        let mut parts = auth_token.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut opts = HashMap::new();
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(invalid_opts)?;
            if opts.insert(k, v).is_some() {
                return Err(invalid_opts());
            }
        }
        match kind {
            "simple" => Ok(Tokens::Simple(SimpleTokens::new(simple_ttl))),
            "jwt" => Ok(Tokens::Jwt(Box::new(JwtTokens::new(&opts)?))),
            _ => Err(invalid_opts()),
        }
    }

    /// The random part of a simple token, drawn before proposing.
    pub fn simple_prefix() -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut rng = rand::thread_rng();
        (0..SIMPLE_TOKEN_LETTERS).map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char).collect()
    }

    /// Issues a token to `user` (applying the Authenticate entry at `index`).
    pub fn assign(&self, user: &str, revision: u64, prefix: &str, index: u64) -> Result<String> {
        match self {
            Tokens::Simple(s) => Ok(s.assign(user, prefix, index)),
            Tokens::Jwt(j) => j.assign(user, revision),
        }
    }

    /// What `token` stands for: `revision` is the store's current auth revision, `applied` this
    /// member's applied raft index.
    pub fn lookup(&self, token: &str, revision: u64, applied: u64) -> Lookup {
        match self {
            Tokens::Simple(s) => s.lookup(token, revision, applied),
            Tokens::Jwt(j) => j.lookup(token),
        }
    }

    pub(super) fn enable(&self) {
        if let Tokens::Simple(s) = self {
            s.state.lock().expect("token lock").enabled = true;
        }
    }

    pub(super) fn disable(&self) {
        if let Tokens::Simple(s) = self {
            let mut state = s.state.lock().expect("token lock");
            state.enabled = false;
            state.tokens.clear();
        }
    }

    pub(super) fn invalidate_user(&self, user: &str) {
        if let Tokens::Simple(s) = self {
            s.state.lock().expect("token lock").tokens.retain(|_, (u, _)| u != user);
        }
    }
}

fn invalid_opts() -> Error {
    Error::InvalidArgument("auth: invalid auth options".into())
}

pub struct SimpleTokens {
    ttl: Duration,
    state: Mutex<SimpleState>,
}

#[derive(Default)]
struct SimpleState {
    enabled: bool,
    /// token → (user, last use)
    tokens: HashMap<String, (String, Instant)>,
}

impl SimpleTokens {
    fn new(ttl: Duration) -> Self {
        Self { ttl, state: Mutex::default() }
    }

    fn assign(&self, user: &str, prefix: &str, index: u64) -> String {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut state = self.state.lock().expect("token lock");
        let ttl = self.ttl;
        state.tokens.retain(|_, (_, used)| now.duration_since(*used) < ttl);
        if state.enabled {
            state.tokens.insert(token.clone(), (user.to_string(), now));
        }
        token
    }

    fn lookup(&self, token: &str, revision: u64, applied: u64) -> Lookup {
        let Some(index) = token.split_once('.').and_then(|(_, i)| i.parse::<u64>().ok()) else {
            return Lookup::Invalid;
        };
        if index > applied {
            return Lookup::NotYetApplied(index);
        }
        let now = Instant::now();
        let mut state = self.state.lock().expect("token lock");
        match state.tokens.get_mut(token) {
            Some((user, used)) if now.duration_since(*used) < self.ttl => {
                *used = now;
                Lookup::Valid(AuthInfo { user: user.clone(), revision })
            }
            Some(_) => {
                state.tokens.remove(token);
                Lookup::Invalid
            }
            None => Lookup::Invalid,
        }
    }
}

pub struct JwtTokens {
    algorithm: Algorithm,
    /// `None`: verify-only (no private key).
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl JwtTokens {
    fn new(opts: &HashMap<&str, &str>) -> Result<Self> {
        let ttl = match opts.get("ttl") {
            Some(t) => crate::go_duration::parse(t).ok_or_else(invalid_opts)?,
            None => JWT_DEFAULT_TTL,
        };
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            opts.get(name)
                .map(|path| {
                    std::fs::read(path).map_err(|e| Error::InvalidArgument(format!("auth: {name} {path}: {e}")))
                })
                .transpose()
        };
        let (private, public) = (read("priv-key")?, read("pub-key")?);
        let method = opts.get("sign-method").copied().unwrap_or_default();
        let algorithm: Algorithm =
            method.parse().map_err(|_| Error::InvalidArgument("auth: invalid auth signature method".into()))?;
        let missing = || Error::InvalidArgument("auth: missing key data".into());
        let key_err = |e: jsonwebtoken::errors::Error| Error::InvalidArgument(format!("auth: JWT key: {e}"));
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or_else(missing)?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let encoding = private.as_deref().map(EncodingKey::from_rsa_pem).transpose().map_err(key_err)?;
                let decoding = match (&public, &private) {
                    (Some(public), _) => DecodingKey::from_rsa_pem(public).map_err(key_err)?,
                    (None, Some(private)) => DecodingKey::from_rsa_der(&rsa_public_der(private)?),
                    (None, None) => return Err(missing()),
                };
                (encoding, decoding)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let encoding = private.as_deref().map(EncodingKey::from_ec_pem).transpose().map_err(key_err)?;
                let decoding = match (&public, &private) {
                    (Some(public), _) => DecodingKey::from_ec_pem(public).map_err(key_err)?,
                    (None, Some(private)) => DecodingKey::from_ec_der(&ec_public_point(private, algorithm)?),
                    (None, None) => return Err(missing()),
                };
                (encoding, decoding)
            }
            Algorithm::EdDSA => return Err(Error::InvalidArgument("auth: invalid auth signature method".into())),
        };
        Ok(Self { algorithm, encoding, decoding, ttl })
    }

    fn assign(&self, user: &str, revision: u64) -> Result<String> {
        let key = self.encoding.as_ref().ok_or(Error::VerifyOnlyToken)?;
        let exp = (SystemTime::now() + self.ttl).duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims { username: user.to_string(), revision, exp };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| Error::Internal(format!("signing a JWT: {e}")))
    }

    fn lookup(&self, token: &str) -> Lookup {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Lookup::Valid(AuthInfo { user: data.claims.username, revision: data.claims.revision }),
            Err(_) => Lookup::Invalid,
        }
    }
}

fn private_der(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| Error::InvalidArgument(format!("auth: JWT private key: {e}")))
}

/// The PKCS#1 public key of an RSA private key (PKCS#1 or PKCS#8 PEM).
fn rsa_public_der(pem: &[u8]) -> Result<Vec<u8>> {
    use ring::signature::KeyPair as _;
    let bad = |e: ring::error::KeyRejected| Error::InvalidArgument(format!("auth: JWT private key: {e}"));
    let pair = match private_der(pem)? {
        PrivateKeyDer::Pkcs1(der) => ring::rsa::KeyPair::from_der(der.secret_pkcs1_der()).map_err(bad)?,
        PrivateKeyDer::Pkcs8(der) => ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(bad)?,
        _ => return Err(Error::InvalidArgument("auth: JWT private key is not an RSA key".into())),
    };
    Ok(pair.public_key().as_ref().to_vec())
}

/// The public point of an EC private key (PKCS#8 PEM).
fn ec_public_point(pem: &[u8], algorithm: Algorithm) -> Result<Vec<u8>> {
    use ring::signature::{KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
    let PrivateKeyDer::Pkcs8(der) = private_der(pem)? else {
        return Err(Error::InvalidArgument("auth: JWT EC private key must be PKCS#8".into()));
    };
    let alg =
        if algorithm == Algorithm::ES256 { &ECDSA_P256_SHA256_FIXED_SIGNING } else { &ECDSA_P384_SHA384_FIXED_SIGNING };
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, der.secret_pkcs8_der(), &rng)
        .map_err(|e| Error::InvalidArgument(format!("auth: JWT private key: {e}")))?;
    Ok(pair.public_key().as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_after_ttl_of_disuse_and_wait_for_their_index() {
        let tokens = Tokens::from_flags("simple", Duration::from_millis(50)).unwrap();
        tokens.enable();
        let prefix = Tokens::simple_prefix();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()));
        let token = tokens.assign("alice", 3, &prefix, 9).unwrap();
        assert_eq!(token, format!("{prefix}.9"));
        assert_eq!(tokens.lookup(&token, 4, 8), Lookup::NotYetApplied(9));
        assert_eq!(tokens.lookup(&token, 4, 9), Lookup::Valid(AuthInfo { user: "alice".into(), revision: 4 }));
        assert_eq!(tokens.lookup("nodot", 4, 9), Lookup::Invalid);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(tokens.lookup(&token, 4, 9), Lookup::Invalid, "expired");
    }

    #[test]
    fn simple_tokens_are_dropped_with_their_user_and_when_auth_is_off() {
        let tokens = Tokens::from_flags("simple", Duration::from_secs(300)).unwrap();
        tokens.enable();
        let a = tokens.assign("alice", 1, "aaaaaaaaaaaaaaaa", 1).unwrap();
        let b = tokens.assign("bob", 1, "bbbbbbbbbbbbbbbb", 2).unwrap();
        tokens.invalidate_user("alice");
        assert_eq!(tokens.lookup(&a, 1, 5), Lookup::Invalid);
        assert!(matches!(tokens.lookup(&b, 1, 5), Lookup::Valid(_)));
        tokens.disable();
        assert_eq!(tokens.lookup(&b, 1, 5), Lookup::Invalid);
    }

    #[test]
    fn hmac_jwt_round_trip_carries_user_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret");
        std::fs::write(&key, b"0123456789abcdef").unwrap();
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", key.display());
        let tokens = Tokens::from_flags(&flag, Duration::from_secs(300)).unwrap();
        let token = tokens.assign("root", 7, "", 0).unwrap();
        assert_eq!(tokens.lookup(&token, 9, 0), Lookup::Valid(AuthInfo { user: "root".into(), revision: 7 }));
        assert_eq!(tokens.lookup(&format!("{token}x"), 9, 0), Lookup::Invalid);
    }

    #[test]
    fn bad_options_are_refused() {
        for flag in ["nope", "jwt,sign-method=XX9", "jwt,sign-method=HS256", "simple,a=1,a=2", "jwt,ttl"] {
            assert!(Tokens::from_flags(flag, Duration::from_secs(1)).is_err(), "{flag}");
        }
    }
}
