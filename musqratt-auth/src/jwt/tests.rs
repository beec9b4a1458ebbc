//! Tests of the JWT source: tokens made here, signed with a test secret or an ES256 key pair
//! generated at test time (no private key is committed).

use core::time::Duration;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use musqratt_engine::acl::{Access, Acl, AclRule, Effect};
use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthDecision, AuthRequest, ConnectionId};
use serde_json::{Value, json};

use super::{JwtConfig, JwtError, JwtSource};
use crate::chain::{Source, Verdict};
use crate::file_auth::{FileAuth, FileAuthConfig, Files};

const SECRET: &str = "test-secret-of-decent-length";
const BAD: Verdict = Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD);

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn hs(alg: jsonwebtoken::Algorithm, claims: &Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn hs256(claims: &Value) -> String {
    hs(jsonwebtoken::Algorithm::HS256, claims)
}

fn secret_source(leeway_s: u64, claims: &[(&str, &str)]) -> JwtSource {
    JwtSource::new(&JwtConfig {
        secret: Some(SECRET.into()),
        leeway_s,
        verify_claims: claims.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..JwtConfig::default()
    })
    .unwrap()
}

fn request(user: Option<&str>, password: Option<&str>) -> AuthRequest {
    AuthRequest {
        client_id: "dev-1".into(),
        username: user.map(Into::into),
        password: password.map(|p| p.as_bytes().to_vec().into()),
        method: None,
        data: None,
        protocol: musqratt_engine::proto::ProtocolVersion::V5,
        cert_cn: None,
        username_verified: false,
    }
}

fn until(exp: u64, leeway_s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(exp + leeway_s)
}

#[test]
fn hmac_tokens_verify_until_exp_plus_leeway() {
    let source = secret_source(2, &[]);
    let exp = now_s() + 100;
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let token = hs(alg, &json!({ "sub": "alice", "exp": exp }));
        assert_eq!(
            source.verdict(&request(Some("alice"), Some(&token))),
            Verdict::AllowUntil(None, until(exp, 2)),
            "{alg:?}"
        );
    }
    // No exp: the issuer chose tokens that do not expire.
    let token = hs256(&json!({ "sub": "alice" }));
    assert_eq!(source.verdict(&request(None, Some(&token))), Verdict::Allow(None));
    // Another secret, or a token altered after signing.
    let forged = encode(
        &Header::default(),
        &json!({ "exp": exp }),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    assert_eq!(source.verdict(&request(None, Some(&forged))), BAD);
    let token = hs256(&json!({ "sub": "alice", "exp": exp }));
    let mut parts: Vec<&str> = token.split('.').collect();
    let bob = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({ "sub": "bob", "exp": exp }).to_string(),
    );
    parts[1] = &bob;
    assert_eq!(source.verdict(&request(None, Some(&parts.join(".")))), BAD);
}

#[test]
fn exp_and_nbf_are_checked_with_the_leeway() {
    let now = now_s();
    let strict = secret_source(0, &[]);
    let lenient = secret_source(5, &[]);
    let expired = hs256(&json!({ "exp": now - 3 }));
    assert_eq!(strict.verdict(&request(None, Some(&expired))), BAD);
    assert_eq!(
        lenient.verdict(&request(None, Some(&expired))),
        Verdict::AllowUntil(None, until(now - 3, 5))
    );
    let long_expired = hs256(&json!({ "exp": now - 60 }));
    assert_eq!(lenient.verdict(&request(None, Some(&long_expired))), BAD);
    let early = hs256(&json!({ "nbf": now + 60 }));
    assert_eq!(lenient.verdict(&request(None, Some(&early))), BAD);
    let almost = hs256(&json!({ "nbf": now + 3 }));
    assert_eq!(strict.verdict(&request(None, Some(&almost))), BAD);
    assert_eq!(lenient.verdict(&request(None, Some(&almost))), Verdict::Allow(None));
    // Far beyond what the clock holds: no panic, no limit.
    let far = hs256(&json!({ "exp": u64::MAX }));
    assert_eq!(lenient.verdict(&request(None, Some(&far))), Verdict::Allow(None));
    let bad_exp = hs256(&json!({ "exp": "tomorrow" }));
    assert_eq!(lenient.verdict(&request(None, Some(&bad_exp))), BAD);
}

#[test]
fn what_is_not_a_token_is_left_to_the_next_source() {
    let source = secret_source(0, &[]);
    for password in [None, Some("plain password"), Some("a.b"), Some("a.b.c.d")] {
        assert_eq!(source.verdict(&request(Some("u"), password)), Verdict::Ignore, "{password:?}");
    }
    let mut binary = request(Some("u"), None);
    binary.password = Some(vec![0xff, b'.', b'.'].into());
    assert_eq!(source.verdict(&binary), Verdict::Ignore);
    let mut enhanced = request(None, Some(&hs256(&json!({}))));
    enhanced.method = Some("SCRAM-SHA-256".into());
    assert_eq!(source.verdict(&enhanced), Verdict::Ignore);
    // Shaped like a token: this source's to refuse, not the next one's to let in.
    assert_eq!(source.verdict(&request(Some("u"), Some("a.b.c"))), BAD);
}

#[test]
fn verify_claims_compare_with_the_connect_and_literals() {
    let source = secret_source(0, &[("sub", "%u"), ("cid", "%c"), ("role", "device"), ("n", "7")]);
    let good = json!({ "sub": "alice", "cid": "dev-1", "role": "device", "n": 7 });
    let token = hs256(&good);
    assert_eq!(source.verdict(&request(Some("alice"), Some(&token))), Verdict::Allow(None));
    assert_eq!(source.verdict(&request(Some("mallory"), Some(&token))), BAD);
    assert_eq!(source.verdict(&request(None, Some(&token))), BAD, "%u without a user name");
    let mut other = request(Some("alice"), Some(&token));
    other.client_id = "dev-2".into();
    assert_eq!(source.verdict(&other), BAD);
    for (claim, value) in [("role", json!("admin")), ("n", json!(8)), ("sub", json!(["alice"]))] {
        let mut claims = good.clone();
        claims[claim] = value;
        assert_eq!(source.verdict(&request(Some("alice"), Some(&hs256(&claims)))), BAD, "{claim}");
    }
    let mut missing = good;
    missing.as_object_mut().unwrap().remove("role");
    assert_eq!(source.verdict(&request(Some("alice"), Some(&hs256(&missing)))), BAD);
}

#[test]
fn the_acl_claim_becomes_the_clients_rules() {
    let source = secret_source(0, &[]);
    let exp = now_s() + 100;
    let token = hs256(&json!({ "exp": exp, "acl": [
        { "permission": "deny", "action": "publish", "topic": "cmd/secret" },
        { "permission": "allow", "action": "publish", "topic": "cmd/#" },
        { "permission": "allow", "action": "subscribe", "topic": "tele/+/state" },
        { "permission": "allow", "action": "all", "topic": "mine/#" },
    ]}));
    let Verdict::AllowUntil(Some(acl), _) = source.verdict(&request(None, Some(&token))) else {
        panic!("an ACL expected");
    };
    let rule = |effect, access, filter: &str| AclRule { effect, access, filter: filter.into() };
    assert_eq!(
        *acl,
        Acl::new(vec![
            rule(Effect::Deny, Access::PUBLISH, "cmd/secret"),
            rule(Effect::Allow, Access::PUBLISH, "cmd/#"),
            rule(Effect::Allow, Access::SUBSCRIBE, "tele/+/state"),
            rule(Effect::Allow, Access::ALL, "mine/#"),
        ])
    );
    assert!(acl.may_publish("cmd/x") && !acl.may_publish("cmd/secret"));
    assert!(!acl.may_publish("tele/a/state") && !acl.may_publish("elsewhere"));
    // An empty list allows nothing; rules this source does not understand refuse the client.
    let empty = hs256(&json!({ "acl": [] }));
    assert_eq!(
        source.verdict(&request(None, Some(&empty))),
        Verdict::Allow(Some(Arc::new(Acl::new(vec![]))))
    );
    let not_authorized = Verdict::Deny(ReasonCode::NOT_AUTHORIZED);
    for bad in [
        json!({ "permission": "allow", "action": "read", "topic": "a" }),
        json!({ "permission": "maybe", "action": "all", "topic": "a" }),
        json!({ "permission": "allow", "action": "all", "topic": "a/#/b" }),
        json!({ "permission": "allow", "action": "publish" }),
        json!({ "permission": "allow", "action": "publish", "topic": "a", "clientid": "x" }),
    ] {
        let token = hs256(&json!({ "acl": [bad] }));
        assert_eq!(source.verdict(&request(None, Some(&token))), not_authorized, "{bad}");
    }
    let token = hs256(&json!({ "acl": { "pub": ["a"] } }));
    assert_eq!(source.verdict(&request(None, Some(&token))), not_authorized);
    // A condition this broker cannot enforce never widens: the allow rule it narrows is left
    // out (here: nothing is allowed), as for an HTTP service's answer.
    let narrowed = json!({ "permission": "allow", "action": "publish", "topic": "a", "qos": [0] });
    let token = hs256(&json!({ "acl": [narrowed] }));
    assert_eq!(
        source.verdict(&request(None, Some(&token))),
        Verdict::Allow(Some(Arc::new(Acl::new(vec![]))))
    );
}

/// An ES256 key pair: the private key as PKCS#8 PEM, the public key written to a file.
fn es256_pair(name: &str) -> (EncodingKey, PathBuf) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            break secret;
        }
    };
    let private = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public = secret.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let path = std::env::temp_dir().join(format!("musqratt-jwt-{}-{name}.pem", std::process::id()));
    std::fs::write(&path, public).unwrap();
    (EncodingKey::from_ec_pem(private.as_bytes()).unwrap(), path)
}

#[test]
fn es256_tokens_verify_with_the_public_key_only() {
    let (private, public) = es256_pair("verify");
    let source = JwtSource::new(&JwtConfig {
        public_key_file: Some(public.clone()),
        leeway_s: 0,
        ..JwtConfig::default()
    })
    .unwrap();
    let exp = now_s() + 60;
    let claims = json!({ "sub": "alice", "exp": exp });
    let es256 = Header::new(jsonwebtoken::Algorithm::ES256);
    let token = encode(&es256, &claims, &private).unwrap();
    assert_eq!(
        source.verdict(&request(None, Some(&token))),
        Verdict::AllowUntil(None, until(exp, 0))
    );
    // Another key pair's signature.
    let (other, other_public) = es256_pair("other");
    let forged = encode(&es256, &claims, &other).unwrap();
    assert_eq!(source.verdict(&request(None, Some(&forged))), BAD);
    // Algorithm confusion: an HMAC keyed with the public key's PEM text is not accepted.
    let pem = std::fs::read(&public).unwrap();
    let confused = encode(&Header::default(), &claims, &EncodingKey::from_secret(&pem)).unwrap();
    assert_eq!(source.verdict(&request(None, Some(&confused))), BAD);
    let _ = std::fs::remove_file(public);
    let _ = std::fs::remove_file(other_public);
}

/// SIGHUP's reload: the file's new key verifies from then on, the old one no longer; a file
/// that no longer holds a key keeps the one in use; a secret has nothing to reload.
#[test]
fn the_public_key_file_reloads() {
    let (first, public) = es256_pair("reload");
    let (second, second_public) = es256_pair("reload-second");
    let source = JwtSource::new(&JwtConfig {
        public_key_file: Some(public.clone()),
        ..JwtConfig::default()
    })
    .unwrap();
    let es256 = Header::new(jsonwebtoken::Algorithm::ES256);
    let claims = json!({ "sub": "alice" });
    let by_first = encode(&es256, &claims, &first).unwrap();
    let by_second = encode(&es256, &claims, &second).unwrap();
    let verdict = |token: &str| source.verdict(&request(None, Some(token)));
    assert_eq!(verdict(&by_first), Verdict::Allow(None));
    assert_eq!(verdict(&by_second), BAD);

    std::fs::copy(&second_public, &public).unwrap();
    assert!(verdict(&by_first) == Verdict::Allow(None), "nothing changes before the reload");
    assert!(source.reload().unwrap());
    assert_eq!(verdict(&by_second), Verdict::Allow(None));
    assert_eq!(verdict(&by_first), BAD);

    std::fs::write(&public, "not a key").unwrap();
    assert!(matches!(source.reload(), Err(JwtError::PublicKey { .. })));
    assert_eq!(verdict(&by_second), Verdict::Allow(None), "the key in use stays");

    assert!(!secret_source(0, &[]).reload().unwrap(), "a secret has no file");
    let _ = std::fs::remove_file(public);
    let _ = std::fs::remove_file(second_public);
}

/// RS256 with an RSA key pair `openssl` makes now (a pure-Rust RSA key generation takes
/// seconds in a debug build). Skipped without `openssl`, except in CI, which installs it.
#[test]
fn rs256_tokens_verify_with_an_rsa_public_key() {
    use std::process::Command;
    let dir = std::env::temp_dir();
    let private = dir.join(format!("musqratt-jwt-{}-rsa.key", std::process::id()));
    let public = dir.join(format!("musqratt-jwt-{}-rsa.pem", std::process::id()));
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&private)
        .output();
    let Ok(made) = made else {
        // CI installs openssl (.ci/run): there, a missing one fails rather than skips.
        assert!(std::env::var_os("CI").is_none(), "openssl is missing but CI must have it");
        eprintln!("SKIP: openssl not installed");
        return;
    };
    assert!(made.status.success(), "{made:?}");
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let source = JwtSource::new(&JwtConfig {
        public_key_file: Some(public.clone()),
        leeway_s: 0,
        ..JwtConfig::default()
    })
    .unwrap();
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
    let exp = now_s() + 60;
    let claims = json!({ "sub": "alice", "exp": exp });
    for alg in [jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::RS512] {
        let token = encode(&Header::new(alg), &claims, &key).unwrap();
        assert_eq!(
            source.verdict(&request(None, Some(&token))),
            Verdict::AllowUntil(None, until(exp, 0)),
            "{alg:?}"
        );
    }
    // An ES256 token is not for an RSA key, and an HS256 one keyed with the PEM is refused.
    let (es_key, es_public) = es256_pair("not-rsa");
    let es = encode(&Header::new(jsonwebtoken::Algorithm::ES256), &claims, &es_key).unwrap();
    assert_eq!(source.verdict(&request(None, Some(&es))), BAD);
    let pem = std::fs::read(&public).unwrap();
    let confused = encode(&Header::default(), &claims, &EncodingKey::from_secret(&pem)).unwrap();
    assert_eq!(source.verdict(&request(None, Some(&confused))), BAD);
    for path in [private, public, es_public] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn keys_are_checked_at_start() {
    let neither = JwtSource::new(&JwtConfig::default());
    assert!(matches!(neither, Err(JwtError::Key)));
    let both = JwtSource::new(&JwtConfig {
        secret: Some("s".into()),
        public_key_file: Some("/nonexistent".into()),
        ..JwtConfig::default()
    });
    assert!(matches!(both, Err(JwtError::Key)));
    let lax = JwtSource::new(&JwtConfig {
        secret: Some("s".into()),
        leeway_s: super::MAX_LEEWAY_S + 1,
        ..JwtConfig::default()
    });
    assert!(matches!(lax, Err(JwtError::Leeway(_))));
    let path = std::env::temp_dir().join(format!("musqratt-jwt-{}-bad.pem", std::process::id()));
    std::fs::write(&path, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n").unwrap();
    let bad =
        JwtSource::new(&JwtConfig { public_key_file: Some(path.clone()), ..JwtConfig::default() });
    assert!(matches!(bad, Err(JwtError::PublicKey { .. })), "{bad:?}");
    let _ = std::fs::remove_file(path);
    let missing = JwtSource::new(&JwtConfig {
        public_key_file: Some("/nonexistent/key.pem".into()),
        ..JwtConfig::default()
    });
    assert!(matches!(missing, Err(JwtError::PublicKey { .. })));
}

/// Through the broker's authenticator: a token's expiry becomes the engine's `AcceptFor`, a
/// token without an `acl` claim gets the ACL file's rules (here none), and a plain password
/// nobody knows is refused as before.
#[test]
fn file_auth_turns_exp_into_a_validity() {
    let files = Files::load(&FileAuthConfig::default()).unwrap();
    let jwt: Arc<dyn Source> = Arc::new(secret_source(1, &[]));
    let auth = musqratt_kit::Auth::new(FileAuth::with_sources(files, 1, vec![jwt]).unwrap());
    let decisions = musqratt_kit::Decisions::new(|| {});
    let ask = |password: &str| {
        auth.ask(ConnectionId(1), None, &request(Some("alice"), Some(password)), &decisions)
            .unwrap()
    };
    let token = hs256(&json!({ "exp": now_s() + 30 }));
    let AuthDecision::AcceptFor { acl: None, valid_for } = ask(&token) else {
        panic!("AcceptFor expected");
    };
    // exp + 1 s of leeway, counted from a whole second: between 30 and 31 s.
    assert!(valid_for > Duration::from_secs(29) && valid_for <= Duration::from_secs(31));
    let forever = hs256(&json!({ "sub": "alice" }));
    assert_eq!(ask(&forever), AuthDecision::Accept);
    assert_eq!(ask("not a token"), AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD));
}
