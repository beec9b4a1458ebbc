//! Test certificates, made at test time with rcgen (no private key is committed): a CA and the
//! server and client certificates it signs, written as PEM files for a broker's `[tls]` table
//! and for the clients that trust it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate's PEM file and its key's.
pub type CertFiles = (PathBuf, PathBuf);

/// A test CA: its certificate is `DIR/NAME.pem`; [`TestCa::server`] and [`TestCa::client`]
/// write the certificates it signs beside it.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    pem: PathBuf,
}

impl core::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TestCa").field("pem", &self.pem).finish_non_exhaustive()
    }
}

/// What a certificate is for, and whether it is still valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client { expired: bool },
}

impl TestCa {
    /// A self-signed CA named `name`, its certificate written as `dir/NAME.pem`.
    ///
    /// # Panics
    /// The key cannot be made or the file written (a test's setup failing).
    #[must_use]
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a self-signed CA");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).expect("the CA certificate written");
        Self { cert, key, pem }
    }

    /// The CA's certificate (PEM): what clients trust, or a broker's `tls.ca_file`.
    #[must_use]
    pub fn pem_file(&self) -> &Path {
        &self.pem
    }

    /// A server certificate for `localhost` and `127.0.0.1` with common name `name`, written as
    /// `dir/NAME.pem` and `dir/NAME.key`.
    ///
    /// # Panics
    /// As [`TestCa::new`].
    #[must_use]
    pub fn server(&self, dir: &Path, name: &str) -> CertFiles {
        self.sign(dir, name, Role::Server)
    }

    /// A client certificate with common name `cn` (the user name with
    /// `identity_as_username`), written as `dir/CN.pem` and `dir/CN.key`; `expired`: valid
    /// only in 2001.
    ///
    /// # Panics
    /// As [`TestCa::new`].
    #[must_use]
    pub fn client(&self, dir: &Path, cn: &str, expired: bool) -> CertFiles {
        self.sign(dir, cn, Role::Client { expired })
    }

    fn sign(&self, dir: &Path, cn: &str, role: Role) -> CertFiles {
        let key = KeyPair::generate().expect("a key");
        let names = match role {
            Role::Server => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            Role::Client { .. } => Vec::new(),
        };
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client { .. } => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if role == (Role::Client { expired: true }) {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("a signed certificate");
        let (cert_file, key_file) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")));
        std::fs::write(&cert_file, cert.pem()).expect("the certificate written");
        std::fs::write(&key_file, key.serialize_pem()).expect("the key written");
        (cert_file, key_file)
    }
}
