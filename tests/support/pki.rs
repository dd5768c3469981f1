//! Certificates made in the test with rcgen: a CA, the server's certificate for
//! `localhost` it signed, and client certificates (RFC 8705 tests) from the same CA.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose,
    IsCa, KeyPair,
};

pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
    pub server: Certificate,
    pub server_key: KeyPair,
}

impl Pki {
    /// A fresh CA and a server certificate for `localhost`.
    pub fn localhost() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        Self {
            ca,
            server,
            server_key,
        }
    }

    /// A client certificate for `name` (extended key usage `clientAuth`) and its key.
    pub fn client(&self, name: &str) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        (params.signed_by(&key, &self.ca).unwrap(), key)
    }
}
