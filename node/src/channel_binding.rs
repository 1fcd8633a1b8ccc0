//! TLS channel bindings for SCRAM-*-PLUS (RFC 5056): `tls-exporter` of a
//! TLS 1.3 connection (RFC 9266) and `tls-server-end-point` (RFC 5929 §4),
//! the hash of the server's certificate, which any TLS version has and any
//! client library can compute from the certificate it received.
//!
//! `tls-unique` (RFC 5929 §3) is not here: TLS 1.3 does not define it and
//! rustls does not expose the Finished message it needs on TLS 1.2.
//!
//! The certificate's signature algorithm is read with a few lines of DER
//! walking rather than a whole X.509 crate: only the outer SEQUENCE and
//! the signatureAlgorithm's OID are needed, and every step is bounded.

use proto::sasl::{ChannelBinding, TLS_EXPORTER, TLS_SERVER_END_POINT};
use rustls::ProtocolVersion;
use sha2::Digest;

/// RFC 9266 §2: the exporter label of `tls-exporter`.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// RFC 9266 §2: 32 bytes, no context.
const EXPORTER_LEN: usize = 32;

/// The bindings of a server connection: `tls-exporter` on TLS 1.3, and
/// `tls-server-end-point` when `end_point` (from [`server_end_point`]) is
/// known. TLS 1.2's exporter is left out: it is not safe without the
/// extended master secret (RFC 9266 §3).
pub fn server_bindings(
    conn: &rustls::ServerConnection,
    end_point: Option<&[u8]>,
) -> Vec<ChannelBinding> {
    let mut out = Vec::with_capacity(2);
    if conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
        && let Ok(data) = conn.export_keying_material(vec![0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
    {
        out.push(ChannelBinding {
            kind: TLS_EXPORTER,
            data,
        });
    }
    if let Some(h) = end_point {
        out.push(ChannelBinding {
            kind: TLS_SERVER_END_POINT,
            data: h.to_vec(),
        });
    }
    out
}

/// The client side of `tls-exporter`, for SCRAM-*-PLUS clients.
pub fn exporter_client(conn: &rustls::ClientConnection) -> Option<Vec<u8>> {
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material(vec![0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
        .ok()
}

/// The hash RFC 5929 §4.1 takes for a certificate signed with an
/// algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

/// RFC 5929 §4.1: the hash of the certificate (DER) with the hash of its
/// signature algorithm, SHA-256 in place of MD5 and SHA-1. `None` when the
/// algorithm uses no single hash (Ed25519, RSA-PSS with parameters) or is
/// unknown, or the DER cannot be read: the binding is then not offered.
pub fn server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_oid(cert_der)?;
    let h = hash_of(oid)?;
    Some(match h {
        EndPointHash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
        EndPointHash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        EndPointHash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
    })
}

/// The hash for a signatureAlgorithm OID (content bytes).
fn hash_of(oid: &[u8]) -> Option<EndPointHash> {
    // 1.2.840.113549.1.1.x: RSA PKCS #1.
    const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    // 1.2.840.10045.4.1 (SHA-1) and 1.2.840.10045.4.3.x: ECDSA.
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    use EndPointHash::*;
    if oid == ECDSA_SHA1 {
        return Some(Sha256);
    }
    let (prefix, last) = oid.split_at(oid.len().checked_sub(1)?);
    match (prefix, last) {
        // md5WithRSA, sha1WithRSA: SHA-256 instead; sha224: SHA-256 is the
        // nearest we have and RFC 5929 would take SHA-224, so not offered.
        (PKCS1, [4 | 5]) => Some(Sha256),
        (PKCS1, [11]) => Some(Sha256),
        (PKCS1, [12]) => Some(Sha384),
        (PKCS1, [13]) => Some(Sha512),
        (ECDSA_SHA2, [2]) => Some(Sha256),
        (ECDSA_SHA2, [3]) => Some(Sha384),
        (ECDSA_SHA2, [4]) => Some(Sha512),
        _ => None,
    }
}

/// The OID of `Certificate.signatureAlgorithm` (RFC 5280 §4.1):
/// SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE {
/// algorithm OID, ... }, signatureValue BIT STRING }.
fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _tbs, rest) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = tlv(alg)?;
    (tag == 0x06).then_some(oid)
}

/// One DER element: (tag, content, what follows). Definite lengths of up
/// to four bytes only, as DER has them for any certificate.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        let p256 = cert_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        let h = server_end_point(&p256).expect("p-256 with sha-256 has a binding");
        assert_eq!(h, sha2::Sha256::digest(&p256).to_vec());
        let p384 = cert_with(&rcgen::PKCS_ECDSA_P384_SHA384);
        let h = server_end_point(&p384).expect("p-384 with sha-384 has a binding");
        assert_eq!(h, sha2::Sha384::digest(&p384).to_vec());
        // Ed25519 signs with no separate hash: RFC 5929 leaves it undefined.
        let ed = cert_with(&rcgen::PKCS_ED25519);
        assert_eq!(server_end_point(&ed), None);
    }

    #[test]
    fn the_oid_table_maps_md5_and_sha1_to_sha256() {
        let rsa = |x: u8| [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, x];
        assert_eq!(hash_of(&rsa(4)), Some(EndPointHash::Sha256));
        assert_eq!(hash_of(&rsa(5)), Some(EndPointHash::Sha256));
        assert_eq!(hash_of(&rsa(11)), Some(EndPointHash::Sha256));
        assert_eq!(hash_of(&rsa(12)), Some(EndPointHash::Sha384));
        assert_eq!(hash_of(&rsa(13)), Some(EndPointHash::Sha512));
        // RSASSA-PSS keeps its hash in parameters: not offered.
        assert_eq!(hash_of(&rsa(10)), None);
        assert_eq!(
            hash_of(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(hash_of(&[]), None);
    }

    #[test]
    fn truncated_or_random_der_never_panics() {
        let good = cert_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        for n in 0..good.len() {
            let _ = server_end_point(&good[..n]);
        }
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let v: Vec<u8> = (0..64)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = server_end_point(&v);
        }
    }
}
