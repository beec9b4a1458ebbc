//! The TLS layer against a rustls client in memory: handshakes and MQTT bytes split at odd
//! boundaries, mutual TLS (a certificate from another CA and an expired one refused, the
//! common name seen), and the settings refused at load naming the file.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::*;
use crate::layer::{Stack, StackError};

/// A CA that signs certificates for the tests.
struct Ca {
    cert: Certificate,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { pem: cert.pem(), cert, key }
    }

    /// A certificate and its key (PEM): for a server (SAN localhost, 127.0.0.1) or a client.
    fn sign(&self, cn: &str, client: bool, expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names = if client { vec![] } else { vec!["localhost".into(), "127.0.0.1".into()] };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        (params.signed_by(&key, &self.cert, &self.key).unwrap().pem(), key.serialize_pem())
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("musqratt-kit-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Server settings in `dir`, signed by `ca`; `clients` is the CA of client certificates.
fn settings(dir: &Path, ca: &Ca, clients: Option<&Ca>, require: bool) -> TlsSettings {
    let (cert, key) = ca.sign("broker", false, false);
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let mut settings = TlsSettings::new(dir.join("server.pem"), dir.join("server.key"));
    if let Some(clients) = clients {
        std::fs::write(dir.join("ca.pem"), &clients.pem).unwrap();
        settings.ca_file = Some(dir.join("ca.pem"));
    }
    settings.require_client_cert = require;
    settings
}

fn client(ca: &Ca, identity: Option<(String, String)>) -> ClientConnection {
    client_with_alpn(ca, identity, &[])
}

fn client_with_alpn(
    ca: &Ca,
    identity: Option<(String, String)>,
    alpn: &[&str],
) -> ClientConnection {
    client_with(ca, identity, alpn, rustls::DEFAULT_VERSIONS)
}

fn client_with(
    ca: &Ca,
    identity: Option<(String, String)>,
    alpn: &[&str],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConnection {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Moves the client's bytes to the server's stack in pieces of 1, 2, 3, ... bytes (odd cuts
/// through every record header), and the stack's answers back to the client, until neither has
/// anything to say. Returns what came up to the engine.
fn pump(client: &mut ClientConnection, server: &mut Stack) -> Result<Vec<u8>, StackError> {
    let mut up = Vec::new();
    for _ in 0..20 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut answers = Vec::new();
        let (mut from, mut piece) = (0, 1);
        while from < wire.len() {
            let to = (from + piece).min(wire.len());
            let read =
                server.read(BytesMut::from(&wire[from..to]), |c| answers.push(c)).into_result()?;
            up.extend(read.iter().flat_map(|b| b.iter().copied()));
            (from, piece) = (to, piece % 97 + 1);
        }
        if wire.is_empty() && answers.is_empty() {
            break;
        }
        for answer in answers {
            let mut rest = &answer[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
            }
            if client.process_new_packets().is_err() {
                // The client refused the server: what it says goes back once more.
                break;
            }
        }
    }
    Ok(up)
}

fn stack(settings: &TlsSettings) -> Stack {
    Layers::tls(settings.load().unwrap()).stack("127.0.0.1:1".parse().unwrap())
}

#[test]
fn mqtt_bytes_through_a_handshake_both_ways() {
    let dir = scratch("both");
    let ca = Ca::new("test CA");
    let mut server = stack(&settings(&dir, &ca, None, false));
    let mut client = client(&ca, None);
    assert_eq!(pump(&mut client, &mut server).unwrap(), b"");
    assert!(!client.is_handshaking());
    // A CONNECT and a PUBLISH with a 40 KiB payload: several records, cut anywhere.
    let mut plain = vec![0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'c'];
    plain.extend_from_slice(&[0x30, 0x85, 0xc0, 0x02, 0, 1, b't']);
    plain.extend((0..40_960u32).map(|i| (i % 251) as u8));
    client.writer().write_all(&plain).unwrap();
    assert_eq!(pump(&mut client, &mut server).unwrap(), plain);
    // The broker's answer, as the engine writes it: a CONNACK and the same PUBLISH back.
    assert_eq!(server.written(1 << 30), 0, "handshake bytes are not the engine's");
    let mut wire = Vec::new();
    for chunk in [&plain[..0], &[0x20, 0x02, 0, 0][..], &plain[15..]] {
        server.write(Bytes::copy_from_slice(chunk), |c| wire.extend_from_slice(&c)).unwrap();
    }
    assert!(wire.len() > plain.len() - 15 + 4, "records carry overhead");
    assert_eq!(server.written(wire.len() - 1), 4, "the CONNACK is out, the PUBLISH not all");
    assert_eq!(server.written(1), plain.len() - 15);
    let (mut rest, mut got) = (&wire[..], Vec::new());
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
        let _ = client.reader().read_to_end(&mut got);
    }
    assert_eq!(got[..4], [0x20, 0x02, 0, 0]);
    assert_eq!(got[4..], plain[15..]);
    // A chunk larger than rustls' 64 KiB send buffer comes out whole, in order.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let mut wire = Vec::new();
    server.write(Bytes::from(big.clone()), |c| wire.extend_from_slice(&c)).unwrap();
    let (mut rest, mut got) = (&wire[..], Vec::new());
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
        let _ = client.reader().read_to_end(&mut got);
    }
    assert_eq!(got, big);
    // Closing sends close_notify: the client sees a clean end of stream.
    let mut last = Vec::new();
    server.close(|c| last.extend_from_slice(&c));
    client.read_tls(&mut &last[..]).unwrap();
    client.process_new_packets().unwrap();
    assert_eq!(client.reader().read(&mut [0; 8]).unwrap(), 0);
    // The client's close_notify ends the server's side.
    client.send_close_notify();
    let mut server = stack(&settings(&dir, &ca, None, false));
    let mut client = self::client(&ca, None);
    pump(&mut client, &mut server).unwrap();
    client.send_close_notify();
    let error = pump(&mut client, &mut server).unwrap_err();
    assert_eq!(error, StackError { layer: "tls", error: LayerError::PeerClosed });
    // A DISCONNECT and close_notify in one read: the DISCONNECT reaches the engine (no will
    // is published), and the connection ends at the next read.
    let mut server = stack(&settings(&dir, &ca, None, false));
    let mut client = self::client(&ca, None);
    pump(&mut client, &mut server).unwrap();
    client.writer().write_all(&[0xe0, 0x00]).unwrap();
    client.send_close_notify();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let up = server.read(BytesMut::from(&wire[..]), |_| {}).into_result().unwrap();
    assert_eq!(up.as_deref(), Some(&[0xe0, 0x00][..]));
    let error = server.read(BytesMut::from(&b"more"[..]), |_| {}).into_result().unwrap_err();
    assert_eq!(error.error, LayerError::PeerClosed);
    std::fs::remove_dir_all(dir).unwrap();
}

/// What the server layer writes, as the client reads it.
fn to_client(server: &mut Stack, client: &mut ClientConnection, chunk: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    server.write(Bytes::copy_from_slice(chunk), |c| wire.extend_from_slice(&c)).unwrap();
    let (mut rest, mut got) = (&wire[..], Vec::new());
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
        let _ = client.reader().read_to_end(&mut got);
    }
    got
}

#[test]
fn tls_1_2_and_key_updates_carry_bytes_both_ways() {
    let dir = scratch("versions");
    let ca = Ca::new("test CA");
    let settings = settings(&dir, &ca, None, false);
    let plain: Vec<u8> = (0..20_000u32).map(|i| (i % 239) as u8).collect();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut server = stack(&settings);
        let mut client = client_with(&ca, None, &[], &[version]);
        assert_eq!(pump(&mut client, &mut server).unwrap(), b"");
        assert_eq!(client.protocol_version(), Some(version.version));
        client.writer().write_all(&plain).unwrap();
        assert_eq!(pump(&mut client, &mut server).unwrap(), plain);
        assert_eq!(to_client(&mut server, &mut client, &plain), plain);
        if version == &rustls::version::TLS13 {
            // The client's KeyUpdate asks for the server's: both sides change keys, and the
            // bytes still come through both ways.
            client.refresh_traffic_keys().unwrap();
            client.writer().write_all(&plain[..100]).unwrap();
            assert_eq!(pump(&mut client, &mut server).unwrap(), &plain[..100]);
            assert_eq!(to_client(&mut server, &mut client, &plain[..100]), &plain[..100]);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writes_before_the_handshake_ends_go_out_after_it() {
    let dir = scratch("early");
    let ca = Ca::new("test CA");
    let mut server = stack(&settings(&dir, &ca, None, false));
    let mut client = client(&ca, None);
    let mut wire = Vec::new();
    server.write(Bytes::from_static(b"early"), |c| wire.extend_from_slice(&c)).unwrap();
    assert!(wire.is_empty(), "held until the handshake ends");
    assert_eq!(pump(&mut client, &mut server).unwrap(), b"");
    let mut got = Vec::new();
    let _ = client.reader().read_to_end(&mut got);
    assert_eq!(got, b"early");
    // More than the 64 KiB rustls' buffered connection held is refused.
    let mut server = stack(&settings(&dir, &ca, None, false));
    let error = server.write(Bytes::from(vec![0; 0x1_0001]), |_| {}).unwrap_err();
    assert_eq!(error.error, LayerError::TooLarge);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn plain_mqtt_at_a_tls_layer_is_refused() {
    let dir = scratch("plain");
    let ca = Ca::new("test CA");
    let mut server = stack(&settings(&dir, &ca, None, false));
    let connect = [0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'c'];
    let mut answer = Vec::new();
    let error =
        server.read(BytesMut::from(&connect[..]), |c| answer.extend_from_slice(&c)).into_result();
    assert_eq!(error.unwrap_err().error, LayerError::Handshake);
    // The alert saying why goes out before the close: decode_error, fatal, in plaintext.
    assert_eq!(answer, [0x15, 3, 3, 0, 2, 2, 50]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mutual_tls_verifies_the_client_and_names_it() {
    let dir = scratch("mutual");
    let (ca, clients, other) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("other CA"));
    let mut settings = settings(&dir, &ca, Some(&clients), true);
    settings.identity_as_username = true;

    let mut server = stack(&settings);
    let mut good = client(&ca, Some(clients.sign("sensor-7", true, false)));
    assert_eq!(pump(&mut good, &mut server).unwrap(), b"");
    assert!(!good.is_handshaking());
    let peer = server.identity();
    assert_eq!(peer.certificate_cn.as_deref(), Some("sensor-7"));
    assert_eq!(peer.username.as_deref(), Some("sensor-7"));

    for (what, identity) in [
        ("no certificate", None),
        ("another CA", Some(other.sign("mallory", true, false))),
        ("expired", Some(clients.sign("old", true, true))),
    ] {
        let mut server = stack(&settings);
        let mut refused = client(&ca, identity);
        let error = pump(&mut refused, &mut server).unwrap_err();
        assert_eq!(error.error, LayerError::Handshake, "{what}");
        assert_eq!(server.identity().certificate_cn, None, "{what}");
    }

    // Optional client certificates: none is fine, a bad one is still refused.
    settings.require_client_cert = false;
    settings.identity_as_username = false;
    let mut server = stack(&settings);
    let mut anonymous = client(&ca, None);
    pump(&mut anonymous, &mut server).unwrap();
    assert!(!anonymous.is_handshaking());
    assert_eq!(server.identity().certificate_cn, None);
    let mut server = stack(&settings);
    let mut named = client(&ca, Some(clients.sign("sensor-8", true, false)));
    pump(&mut named, &mut server).unwrap();
    let peer = server.identity();
    assert_eq!((peer.certificate_cn.as_deref(), peer.username), (Some("sensor-8"), None));
    let mut server = stack(&settings);
    let mut bad = client(&ca, Some(other.sign("mallory", true, false)));
    assert!(pump(&mut bad, &mut server).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn alpn_is_offered_when_configured() {
    let dir = scratch("alpn");
    let ca = Ca::new("test CA");
    let mut settings = settings(&dir, &ca, None, false);
    settings.alpn = vec!["mqtt".into()];
    let mut server = stack(&settings);
    let mut client = client(&ca, None);
    pump(&mut client, &mut server).unwrap();
    // A client that offers nothing: ALPN stays off, the handshake succeeds.
    assert!(!client.is_handshaking());
    assert_eq!(client.alpn_protocol(), None);
    let mut server = stack(&settings);
    let mut client = client_with_alpn(&ca, None, &["x-other", "mqtt"]);
    pump(&mut client, &mut server).unwrap();
    assert_eq!(client.alpn_protocol(), Some(&b"mqtt"[..]));
    // A client that offers only protocols the broker does not speak is refused.
    let mut server = stack(&settings);
    let mut client = client_with_alpn(&ca, None, &["http/1.1"]);
    assert_eq!(pump(&mut client, &mut server).unwrap_err().error, LayerError::Handshake);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_settings_name_the_file() {
    let dir = scratch("bad");
    let ca = Ca::new("test CA");
    let good = settings(&dir, &ca, None, false);
    let missing = TlsSettings::new(dir.join("nope.pem"), &good.key_file);
    let error = missing.load().unwrap_err();
    assert_eq!(error.file, dir.join("nope.pem"));
    assert!(error.message.contains("cannot read"), "{error}");

    std::fs::write(dir.join("garbage.pem"), "not a pem file\n").unwrap();
    let garbage = TlsSettings::new(&good.cert_file, dir.join("garbage.pem"));
    assert_eq!(garbage.load().unwrap_err().file, dir.join("garbage.pem"));
    let garbage = TlsSettings::new(dir.join("garbage.pem"), &good.key_file);
    assert_eq!(garbage.load().unwrap_err().file, dir.join("garbage.pem"));

    std::fs::write(dir.join("other.key"), KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let mismatch = TlsSettings::new(&good.cert_file, dir.join("other.key"));
    let error = mismatch.load().unwrap_err();
    assert_eq!(error.file, dir.join("other.key"));
    assert!(error.message.contains("not the key of the certificate"), "{error}");

    let mut no_ca = good.clone();
    no_ca.require_client_cert = true;
    assert!(no_ca.load().unwrap_err().message.contains("ca_file"));
    assert!(good.load().is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn common_names_from_der() {
    let ca = Ca::new(
        "CA with a long name that takes more than 127 bytes of DER to encode, \
                      so that lengths in long form are walked too ......................",
    );
    let (cert, _) = ca.sign("ünïcode-cn", true, false);
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(common_name(&der).as_deref(), Some("ünïcode-cn"));
    let der = CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
    assert!(common_name(&der).unwrap().starts_with("CA with a long name"));
    assert_eq!(common_name(&der[..der.len() / 2]), None);
    assert_eq!(common_name(b""), None);
}

/// `identity_as_username` (Mosquitto's `use_identity_as_username`): only with required client
/// certificates, and a certificate without a common name is refused by the handshake: the
/// client would otherwise have no user name but the one it claims in CONNECT.
#[test]
fn identity_as_username_needs_a_named_certificate() {
    let dir = scratch("identity");
    let (ca, clients) = (Ca::new("server CA"), Ca::new("client CA"));
    let mut settings = settings(&dir, &ca, Some(&clients), false);
    settings.identity_as_username = true;
    let error = settings.load().unwrap_err();
    assert!(error.message.contains("require_client_cert"), "{error}");

    settings.require_client_cert = true;
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "no common name");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let nameless = params.signed_by(&key, &clients.cert, &clients.key).unwrap();
    let mut server = stack(&settings);
    let mut client = client(&ca, Some((nameless.pem(), key.serialize_pem())));
    assert_eq!(pump(&mut client, &mut server).unwrap_err().error, LayerError::Handshake);

    let mut server = stack(&settings);
    let mut named = self::client(&ca, Some(clients.sign("sensor-7", true, false)));
    pump(&mut named, &mut server).unwrap();
    assert_eq!(server.identity().username.as_deref(), Some("sensor-7"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// What SIGHUP does (issue 15): a reload serves connections accepted afterwards with the new
/// certificate (from another CA here), a connection established before keeps its session,
/// and files that do not load leave the configuration in use as it was, naming the file.
#[test]
fn reload_changes_the_certificate_of_new_connections_only() {
    let dir = scratch("reload");
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let settings = settings(&dir, &old_ca, None, false);
    let config = settings.load().unwrap();
    let layers = Layers::tls(config.clone());
    let peer = "127.0.0.1:1".parse().unwrap();
    let mut established = layers.stack(peer);
    let mut old_client = client(&old_ca, None);
    pump(&mut old_client, &mut established).unwrap();
    assert!(!old_client.is_handshaking());

    let (cert, key) = new_ca.sign("broker", false, false);
    std::fs::write(&settings.cert_file, cert).unwrap();
    std::fs::write(&settings.key_file, key).unwrap();
    let mut before_reload = layers.stack(peer);
    let error = pump(&mut client(&new_ca, None), &mut before_reload);
    assert!(error.is_err(), "the files are read at load and reload only");
    config.reload().unwrap();
    let mut server = layers.stack(peer);
    let mut new_client = client(&new_ca, None);
    pump(&mut new_client, &mut server).unwrap();
    assert!(!new_client.is_handshaking());
    assert!(pump(&mut client(&old_ca, None), &mut layers.stack(peer)).is_err());

    // The established session still carries data both ways.
    old_client.writer().write_all(&[0xc0, 0x00]).unwrap();
    assert_eq!(pump(&mut old_client, &mut established).unwrap(), [0xc0, 0x00]);
    let mut wire = Vec::new();
    established.write(Bytes::from_static(&[0xd0, 0x00]), |c| wire.extend_from_slice(&c)).unwrap();
    old_client.read_tls(&mut &wire[..]).unwrap();
    old_client.process_new_packets().unwrap();
    let mut pong = [0; 2];
    old_client.reader().read_exact(&mut pong).unwrap();
    assert_eq!(pong, [0xd0, 0x00]);

    // A key that no longer loads: refused naming it, the new certificate stays in use.
    std::fs::write(&settings.key_file, "-----BEGIN NOTHING-----\n").unwrap();
    assert_eq!(config.reload().unwrap_err().file, settings.key_file);
    let mut server = layers.stack(peer);
    let mut client = client(&new_ca, None);
    pump(&mut client, &mut server).unwrap();
    assert!(!client.is_handshaking());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Moves each side's socket bytes to the other, cut in pieces of 1, 2, 3, ... bytes, until
/// neither says anything more. Returns what came up to each side's engine.
fn exchange(
    client: &mut Stack,
    mut to_server: Vec<u8>,
    server: &mut Stack,
) -> Result<(Vec<u8>, Vec<u8>), StackError> {
    let (mut client_got, mut server_got) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut to_client = Vec::new();
        let (mut from, mut piece) = (0, 1);
        while from < to_server.len() {
            let to = (from + piece).min(to_server.len());
            let bytes = BytesMut::from(&to_server[from..to]);
            let read = server.read(bytes, |c| to_client.extend_from_slice(&c)).into_result()?;
            server_got.extend(read.iter().flat_map(|b| b.iter().copied()));
            (from, piece) = (to, piece % 89 + 1);
        }
        to_server.clear();
        if to_client.is_empty() {
            break;
        }
        let read = client
            .read(BytesMut::from(&to_client[..]), |c| to_server.extend_from_slice(&c))
            .into_result()?;
        client_got.extend(read.iter().flat_map(|b| b.iter().copied()));
    }
    Ok((client_got, server_got))
}

#[test]
fn the_client_layer_talks_to_the_server_layer() {
    let dir = scratch("client");
    let ca = Ca::new("test CA");
    std::fs::write(dir.join("trust.pem"), &ca.pem).unwrap();
    let trust = TlsClientConfig::from_ca_file(&dir.join("trust.pem")).unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let mut server = stack(&settings(&dir, &ca, None, false));
        let layer: Box<dyn StreamLayer> = Box::new(trust.layer(name).unwrap());
        let mut client = Stack::new(vec![layer], None);
        // The first write starts the handshake: a ClientHello, the CONNECT held until it ends.
        let connect = [0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'c'];
        let mut wire = Vec::new();
        client.write(Bytes::copy_from_slice(&connect), |c| wire.extend_from_slice(&c)).unwrap();
        assert_eq!(wire[0], 0x16, "a handshake record");
        assert!(!wire.windows(4).any(|w| w == b"MQTT"), "the CONNECT waits for the handshake");
        let (got, at_server) = exchange(&mut client, wire, &mut server).unwrap();
        assert_eq!((got.as_slice(), at_server.as_slice()), (&b""[..], &connect[..]), "{name}");
        // Both ways after the handshake, a 40 KiB PUBLISH over several records.
        let mut publish = vec![0x30, 0x85, 0xc0, 0x02, 0, 1, b't'];
        publish.extend((0..40_960u32).map(|i| (i % 251) as u8));
        let mut wire = Vec::new();
        server.write(Bytes::from(publish.clone()), |c| wire.extend_from_slice(&c)).unwrap();
        let read = client.read(BytesMut::from(&wire[..]), |_| {}).into_result().unwrap();
        assert_eq!(read.as_deref(), Some(&publish[..]));
        let mut wire = Vec::new();
        client.write(Bytes::from(publish.clone()), |c| wire.extend_from_slice(&c)).unwrap();
        let (_, at_server) = exchange(&mut client, wire, &mut server).unwrap();
        assert_eq!(at_server, publish);
        // The client's close_notify ends the server's side.
        let mut last = Vec::new();
        client.close(|c| last.extend_from_slice(&c));
        let end = server.read(BytesMut::from(&last[..]), |_| {}).end;
        assert_eq!(end, Some(StackError { layer: "tls", error: LayerError::PeerClosed }));
    }
    // A server whose certificate is from another CA, or for another name, is refused.
    let other = Ca::new("other CA");
    for (server_ca, name) in [(&other, "localhost"), (&ca, "example.com")] {
        let mut server = stack(&settings(&dir, server_ca, None, false));
        let mut client = Stack::new(vec![Box::new(trust.layer(name).unwrap())], None);
        let mut wire = Vec::new();
        client.write(Bytes::from_static(b"\x10"), |c| wire.extend_from_slice(&c)).unwrap();
        let error = exchange(&mut client, wire, &mut server).unwrap_err();
        assert_eq!(error, StackError { layer: "tls-client", error: LayerError::Handshake });
    }
    assert!(trust.layer("not a name!").is_err());
    assert!(TlsClientConfig::from_ca_file(&dir.join("missing.pem")).is_err());
}
