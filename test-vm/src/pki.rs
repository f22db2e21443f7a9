//! A certificate authority for the test machines: it issues their TLS
//! certificates, and its certificate is what the host's clients trust and
//! what provisioning hands the machines as their federation CA bundle.

use std::fs;
use std::path::Path;

use anyhow::Result;

pub struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> Result<Self> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Archipel VM test CA");
        let key = rcgen::KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes a certificate for `name` and its key into `dir` as
    /// `fullchain.pem` and `key.pem`.
    pub fn issue(&self, name: &str, dir: &Path) -> Result<()> {
        let params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
        let key = rcgen::KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        fs::create_dir_all(dir)?;
        fs::write(dir.join("fullchain.pem"), certificate.pem())?;
        fs::write(dir.join("key.pem"), key.serialize_pem())?;
        Ok(())
    }
}
