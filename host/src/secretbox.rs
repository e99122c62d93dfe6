//! Secrets at rest: the optional encryption of the secrets the store keeps (endpoint
//! tokens and app secrets, system-user tokens, event-webhook signing secrets).
//!
//! A [`SecretKey`] (32 bytes) comes from the environment (`PLUGBOARD_SECRET_KEY`, base64
//! or hex), never from a file or the command line. A [`Keyring`] holds the key values are
//! sealed with (none: they are stored in clear) and, while rotating, older keys they may
//! still be sealed with. [`Keyring::seal`] turns a secret into
//! `enc:v1:<key id>:<base64(nonce ‖ ciphertext)>`: XChaCha20-Poly1305 with a random 24-byte
//! nonce per value and the column's name as associated data, so a value copied into
//! another column does not decrypt. [`Keyring::open`] reverses it; a value without the
//! `enc:` prefix is a clear value (written before a key was set) and passes through, so
//! clear and sealed values coexist. `env:NAME` references are not secrets and stay as
//! they are.
//!
//! What must stay true: an encrypted value never opens to anything but its plaintext or
//! an error (never silently empty), and no error carries a key or a secret, only key ids
//! (the first 8 hex digits of a hash of the key).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The environment variable holding the key the store's secrets are sealed with.
pub const KEY_ENV: &str = "PLUGBOARD_SECRET_KEY";
/// The environment variable holding the new key during `plugboard secrets rotate`.
pub const NEW_KEY_ENV: &str = "PLUGBOARD_SECRET_KEY_NEW";
/// The prefix of every sealed value (any version).
pub const SEALED_PREFIX: &str = "enc:";
/// The prefix of a version-1 sealed value.
const V1_PREFIX: &str = "enc:v1:";
/// A reference to an environment variable (`env:NAME`): not a secret, never sealed.
pub const ENV_REFERENCE: &str = "env:";
/// The secret fields of an endpoint spec: the one list every layer masks and seals.
pub const SPEC_SECRETS: [&str; 3] = ["access_token", "verify_token", "app_secret"];
/// How every secret is masked for display (see [`mask`]).
pub const MASK_PREFIX: &str = "********";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Why a key or a sealed value cannot be used. Names key ids, never keys or values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "{var} must be 32 bytes, base64 or hex encoded (e.g. the output of `openssl rand -base64 32`)"
    )]
    BadKey { var: String },
    #[error(
        "a stored secret ({field}) is encrypted with key {key_id}, but {KEY_ENV} is not set: set it to the key the secrets were encrypted with"
    )]
    KeyMissing { field: String, key_id: String },
    #[error(
        "a stored secret ({field}) is encrypted with key {key_id}, but the key given has id {have}: set {KEY_ENV} to the key the secrets were encrypted with"
    )]
    WrongKey {
        field: String,
        key_id: String,
        have: String,
    },
    #[error(
        "a stored secret ({field}) does not decrypt with key {key_id}: the value is damaged or was copied from another column"
    )]
    Damaged { field: String, key_id: String },
    #[error(
        "a stored secret ({field}) has an unknown format (`enc:` followed by something this version cannot read)"
    )]
    UnknownFormat { field: String },
    #[error(
        "a secret ({field}) must not start with `{SEALED_PREFIX}`: that prefix marks encrypted values"
    )]
    Reserved { field: String },
    #[error("encrypting a secret ({field}) failed")]
    Encrypt { field: String },
}

/// A 32-byte key. `Debug` shows its id only; equality is constant-time.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    id: String,
}

impl SecretKey {
    /// A key from its text: 32 bytes as hex (64 digits) or base64 (standard or URL-safe,
    /// padded or not). Surrounding whitespace is ignored. `var` names the source in the
    /// error (the text itself is never shown).
    pub fn parse(text: &str, var: &str) -> Result<SecretKey, SealError> {
        let text = text.trim();
        let bad = || SealError::BadKey {
            var: var.to_string(),
        };
        let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| bad())?
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(bad)?
        };
        let bytes: [u8; KEY_LEN] = decoded.try_into().map_err(|_| bad())?;
        Ok(SecretKey::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        let digest = Sha256::new()
            .chain_update(b"plugboard secret key id\0")
            .chain_update(bytes)
            .finalize();
        SecretKey {
            bytes,
            id: hex::encode(&digest[..4]),
        }
    }

    /// The key in the environment variable `var`: `None` when it is unset or empty.
    pub fn from_env(var: &str) -> Result<Option<SecretKey>, SealError> {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => SecretKey::parse(&text, var).map(Some),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SealError::BadKey {
                var: var.to_string(),
            }),
        }
    }

    /// The key's id: 8 hex digits, safe to show and to store next to sealed values.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.bytes))
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &SecretKey) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// What a stored value is, without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<'a> {
    /// A literal secret in clear.
    Clear,
    /// `env:NAME`: a reference, not a secret.
    Reference,
    /// Sealed with the key of this id.
    Sealed { key_id: &'a str },
}

/// The keys secrets are sealed with and opened with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    /// New values are sealed with this one; `None` writes them in clear.
    current: Option<SecretKey>,
    /// Also opened with these (the old key while rotating).
    older: Vec<SecretKey>,
}

impl Keyring {
    /// A keyring sealing with `current` (`None`: clear).
    pub fn new(current: Option<SecretKey>) -> Keyring {
        Keyring {
            current,
            older: Vec::new(),
        }
    }

    /// Also opens values sealed with `key`.
    pub fn also_opening(mut self, key: Option<SecretKey>) -> Keyring {
        if let Some(key) = key
            && self.current.as_ref() != Some(&key)
            && !self.older.contains(&key)
        {
            self.older.push(key);
        }
        self
    }

    /// The id of the key new values are sealed with.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(SecretKey::id)
    }

    /// What `stored` is. A value starting with `enc:` that is not a readable version-1
    /// value reads as sealed with the unknown key id `?` (opening it fails).
    pub fn classify(stored: &str) -> Stored<'_> {
        if stored.starts_with(ENV_REFERENCE) {
            return Stored::Reference;
        }
        if !stored.starts_with(SEALED_PREFIX) {
            return Stored::Clear;
        }
        let key_id = stored
            .strip_prefix(V1_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .map_or("?", |(id, _)| id);
        Stored::Sealed { key_id }
    }

    /// Whether `stored` would be written differently by [`Keyring::seal`] now: a clear
    /// secret while a key is set, a value sealed with another key, or a sealed value while
    /// no key is set.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match (Keyring::classify(stored), self.current_id()) {
            (Stored::Reference, _) => false,
            (Stored::Clear, current) => current.is_some(),
            (Stored::Sealed { key_id }, current) => current != Some(key_id),
        }
    }

    /// The stored form of `value` for the column `field`: sealed with the current key,
    /// or `value` itself when there is none or it is an `env:` reference.
    pub fn seal(&self, field: &str, value: &str) -> Result<String, SealError> {
        if value.starts_with(ENV_REFERENCE) {
            return Ok(value.to_string());
        }
        if value.starts_with(SEALED_PREFIX) {
            return Err(SealError::Reserved {
                field: field.to_string(),
            });
        }
        let Some(key) = &self.current else {
            return Ok(value.to_string());
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| SealError::Encrypt {
                field: field.to_string(),
            })?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{V1_PREFIX}{}:{}",
            key.id(),
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// The value a stored form of the column `field` stands for: clear values and `env:`
    /// references as they are, sealed ones decrypted, or an error saying which key is
    /// missing.
    pub fn open(&self, field: &str, stored: &str) -> Result<String, SealError> {
        if !stored.starts_with(SEALED_PREFIX) {
            return Ok(stored.to_string());
        }
        let unknown = || SealError::UnknownFormat {
            field: field.to_string(),
        };
        let (key_id, data) = stored
            .strip_prefix(V1_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(unknown)?;
        let key = self
            .current
            .iter()
            .chain(&self.older)
            .find(|k| k.id() == key_id)
            .ok_or_else(|| match &self.current {
                None if self.older.is_empty() => SealError::KeyMissing {
                    field: field.to_string(),
                    key_id: key_id.to_string(),
                },
                _ => SealError::WrongKey {
                    field: field.to_string(),
                    key_id: key_id.to_string(),
                    have: self
                        .current
                        .iter()
                        .chain(&self.older)
                        .map(SecretKey::id)
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            })?;
        let damaged = || SealError::Damaged {
            field: field.to_string(),
            key_id: key_id.to_string(),
        };
        let blob = URL_SAFE_NO_PAD.decode(data).map_err(|_| damaged())?;
        if blob.len() < NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged())?;
        let clear = key
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| damaged())?;
        String::from_utf8(clear).map_err(|_| damaged())
    }
}

/// Masks a secret for display: its last 4 characters when it is long enough that they
/// give nothing away (12 or more), else nothing; `env:NAME` references are shown as they
/// are (the name is not the secret).
pub fn mask(secret: &str) -> String {
    if secret.starts_with(ENV_REFERENCE) {
        return secret.to_string();
    }
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return MASK_PREFIX.to_string();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{MASK_PREFIX}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        assert_eq!(mask("EAAGm0PX4ZCpsBAabcd1234"), "********1234");
        assert_eq!(mask("short"), "********");
        assert_eq!(mask("env:WA_TOKEN"), "env:WA_TOKEN");
        // Multi-byte characters are counted as characters, never split.
        assert_eq!(mask("ééééééééééééé1234"), "********1234");
    }

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; KEY_LEN])
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_nothing_else() {
        let bytes = [7u8; KEY_LEN];
        let hex_text = hex::encode(bytes);
        let b64 = STANDARD.encode(bytes);
        let url = URL_SAFE_NO_PAD.encode(bytes);
        for text in [hex_text.as_str(), b64.as_str(), url.as_str()] {
            let parsed = SecretKey::parse(&format!(" {text}\n"), KEY_ENV).unwrap();
            assert_eq!(parsed, SecretKey::from_bytes(bytes));
        }
        for bad in [
            "",
            "short",
            &STANDARD.encode([1u8; 16]),
            &hex::encode([1u8; 31]),
        ] {
            let e = SecretKey::parse(bad, KEY_ENV).unwrap_err();
            assert!(e.to_string().contains(KEY_ENV), "{e}");
        }
        // The error never shows the text.
        let e = SecretKey::parse("not-a-key-but-secret", KEY_ENV).unwrap_err();
        assert!(!e.to_string().contains("not-a-key-but-secret"));
        assert_eq!(
            format!("{:?}", key(1)),
            format!("SecretKey({})", key(1).id())
        );
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_column_only() {
        let ring = Keyring::new(Some(key(1)));
        let sealed = ring.seal("wa_accounts.token", "EAAsecret").unwrap();
        assert!(
            sealed.starts_with(&format!("enc:v1:{}:", key(1).id())),
            "{sealed}"
        );
        assert!(!sealed.contains("EAAsecret"));
        // A random nonce per value: sealing twice differs.
        assert_ne!(sealed, ring.seal("wa_accounts.token", "EAAsecret").unwrap());
        assert_eq!(
            ring.open("wa_accounts.token", &sealed).unwrap(),
            "EAAsecret"
        );
        // Copied into another column: refused.
        assert!(matches!(
            ring.open("hook_subscriptions.secret", &sealed),
            Err(SealError::Damaged { .. })
        ));
        // No key, another key: clear errors naming the key id.
        let e = Keyring::default()
            .open("wa_accounts.token", &sealed)
            .unwrap_err();
        assert!(matches!(e, SealError::KeyMissing { .. }));
        assert!(e.to_string().contains(key(1).id()) && e.to_string().contains(KEY_ENV));
        let e = Keyring::new(Some(key(2)))
            .open("wa_accounts.token", &sealed)
            .unwrap_err();
        assert!(matches!(e, SealError::WrongKey { .. }), "{e}");
        // Rotating: the old key still opens.
        let rotating = Keyring::new(Some(key(2))).also_opening(Some(key(1)));
        assert_eq!(
            rotating.open("wa_accounts.token", &sealed).unwrap(),
            "EAAsecret"
        );
        assert!(rotating.needs_reseal(&sealed));
        assert!(!ring.needs_reseal(&sealed));
        // Tampered: refused, never empty.
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(ring.open("wa_accounts.token", &tampered).is_err());
        assert!(matches!(
            ring.open("wa_accounts.token", "enc:v9:x"),
            Err(SealError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn clear_values_and_references_pass_through() {
        let ring = Keyring::new(Some(key(1)));
        assert_eq!(ring.open("f", "plain").unwrap(), "plain");
        assert!(ring.needs_reseal("plain"));
        assert_eq!(ring.seal("f", "env:WA_TOKEN").unwrap(), "env:WA_TOKEN");
        assert!(!ring.needs_reseal("env:WA_TOKEN"));
        assert_eq!(Keyring::default().seal("f", "plain").unwrap(), "plain");
        assert!(!Keyring::default().needs_reseal("plain"));
        assert!(matches!(
            ring.seal("f", "enc:v1:x:y"),
            Err(SealError::Reserved { .. })
        ));
        assert_eq!(Keyring::classify("env:X"), Stored::Reference);
        assert_eq!(Keyring::classify("x"), Stored::Clear);
        assert_eq!(
            Keyring::classify("enc:v1:abcd1234:zz"),
            Stored::Sealed { key_id: "abcd1234" }
        );
    }
}
