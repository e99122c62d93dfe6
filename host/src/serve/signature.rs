//! Webhook signature verification: an HMAC-SHA256 of the raw request body under the
//! endpoint's secret, sent hex-encoded after a prefix (Meta: header
//! `X-Hub-Signature-256: sha256=<hex>`, keyed with the app secret).
//!
//! The webhook edge reads the header named by the adapter's signature scheme, passes its
//! value, the scheme's prefix, the secret and the exact bytes it received to [`verify`], and
//! refuses the request on any error before storing anything. The body must be the raw bytes:
//! re-serialised JSON would not match. [`sign`] produces a header value, for tests and the
//! load generator.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a SHA-256 MAC in bytes.
const MAC_LEN: usize = 32;

/// Why a signature was refused. Deliberately coarse: a caller learns nothing about how close
/// a forgery came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header.
    #[error("signature header is missing")]
    Missing,
    /// The header does not start with the prefix or is not 64 hex digits after it.
    #[error("signature header is malformed")]
    Malformed,
    /// Well formed, but not the MAC of this body under this secret (or the secret is empty).
    #[error("signature does not match the body")]
    Mismatch,
}

/// Checks `header_value` (`<prefix><hex>`) against the HMAC-SHA256 of `body` under
/// `secret`. Hex digits may be either case (Meta sends lowercase). The comparison is
/// constant time ([`Mac::verify_slice`]). An empty secret never verifies: anyone could
/// compute that MAC.
pub fn verify(
    header_value: Option<&str>,
    prefix: &str,
    secret: &[u8],
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = header_value.ok_or(SignatureError::Missing)?.trim();
    let digits = value
        .strip_prefix(prefix)
        .ok_or(SignatureError::Malformed)?;
    if digits.len() != MAC_LEN * 2 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(digits).map_err(|_| SignatureError::Malformed)?;
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value for `body` under `secret`: `prefix` followed by lowercase hex.
pub fn sign(prefix: &str, secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps the function
    // total without a panic path.
    let digest = match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{prefix}{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "sha256=";

    #[test]
    fn known_vector_rfc4231_case_2() {
        let header = sign(PREFIX, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            header,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            verify(
                Some(&header),
                PREFIX,
                b"Jefe",
                b"what do ya want for nothing?"
            ),
            Ok(())
        );
    }

    #[test]
    fn round_trip_and_tampering() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(PREFIX, b"app-secret", body);
        assert_eq!(verify(Some(&header), PREFIX, b"app-secret", body), Ok(()));
        assert_eq!(
            verify(Some(&header), PREFIX, b"other-secret", body),
            Err(SignatureError::Mismatch)
        );
        let mut changed = body.to_vec();
        changed.push(b' ');
        assert_eq!(
            verify(Some(&header), PREFIX, b"app-secret", &changed),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            verify(None, PREFIX, b"s", b"body"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn wrong_prefix_is_malformed() {
        let header = sign("sha1=", b"s", b"body");
        assert_eq!(
            verify(Some(&header), PREFIX, b"s", b"body"),
            Err(SignatureError::Malformed)
        );
        let bare = sign("", b"s", b"body");
        assert_eq!(
            verify(Some(&bare), PREFIX, b"s", b"body"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn bad_hex_is_malformed() {
        let header = sign(PREFIX, b"s", b"body");
        // Odd length.
        assert_eq!(
            verify(Some(&header[..header.len() - 1]), PREFIX, b"s", b"body"),
            Err(SignatureError::Malformed)
        );
        // Right length, not hex.
        let not_hex = format!("{PREFIX}{}", "zz".repeat(32));
        assert_eq!(
            verify(Some(&not_hex), PREFIX, b"s", b"body"),
            Err(SignatureError::Malformed)
        );
        // Valid hex, wrong length (a SHA-1 MAC).
        let short = format!("{PREFIX}{}", "ab".repeat(20));
        assert_eq!(
            verify(Some(&short), PREFIX, b"s", b"body"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some(""), PREFIX, b"s", b"body"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn uppercase_hex_and_surrounding_space_are_accepted() {
        let header = sign(PREFIX, b"s", b"body");
        let upper = format!("{PREFIX}{}", header[PREFIX.len()..].to_uppercase());
        assert_eq!(verify(Some(&upper), PREFIX, b"s", b"body"), Ok(()));
        let padded = format!(" {header} ");
        assert_eq!(verify(Some(&padded), PREFIX, b"s", b"body"), Ok(()));
    }

    #[test]
    fn empty_secret_never_verifies() {
        let header = sign(PREFIX, b"", b"body");
        assert_eq!(
            verify(Some(&header), PREFIX, b"", b"body"),
            Err(SignatureError::Mismatch)
        );
    }
}
