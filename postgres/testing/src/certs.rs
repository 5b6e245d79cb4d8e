//! The certificates of a cluster started with `ssl = on`: a CA made for the
//! cluster and a server certificate it signs, for `localhost` and `127.0.0.1`.

use crate::{Error, fail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The names the server certificate is valid for.
pub(crate) const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A server certificate and key, and the CA certificate that signed it (PEM).
pub(crate) struct ServerCerts {
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

fn rcgen_fail(e: rcgen::Error) -> Error {
    fail(format!("cannot make a test certificate: {e}"))
}

fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_fail)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().map_err(rcgen_fail)?;
    CertifiedIssuer::self_signed(params, key).map_err(rcgen_fail)
}

/// A new CA, and a server certificate for [`SERVER_NAMES`] it signed.
pub(crate) fn server_certs() -> Result<ServerCerts, Error> {
    let ca = ca("tokenstore-pgtest CA")?;
    let names: Vec<String> = SERVER_NAMES.map(String::from).into();
    let mut params = CertificateParams::new(names).map_err(rcgen_fail)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "tokenstore-pgtest server");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(rcgen_fail)?;
    let cert = params.signed_by(&key, &ca).map_err(rcgen_fail)?;
    Ok(ServerCerts {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The PEM certificate of a new CA that signed nothing: a root a client can
/// trust to see a cluster's certificate refused.
pub fn unrelated_ca_pem() -> String {
    match ca("tokenstore-pgtest unrelated CA") {
        Ok(ca) => ca.pem(),
        Err(e) => panic!("tokenstore-pgtest: {e}"),
    }
}
