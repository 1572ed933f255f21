//! Cluster PKI: the CA made at `init`, node keys and CSRs, certificates signed at join.
//!
//! Every node certificate carries two DNS SANs: [`SERVER_NAME`] (the name every node is dialled
//! by) and `node-<id>.skein`, from which a peer's node id is read after the handshake.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::error::ClusterError;
use crate::types::NodeId;

/// TLS server name every node certificate is valid for.
pub const SERVER_NAME: &str = "skein-node";

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of a DER certificate: the value pinned with `--ca-hash`.
pub fn ca_hash(cert_der: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(cert_der)))
}

/// Parses `sha256:<64 hex>` into the digest.
pub(crate) fn parse_ca_hash(s: &str) -> Result<[u8; 32], ClusterError> {
    let bad = || ClusterError::Invalid(format!("CA hash {s:?} is not sha256:<64 hex digits>"));
    let h = s.strip_prefix("sha256:").ok_or_else(bad)?;
    if h.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Certificate PEM → DER.
pub(crate) fn cert_der(pem: &str) -> Result<CertificateDer<'static>, ClusterError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(ClusterError::tls)
}

/// Private key PEM → DER.
pub(crate) fn key_der(pem: &str) -> Result<PrivateKeyDer<'static>, ClusterError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(ClusterError::tls)
}

/// `sha256:` hash of a PEM certificate.
pub fn ca_hash_pem(pem: &str) -> Result<String, ClusterError> {
    Ok(ca_hash(&cert_der(pem)?))
}

/// How far back a certificate's validity starts, for clocks a little behind the signer's.
const BACKDATE: Duration = Duration::minutes(1);

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

/// New cluster CA: `(cert_pem, key_pem)`.
pub(crate) fn generate_ca() -> Result<(String, String), ClusterError> {
    let key = KeyPair::generate().map_err(ClusterError::tls)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ClusterError::tls)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "skein cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, Duration::days(365 * 20));
    let cert = params.self_signed(&key).map_err(ClusterError::tls)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// New node private key (PEM). It never leaves the node.
pub(crate) fn generate_node_key() -> Result<String, ClusterError> {
    Ok(KeyPair::generate()
        .map_err(ClusterError::tls)?
        .serialize_pem())
}

/// CSR (PEM) for the node key.
pub(crate) fn make_csr(key_pem: &str) -> Result<String, ClusterError> {
    let key = KeyPair::from_pem(key_pem).map_err(ClusterError::tls)?;
    let params =
        CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(ClusterError::tls)?;
    params
        .serialize_request(&key)
        .map_err(ClusterError::tls)?
        .pem()
        .map_err(ClusterError::tls)
}

fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, ClusterError> {
    let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| ClusterError::Invalid(format!("bad CSR: {e}")))?;
    CertificateSigningRequestParams::from_der(&csr_der)
        .map_err(|e| ClusterError::Invalid(format!("bad CSR: {e}")))
}

/// Hex SHA-256 of the public key of a CSR (its signature, checked on parsing, proves that the
/// sender holds the private key).
pub(crate) fn csr_key_sha256(csr_pem: &str) -> Result<String, ClusterError> {
    let csr = parse_csr(csr_pem)?;
    Ok(hex(&Sha256::digest(
        csr.public_key.subject_public_key_info(),
    )))
}

/// Hex SHA-256 of the public key of a node key (PEM).
pub(crate) fn key_sha256(key_pem: &str) -> Result<String, ClusterError> {
    let key = KeyPair::from_pem(key_pem).map_err(ClusterError::tls)?;
    Ok(hex(&Sha256::digest(key.subject_public_key_info())))
}

/// Checks that `ca_key_pem` is the private key of the CA certificate `ca_cert_pem`.
pub(crate) fn check_ca_key(ca_cert_pem: &str, ca_key_pem: &str) -> Result<(), ClusterError> {
    let key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| ClusterError::Invalid(format!("not a CA private key: {e}")))?;
    let der = cert_der(ca_cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| ClusterError::Invalid(format!("bad CA certificate: {e}")))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(ClusterError::Invalid(
            "this key is not the cluster CA's private key (it does not match ca.crt)".into(),
        ));
    }
    Ok(())
}

/// Validity of a certificate: `(not_before, not_after)` in unix ms.
pub(crate) fn validity_ms(cert_pem: &str) -> Result<(u64, u64), ClusterError> {
    let der = cert_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| ClusterError::Invalid(format!("bad certificate: {e}")))?;
    let ms = |t: x509_parser::time::ASN1Time| (t.timestamp().max(0) as u64) * 1000;
    Ok((
        ms(cert.validity().not_before),
        ms(cert.validity().not_after),
    ))
}

/// When a certificate valid over `(not_before, not_after)` is renewed: after two thirds of
/// its lifetime (counted from signing, not from the backdated start).
pub(crate) fn renew_at_ms((not_before, not_after): (u64, u64)) -> u64 {
    let signed = not_before + BACKDATE.whole_milliseconds() as u64;
    signed + not_after.saturating_sub(signed) * 2 / 3
}

/// Signs a CSR for `node`, valid for `lifetime`. Only the CSR's public key is used: names,
/// usages and validity are set here, so a node cannot ask for anything else.
pub(crate) fn sign_csr(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    csr_pem: &str,
    node: NodeId,
    lifetime: std::time::Duration,
) -> Result<String, ClusterError> {
    let csr = parse_csr(csr_pem)?;
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(ClusterError::tls)?;
    let issuer =
        Issuer::from_ca_cert_der(&cert_der(ca_cert_pem)?, ca_key).map_err(ClusterError::tls)?;
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string(), node_dns_name(node)])
        .map_err(ClusterError::tls)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("skein node {node}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let lifetime = Duration::try_from(lifetime)
        .map_err(|e| ClusterError::Invalid(format!("certificate lifetime: {e}")))?;
    validity(&mut params, lifetime);
    Ok(params
        .signed_by(&csr.public_key, &issuer)
        .map_err(ClusterError::tls)?
        .pem())
}

fn node_dns_name(node: NodeId) -> String {
    format!("node-{node}.skein")
}

/// The node id in a (verified) node certificate.
pub fn node_id_from_cert(der: &[u8]) -> Option<NodeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(s) => s
            .strip_prefix("node-")
            .and_then(|r| r.strip_suffix(".skein"))
            .and_then(|id| id.parse().ok()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_node_cert_carries_its_id() -> Result<(), ClusterError> {
        let (ca, ca_key) = generate_ca()?;
        let key = generate_node_key()?;
        let day = std::time::Duration::from_secs(86_400);
        let csr = make_csr(&key)?;
        let cert = sign_csr(&ca, &ca_key, &csr, 42, day)?;
        assert_eq!(node_id_from_cert(&cert_der(&cert)?), Some(42));
        assert_eq!(csr_key_sha256(&csr)?, key_sha256(&key)?);
        let (from, until) = validity_ms(&cert)?;
        assert_eq!(until - from, 86_400_000 + 60_000);
        assert_eq!(renew_at_ms((from, until)), from + 60_000 + 57_600_000);
        check_ca_key(&ca, &ca_key)?;
        assert!(check_ca_key(&ca, &key).is_err());
        let h = ca_hash_pem(&ca)?;
        assert!(h.starts_with("sha256:") && h.len() == 71);
        assert_eq!(hex(&parse_ca_hash(&h)?), h["sha256:".len()..]);
        assert!(parse_ca_hash("sha256:zz").is_err());
        assert!(sign_csr(&ca, &ca_key, "garbage", 1, day).is_err());
        Ok(())
    }
}
