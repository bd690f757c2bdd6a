//! A private CA and a server certificate signed by it (rcgen), for the TLS tests: the tests of
//! `ssl`/`tls://` loggers and of rlogd's TLS listeners all need one.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The CA's certificate and a certificate for some names with its key, PEM and DER.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

/// Where `Pki::write_to` put the PEM files.
pub struct PkiFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new CA and a certificate for `names` signed by it. The two have different subjects (CN
/// `rlog test CA` and the first name): with rcgen's default subject for both, OpenSSL peers
/// (nginx, librelp's OpenSSL back end) take the leaf for a self-signed certificate.
pub fn issue(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rlog test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}

impl Pki {
    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`.
    pub fn write_to(&self, dir: &Path) -> PkiFiles {
        let f = PkiFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        fs::write(&f.ca, &self.ca_pem).unwrap();
        fs::write(&f.cert, &self.cert_pem).unwrap();
        fs::write(&f.key, &self.key_pem).unwrap();
        f
    }
}
