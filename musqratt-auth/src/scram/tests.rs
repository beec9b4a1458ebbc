//! Tests of the SCRAM source: RFC 7677's published example (an independent check of the
//! exchange's arithmetic), and SCRAM-SHA-512 and SCRAM-SHA-256 round trips with a client
//! written here from RFC 5802 §3's formulas (on `hmac::SimpleHmac` and `pbkdf2::pbkdf2`, not the
//! source's code paths). The socket test against Python's `scramp` is in
//! `musqratt/tests/scram.rs`.

use std::sync::{Arc, Mutex};

use hmac::SimpleHmac;
use hmac::digest::KeyInit;
use hmac::digest::core_api::BlockSizeUser;
use pbkdf2::pbkdf2_hmac;

use super::*;
use crate::file_auth::Files;
use crate::password_file::PasswordFile;

fn b64(text: &str) -> Vec<u8> {
    BASE64.decode(text).unwrap()
}

/// RFC 7677 §3: user "user", password "pencil", SCRAM-SHA-256, the server's messages as
/// published.
#[test]
fn rfc7677_sha256_example() {
    let client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    let salt = b64("W22ZaJ0SNY7soEsUEjb6gQ==");
    let mut salted = [0; 32];
    pbkdf2_hmac::<Sha256>(b"pencil", &salt, 4096, &mut salted);
    let keys = ServerKeys::from_salted(Mechanism::Sha256, &salted, &salt, 4096);
    // The same keys through an RFC 5803 password-file entry, printed and parsed back: the
    // store SCRAM-SHA-256 is served from.
    let entry = format!(
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${}:{}",
        BASE64.encode(&keys.stored_key),
        BASE64.encode(&keys.server_key)
    );
    let stored: StoredPassword = entry.parse().unwrap();
    assert!(stored.verify(b"pencil"));
    let keys = ServerKeys::from_stored(&stored, Mechanism::Sha256).expect("serves SHA-256");
    assert!(ServerKeys::from_stored(&stored, Mechanism::Sha512).is_none());
    let first = parse_client_first(client_first).unwrap_or_else(|_| panic!("client-first"));
    assert_eq!((first.username.as_str(), first.gs2_header.as_str()), ("user", "n,,"));
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned();
    assert_eq!(server_first_message(&nonce, &keys), server_first);
    let exchange = Exchange {
        started: Instant::now(),
        client_id: "c".into(),
        mechanism: Mechanism::Sha256,
        username: first.username,
        server_key: keys.server_key.clone(),
        decoy_stored_key: Vec::new(),
        keys: Some(keys),
        gs2_header: first.gs2_header,
        nonce,
        client_first_bare: first.bare,
        server_first: server_first.to_owned(),
    };
    assert_eq!(check_final(&exchange, client_final).unwrap(), server_final);
    // One bit of the proof changed: refused as a wrong password.
    let wrong = client_final.replace("p=dHz", "p=dHy");
    assert_eq!(check_final(&exchange, &wrong), Err(ReasonCode::BAD_USERNAME_OR_PASSWORD));
}

/// A SCRAM client after RFC 5802 §3, for the round trips.
struct Client {
    mechanism: Mechanism,
    password: &'static [u8],
    first_bare: String,
    nonce: String,
}

/// The client's ClientKey, ClientSignature's key and ServerKey functions for hash `D`:
/// `(ClientProof, ServerSignature)` for `auth_message`.
fn client_proofs<D: Digest + BlockSizeUser + Clone + Sync>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    auth_message: &str,
) -> (Vec<u8>, Vec<u8>) {
    let mut salted = vec![0; <D as Digest>::output_size()];
    pbkdf2::pbkdf2::<SimpleHmac<D>>(password, salt, iterations, &mut salted).unwrap();
    let mac = |key: &[u8], data: &[u8]| {
        let mut mac = <SimpleHmac<D> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    let client_key = mac(&salted, b"Client Key");
    let signature = mac(&D::digest(&client_key), auth_message.as_bytes());
    let proof = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    (proof, mac(&mac(&salted, b"Server Key"), auth_message.as_bytes()))
}

impl Client {
    fn new(user: &str, password: &'static [u8]) -> (Self, String) {
        Self::with(Mechanism::Sha512, user, password)
    }

    fn with(mechanism: Mechanism, user: &str, password: &'static [u8]) -> (Self, String) {
        let first_bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let nonce = "fyko+d2lbbFgONRv9qkxdawL".to_owned();
        let message = format!("n,,{first_bare}");
        (Self { mechanism, password, first_bare, nonce }, message)
    }

    /// The client-final for `server_first`, and the server-final it expects.
    fn last(&self, server_first: &str) -> (String, String) {
        let mut parts = server_first.split(',');
        let nonce = parts.next().unwrap().strip_prefix("r=").unwrap();
        assert!(nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len());
        let salt = b64(parts.next().unwrap().strip_prefix("s=").unwrap());
        let iterations: u32 = parts.next().unwrap().strip_prefix("i=").unwrap().parse().unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let (proof, server_signature) = match self.mechanism {
            Mechanism::Sha256 => {
                client_proofs::<Sha256>(self.password, &salt, iterations, &auth_message)
            }
            Mechanism::Sha512 => {
                client_proofs::<Sha512>(self.password, &salt, iterations, &auth_message)
            }
        };
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(server_signature)),
        )
    }
}

fn source(max_exchanges: usize, timeout: Duration) -> ScramSource {
    let mut file = PasswordFile::default();
    file.set("alice", StoredPassword::pbkdf2(b"pencil", 1000).unwrap());
    file.set("bob", StoredPassword::pbkdf2(b"other", 1000).unwrap());
    file.set("carol", StoredPassword::pbkdf2(b"other", 2000).unwrap());
    file.set("dave", StoredPassword::scram(Mechanism::Sha256, b"pencil", 4096).unwrap());
    file.set("erin", StoredPassword::scram(Mechanism::Sha256, b"other", 4096).unwrap());
    let files = SharedFiles::new(Files::from_password_file(file));
    ScramSource::new(files, &[Mechanism::Sha512, Mechanism::Sha256], timeout, max_exchanges)
}

fn ask(source: &ScramSource, conn: u64, method: &str, user: Option<&str>, data: &str) -> Verdict {
    let request = AuthRequest {
        client_id: "client".into(),
        username: user.map(Into::into),
        password: None,
        method: Some(method.into()),
        data: Some(Bytes::copy_from_slice(data.as_bytes())),
        protocol: musqratt_engine::proto::ProtocolVersion::V5,
        cert_cn: None,
        username_verified: false,
    };
    let answer = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&answer);
    let reply = VerdictReply::new(move |v| *slot.lock().unwrap() = Some(v))
        .for_connection(Some(ConnectionId(conn)));
    source.check(&request, reply);
    answer.lock().unwrap().take().expect("answered at once")
}

fn continued(verdict: Verdict) -> String {
    match verdict {
        Verdict::Continue(data) => String::from_utf8(data.to_vec()).unwrap(),
        other => panic!("{other:?}"),
    }
}

const SHA512: &str = "SCRAM-SHA-512";

#[test]
fn sha512_round_trip_from_a_7_entry() {
    let source = source(16, Duration::from_secs(10));
    let (client, first) = Client::new("alice", b"pencil");
    let server_first = continued(ask(&source, 1, SHA512, Some("alice"), &first));
    assert!(server_first.contains(",i=1000"), "{server_first}: the entry's iteration count");
    assert_eq!(source.pending(), 1);
    let (last, expected) = client.last(&server_first);
    let verdict = ask(&source, 1, SHA512, None, &last);
    let want = Verdict::AllowAs { username: "alice".into(), data: Some(expected.into()) };
    assert_eq!(verdict, want, "the client accepts the ServerSignature");
    assert_eq!(source.pending(), 0, "a finished exchange is forgotten");
    // Replaying the same client-final: no exchange is waiting for it.
    assert_eq!(ask(&source, 1, SHA512, None, &last), Verdict::Deny(ReasonCode::NOT_AUTHORIZED));
}

const SHA256: &str = "SCRAM-SHA-256";

/// SCRAM-SHA-256 from an RFC 5803 entry; each entry serves only its own mechanism (a `$7$`
/// user asking SHA-256, a SHA-256 user asking SHA-512: refused at the proof, as unknown users).
#[test]
fn sha256_round_trip_from_an_rfc5803_entry() {
    let source = source(16, Duration::from_secs(10));
    let (client, first) = Client::with(Mechanism::Sha256, "dave", b"pencil");
    let server_first = continued(ask(&source, 1, SHA256, Some("dave"), &first));
    assert!(server_first.ends_with(",i=4096"), "{server_first}: the entry's iteration count");
    assert_eq!(b64(server_first.split(',').nth(1).unwrap().strip_prefix("s=").unwrap()).len(), 16);
    let (last, expected) = client.last(&server_first);
    let want = Verdict::AllowAs { username: "dave".into(), data: Some(expected.into()) };
    assert_eq!(ask(&source, 1, SHA256, None, &last), want);

    let refused = Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let cases = [
        (Mechanism::Sha256, SHA256, "dave", &b"wrong"[..]),
        (Mechanism::Sha256, SHA256, "alice", b"pencil"),
        (Mechanism::Sha512, SHA512, "dave", b"pencil"),
        (Mechanism::Sha256, SHA256, "mallory", b"pencil"),
    ];
    for (conn, (mechanism, method, user, password)) in (2..).zip(cases) {
        let (client, first) = Client::with(mechanism, user, password);
        let server_first = continued(ask(&source, conn, method, None, &first));
        if user != "dave" {
            // A decoy shaped like the SHA-256 entries (4096 iterations, 16-byte salts) when
            // SHA-256 is asked, like the $7$ entries (1000, 12) when SHA-512 is.
            let want = if mechanism == Mechanism::Sha256 { ",i=4096" } else { ",i=1000" };
            assert!(server_first.ends_with(want), "{user}: {server_first}");
        }
        let (last, _) = client.last(&server_first);
        assert_eq!(ask(&source, conn, method, None, &last), refused, "{user} {method}");
    }
    assert_eq!(source.pending(), 0);
}

#[test]
fn wrong_password_and_unknown_user_fail_at_the_proof() {
    let source = source(16, Duration::from_secs(10));
    let (client, first) = Client::new("alice", b"wrong");
    let (last, _) = client.last(&continued(ask(&source, 1, SHA512, None, &first)));
    let refused = Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD);
    assert_eq!(ask(&source, 1, SHA512, None, &last), refused);
    assert_eq!(source.pending(), 0);

    // An unknown user: a salt that stays the same from try to try, the iteration count most
    // entries have (1000), and 0x86 at the end, as for a known user.
    let (client, first) = Client::new("mallory", b"pencil");
    let server_first = continued(ask(&source, 2, SHA512, None, &first));
    let again = continued(ask(&source, 3, SHA512, None, &first));
    let salt = |m: &str| m.split(',').nth(1).unwrap().to_owned();
    assert_eq!(salt(&server_first), salt(&again));
    assert_eq!(b64(&salt(&server_first)[2..]).len(), FAKE_SALT_LEN);
    assert!(server_first.ends_with(",i=1000"), "{server_first}");
    let other_user = continued(ask(&source, 4, SHA512, None, &Client::new("eve", b"x").1));
    assert_ne!(salt(&server_first), salt(&other_user));
    let (last, _) = client.last(&server_first);
    assert_eq!(ask(&source, 2, SHA512, None, &last), refused);
}

#[test]
fn malformed_messages_and_other_methods() {
    let source = source(16, Duration::from_secs(10));
    let not_authorized = Verdict::Deny(ReasonCode::NOT_AUTHORIZED);
    for bad in [
        "garbage",
        "p=tls-unique,,n=alice,r=abc",
        "n,,r=abc",
        "n,,m=ext,n=alice,r=abc",
        "n,,n=al=ice,r=abc",
        "n,,n=alice,r=",
        "n,a=bob,n=alice,r=abc",
        "c=biws,r=abc,p=AAAA",
    ] {
        assert_eq!(ask(&source, 1, SHA512, None, bad), not_authorized, "{bad}");
    }
    // The CONNECT's User Name and the SCRAM user differ.
    assert_eq!(ask(&source, 1, SHA512, Some("bob"), &Client::new("alice", b"").1), not_authorized);
    // A nonce or GS2 header that is not the exchange's.
    let (client, first) = Client::new("alice", b"pencil");
    let (last, _) = client.last(&continued(ask(&source, 1, SHA512, None, &first)));
    let tampered = last.replacen("r=fyko", "r=fykx", 1);
    assert_eq!(ask(&source, 1, SHA512, None, &tampered), not_authorized);
    let _ = continued(ask(&source, 1, SHA512, None, &first));
    assert_eq!(
        ask(&source, 1, SHA512, None, &last.replacen("c=biws", "c=eSws", 1)),
        not_authorized
    );
    assert_eq!(source.pending(), 0, "refusals forget the exchange");
    // Methods it does not serve are left to the next source (the chain ends with 0x8C).
    let files = SharedFiles::new(Files::from_password_file(PasswordFile::default()));
    let sha512_only = ScramSource::new(files, &[Mechanism::Sha512], Duration::from_secs(1), 1);
    assert_eq!(ask(&sha512_only, 1, "SCRAM-SHA-256", None, &first), Verdict::Ignore);
    assert_eq!(ask(&source, 1, "PLAIN", None, &first), Verdict::Ignore);
}

#[test]
fn exchanges_are_bounded_and_expire() {
    let source = source(1, Duration::from_secs(10));
    let first = Client::new("alice", b"pencil").1;
    let _ = continued(ask(&source, 1, SHA512, None, &first));
    assert_eq!(ask(&source, 2, SHA512, None, &first), Verdict::Deny(ReasonCode::SERVER_BUSY));
    // A new client-first on the same connection (a re-authentication) replaces its exchange.
    let _ = continued(ask(&source, 1, SHA512, None, &first));
    assert_eq!(source.pending(), 1);

    let source = source_expiring();
    let (client, first) = Client::new("alice", b"pencil");
    let server_first = continued(ask(&source, 1, SHA512, None, &first));
    // Expired: it makes room, and its client-final is refused.
    let _ = continued(ask(&source, 2, SHA512, None, &first));
    let (last, _) = client.last(&server_first);
    assert_eq!(ask(&source, 1, SHA512, None, &last), Verdict::Deny(ReasonCode::NOT_AUTHORIZED));
}

fn source_expiring() -> ScramSource {
    source(1, Duration::ZERO)
}

#[test]
fn saslnames_decode() {
    assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
    assert_eq!(decode_saslname("a=2"), None);
    assert_eq!(decode_saslname("a=41"), None);
    assert_eq!(decode_saslname(""), None);
}
