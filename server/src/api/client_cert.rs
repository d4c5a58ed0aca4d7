//! The name a client certificate gives its holder: the common name (CN) of
//! the certificate's subject, read from its DER encoding.
//!
//! The TLS layer has already verified the certificate against the client CA
//! by the time this runs; this only finds the one field the users file maps
//! to a user (`cert_subjects`). It reads just enough DER to walk
//! `Certificate → TBSCertificate → subject → RDN → AttributeTypeAndValue`.

/// `id-at-commonName`, 2.5.4.3, as DER object identifier content.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0] EXPLICIT Version`, present in every v2/v3 certificate.
const VERSION: u8 = 0xa0;
const INTEGER: u8 = 0x02;
/// The string types a common name comes in that are plain text:
/// UTF8String, PrintableString, IA5String.
const TEXT: [u8; 3] = [0x0c, 0x13, 0x16];

/// One DER element: its tag and content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow (at most 4 here).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        (bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)), rest)
    };
    if rest.len() < length {
        return None;
    }
    let (content, rest) = rest.split_at(length);
    Some((tag, content, rest))
}

/// The content of an element that must have `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = element(input)?;
    (found == tag).then_some((content, rest))
}

/// The subject's common name of a DER certificate; `None` when the
/// certificate cannot be read or its subject has no text CN or more than one.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut fields = tbs;
    if fields.first() == Some(&VERSION) {
        fields = element(fields)?.2;
    }
    let (_serial, fields) = expect(fields, INTEGER)?;
    let (_signature, fields) = expect(fields, SEQUENCE)?;
    let (_issuer, fields) = expect(fields, SEQUENCE)?;
    let (_validity, fields) = expect(fields, SEQUENCE)?;
    let (subject, _) = expect(fields, SEQUENCE)?;

    let mut names = Vec::new();
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (attribute, rest) = expect(attributes, SEQUENCE)?;
            attributes = rest;
            let (oid, value) = expect(attribute, OBJECT_IDENTIFIER)?;
            if oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                if !TEXT.contains(&tag) {
                    return None;
                }
                names.push(String::from_utf8(text.to_vec()).ok()?);
            }
        }
    }
    match names.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// A self-signed certificate with `subject`, as DER, made by `openssl`.
    fn certificate(dir: &std::path::Path, subject: &str) -> Vec<u8> {
        let run = |args: &[&str]| {
            let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "1",
            "-subj",
            subject,
        ]);
        run(&["x509", "-in", "c.pem", "-outform", "der", "-out", "c.der"]);
        std::fs::read(dir.join("c.der")).unwrap()
    }

    #[test]
    fn the_common_name_is_read_from_real_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let der = certificate(dir.path(), "/O=Example Lab/OU=ML/CN=alice@example.org");
        assert_eq!(subject_common_name(&der).as_deref(), Some("alice@example.org"));
        // The issuer of a self-signed certificate is the same name; the subject is what counts.
        let der = certificate(dir.path(), "/C=DE/CN=pipeline-bot");
        assert_eq!(subject_common_name(&der).as_deref(), Some("pipeline-bot"));
        // No CN, or two, names nobody.
        assert_eq!(subject_common_name(&certificate(dir.path(), "/O=Example Lab")), None);
        assert_eq!(subject_common_name(&certificate(dir.path(), "/CN=a/CN=b")), None);
    }

    #[test]
    fn truncated_or_garbled_input_names_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let der = certificate(dir.path(), "/CN=bob");
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            // A cut certificate's outer length overruns: nothing is read.
            assert_eq!(subject_common_name(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject_common_name(b"not DER at all"), None);
        assert_eq!(subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
