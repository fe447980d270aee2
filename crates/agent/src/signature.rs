//! Signed scripts (`enforceSignatureCheck`): Ed25519 signatures carried in the script itself.
//!
//! A signed script is the original content followed by one last line
//!
//! ```text
//! # remediate-signature: <base64 of the 64-byte signature> <key id>
//! ```
//!
//! The signature covers exactly the bytes before that line (so the content ends with a line
//! break; `sign` adds `\n` when it is missing). The key id is the first 16 hex characters of the
//! SHA-256 of the raw 32-byte public key. White space after the signature line is ignored; a
//! script whose signature line is anywhere but last is unsigned. For every interpreter the agent
//! runs (sh, bash, python, pwsh …) the line is a comment, so a signed script also runs where no
//! check is made.
//!
//! Keys on disk: a private key is a PKCS#8 document, as PEM (`-----BEGIN PRIVATE KEY-----`, what
//! `openssl genpkey -algorithm ed25519` writes) or as one line of base64; a public key is one
//! line of base64 of the raw 32 bytes (or a PEM / base64 SubjectPublicKeyInfo, what
//! `openssl pkey -pubout` writes).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

/// What starts the signature line.
pub const MARKER: &str = "# remediate-signature:";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 raw bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 private key (with its public half), for signing.
pub struct KeyPair {
    pair: Ed25519KeyPair,
    id: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key pair, and its PKCS#8 document as PEM (to store).
    pub fn generate() -> Result<(KeyPair, String), String> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| "cannot generate a key: the system's random source failed".to_owned())?;
        let pair = KeyPair::from_pkcs8(pkcs8.as_ref())?;
        Ok((pair, pem("PRIVATE KEY", pkcs8.as_ref())))
    }

    /// From a PKCS#8 document (v1, as OpenSSL writes, or v2, as `generate` does).
    pub fn from_pkcs8(der: &[u8]) -> Result<KeyPair, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| format!("not an Ed25519 private key in PKCS#8 form ({e})"))?;
        let id = key_id(pair.public_key().as_ref());
        Ok(KeyPair { pair, id })
    }

    /// From the text of a key file: PEM (`-----BEGIN PRIVATE KEY-----`) or one line of base64.
    pub fn parse(text: &str) -> Result<KeyPair, String> {
        let der = match pem_body(text, "PRIVATE KEY")? {
            Some(der) => der,
            None => decode_b64(text).map_err(|e| {
                format!(
                    "not a private key: expected PEM (-----BEGIN PRIVATE KEY-----) or base64 ({e})"
                )
            })?,
        };
        KeyPair::from_pkcs8(&der)
    }

    /// The public half (what devices trust).
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey {
            bytes,
            id: self.id.clone(),
        }
    }

    /// The key id (first 16 hex characters of the SHA-256 of the raw public key).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// An Ed25519 public key a device trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    id: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    /// From the raw 32 bytes.
    pub fn from_raw(raw: &[u8]) -> Result<PublicKey, String> {
        let bytes: [u8; 32] = raw.try_into().map_err(|_| {
            format!(
                "not an Ed25519 public key: {} bytes, expected 32",
                raw.len()
            )
        })?;
        Ok(PublicKey {
            id: key_id(&bytes),
            bytes,
        })
    }

    /// From the text of a public key file: one line of base64 of the raw 32 bytes, or a
    /// SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`) or base64.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let der = match pem_body(text, "PUBLIC KEY")? {
            Some(der) => der,
            None => decode_b64(text).map_err(|e| {
                format!("not a public key: expected one line of base64 (or PEM) ({e})")
            })?,
        };
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) if der.len() == SPKI_PREFIX.len() + 32 => PublicKey::from_raw(raw),
            _ => PublicKey::from_raw(&der),
        }
    }

    /// The raw 32 bytes.
    pub fn raw(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key id (first 16 hex characters of the SHA-256 of the raw key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw key as one line of base64 (the public key file's content, without the newline).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }
}

/// The key id of a raw public key: the first 16 hex characters of its SHA-256.
pub fn key_id(raw: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, raw)
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The content signed: `content` (without a signature line it may already carry, so signing
/// again replaces the signature; with a `\n` added when it does not end with a line break) and
/// the signature line over it. The line ends like the content's last line (`\r\n` or `\n`).
pub fn sign(content: &[u8], key: &KeyPair) -> Vec<u8> {
    let mut body = match split(content) {
        Split::Signed { body, .. } => body.to_vec(),
        Split::Unsigned { .. } => content.to_vec(),
    };
    if !body.is_empty() && !body.ends_with(b"\n") {
        body.push(b'\n');
    }
    let signature = key.pair.sign(&body);
    let eol: &[u8] = if body.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let line = format!(
        "{MARKER} {} {}",
        STANDARD.encode(signature.as_ref()),
        key.id
    );
    body.extend_from_slice(line.as_bytes());
    body.extend_from_slice(eol);
    body
}

/// Check a signed script against the trusted keys: the content without the signature line (what
/// was signed), or why not — the reason says `unsigned`, `signed by an untrusted key`,
/// `the signature does not match`, or `malformed signature line`.
pub fn verify(signed: &[u8], trusted: &[PublicKey]) -> Result<Vec<u8>, String> {
    let (body, line) = match split(signed) {
        Split::Signed { body, line } => (body, line),
        Split::Unsigned { misplaced: true } => {
            return Err(format!(
                "unsigned (a '{MARKER}' line is there, but not as the last line, where it must be)"
            ))
        }
        Split::Unsigned { misplaced: false } => {
            return Err(format!("unsigned (its last line is not a '{MARKER}' line)"))
        }
    };
    let (signature, id) = parse_line(line)?;
    let candidates: Vec<&PublicKey> = trusted.iter().filter(|k| k.id == id).collect();
    if candidates.is_empty() {
        return Err(if trusted.is_empty() {
            format!(
                "signed by an untrusted key (key id {id}): this agent trusts no key (give it the \
                 signer's public key with --trust-key)"
            )
        } else {
            let ids: Vec<&str> = trusted.iter().map(PublicKey::id).collect();
            format!(
                "signed by an untrusted key (key id {id}; trusted: {})",
                ids.join(", ")
            )
        });
    }
    let valid = candidates.iter().any(|k| {
        UnparsedPublicKey::new(&ED25519, k.bytes)
            .verify(body, &signature)
            .is_ok()
    });
    if !valid {
        return Err(format!(
            "the signature does not match the content (key id {id}): the script was changed after \
             it was signed"
        ));
    }
    Ok(body.to_vec())
}

/// Load a private key file (PEM or base64 PKCS#8).
pub fn load_key_pair(path: &Path) -> anyhow::Result<KeyPair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    KeyPair::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Load a public key file (one line of base64, or PEM).
pub fn load_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the public key file {}", path.display()))?;
    PublicKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Create a new key file (PEM PKCS#8, mode 0600; an existing file is never overwritten) and
/// return the key.
pub fn create_key_file(path: &Path) -> anyhow::Result<KeyPair> {
    let (pair, pem) = KeyPair::generate().map_err(anyhow::Error::msg)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the key file {}", path.display()))?;
    Ok(pair)
}

/// Write a public key file: one line of base64 (mode 0644; replaces an existing file).
pub fn write_public_key(path: &Path, key: &PublicKey) -> anyhow::Result<()> {
    std::fs::write(path, format!("{}\n", key.to_base64()))
        .with_context(|| format!("writing the public key file {}", path.display()))
}

enum Split<'a> {
    Signed { body: &'a [u8], line: &'a [u8] },
    Unsigned { misplaced: bool },
}

/// The content before the last line, and that line, if it is a signature line.
fn split(content: &[u8]) -> Split<'_> {
    let end = content.len()
        - content
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    let start = content[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = &content[start..end];
    if line.starts_with(MARKER.as_bytes()) {
        return Split::Signed {
            body: &content[..start],
            line,
        };
    }
    let misplaced = content
        .split(|&b| b == b'\n')
        .any(|l| l.starts_with(MARKER.as_bytes()));
    Split::Unsigned { misplaced }
}

/// The signature and key id of a signature line.
fn parse_line(line: &[u8]) -> Result<(Vec<u8>, String), String> {
    let malformed = |why: &str| format!("malformed signature line: {why}");
    let text = std::str::from_utf8(&line[MARKER.len()..])
        .map_err(|_| malformed("it is not ASCII text"))?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [signature, id] = fields[..] else {
        return Err(malformed(&format!(
            "expected '{MARKER} <base64 signature> <key id>', found {} field(s) after the marker",
            fields.len()
        )));
    };
    let signature = STANDARD
        .decode(signature)
        .map_err(|e| malformed(&format!("the signature is not base64 ({e})")))?;
    if signature.len() != 64 {
        return Err(malformed(&format!(
            "the signature has {} bytes, expected 64",
            signature.len()
        )));
    }
    if id.len() != 16
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(malformed(&format!(
            "the key id '{id}' is not 16 lowercase hex characters"
        )));
    }
    Ok((signature, id.to_owned()))
}

/// PEM text of a DER document, lines of 64 characters.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside a PEM block with this label; `None` when the text is not PEM.
fn pem_body(text: &str, label: &str) -> Result<Option<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(after) = text.trim_start().strip_prefix("-----BEGIN ") else {
        return Ok(None);
    };
    let Some(inner) = text.trim_start().strip_prefix(&begin) else {
        let found = after.split("-----").next().unwrap_or_default();
        return Err(format!("a PEM '{found}' block, expected '{label}'"));
    };
    let Some((body, _)) = inner.split_once(&end) else {
        return Err(format!("the PEM block has no '{end}' line"));
    };
    decode_b64(body)
        .map(Some)
        .map_err(|e| format!("the PEM block is not valid base64 ({e})"))
}

fn decode_b64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.split_ascii_whitespace().collect();
    STANDARD.decode(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and its `pkey -pubout`.
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIM5Zd7ICpUiYWsfnrhaAEe/T4siInw7NkLGq4j2ACJH+\n\
        -----END PRIVATE KEY-----\n";
    const OPENSSL_PUB: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAwZoOzOfLZQWLO3r+y6ZVJR8CjIfJ+oAjA7vwAPbe1xw=\n\
        -----END PUBLIC KEY-----\n";
    const OPENSSL_RAW: &str = "wZoOzOfLZQWLO3r+y6ZVJR8CjIfJ+oAjA7vwAPbe1xw=";

    const SCRIPT: &[u8] = b"#!/bin/sh\necho hello\nexit 0\n";

    fn key() -> KeyPair {
        KeyPair::generate().unwrap().0
    }

    #[test]
    fn round_trip() {
        let k = key();
        let signed = sign(SCRIPT, &k);
        let text = String::from_utf8(signed.clone()).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with(MARKER), "{text}");
        assert!(last.ends_with(&format!(" {}", k.id())), "{last}");
        assert!(text.starts_with(std::str::from_utf8(SCRIPT).unwrap()));
        assert_eq!(verify(&signed, &[k.public_key()]).unwrap(), SCRIPT);
        // Among other trusted keys; with trailing white space (an editor's final newline).
        let mut padded = signed.clone();
        padded.extend_from_slice(b"\n\n  \n");
        assert_eq!(
            verify(&padded, &[key().public_key(), k.public_key()]).unwrap(),
            SCRIPT
        );
    }

    #[test]
    fn a_missing_final_newline_is_added_and_signed() {
        let k = key();
        let signed = sign(b"#!/bin/sh\nexit 0", &k);
        assert_eq!(
            verify(&signed, &[k.public_key()]).unwrap(),
            b"#!/bin/sh\nexit 0\n"
        );
        // Empty content: just the line.
        let empty = sign(b"", &k);
        assert!(empty.starts_with(MARKER.as_bytes()));
        assert_eq!(verify(&empty, &[k.public_key()]).unwrap(), b"");
    }

    #[test]
    fn crlf_content_keeps_its_line_endings() {
        let k = key();
        let content = b"Write-Output 'hi'\r\nexit 0\r\n";
        let signed = sign(content, &k);
        assert!(signed.ends_with(b"\r\n"));
        assert_eq!(verify(&signed, &[k.public_key()]).unwrap(), content);
    }

    #[test]
    fn signing_again_replaces_the_signature() {
        let (a, b) = (key(), key());
        let twice = sign(&sign(SCRIPT, &a), &b);
        let text = String::from_utf8(twice.clone()).unwrap();
        assert_eq!(text.matches(MARKER).count(), 1, "{text}");
        assert_eq!(verify(&twice, &[b.public_key()]).unwrap(), SCRIPT);
        assert!(verify(&twice, &[a.public_key()]).is_err());
    }

    #[test]
    fn a_tampered_byte_fails() {
        let k = key();
        let signed = sign(SCRIPT, &k);
        // Every byte of the content, changed in turn (but the line break before the signature
        // line: without it, there is no signature line).
        for i in 0..SCRIPT.len() - 1 {
            let mut bad = signed.clone();
            bad[i] ^= 0x01;
            let err = verify(&bad, &[k.public_key()]).unwrap_err();
            assert!(err.contains("the signature does not match"), "{i}: {err}");
        }
        // A line added before the signature line.
        let mut added = b"rm -rf /tmp/x\n".to_vec();
        added.extend_from_slice(&signed);
        let err = verify(&added, &[k.public_key()]).unwrap_err();
        assert!(err.contains("the signature does not match"), "{err}");
        // A byte of the signature itself.
        let mut bad = signed.clone();
        let at = SCRIPT.len() + MARKER.len() + 2;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        let err = verify(&bad, &[k.public_key()]).unwrap_err();
        assert!(err.contains("the signature does not match"), "{err}");
    }

    #[test]
    fn another_key_is_untrusted() {
        let (signer, other) = (key(), key());
        let signed = sign(SCRIPT, &signer);
        let err = verify(&signed, &[other.public_key()]).unwrap_err();
        assert!(err.contains("signed by an untrusted key"), "{err}");
        assert!(
            err.contains(signer.id()) && err.contains(other.id()),
            "{err}"
        );
        let err = verify(&signed, &[]).unwrap_err();
        assert!(
            err.contains("signed by an untrusted key") && err.contains("--trust-key"),
            "{err}"
        );
        // Another key that claims the signer's id (an id collision, or a forged line).
        let impostor = PublicKey {
            bytes: *other.public_key().raw(),
            id: signer.id().to_owned(),
        };
        let err = verify(&signed, &[impostor]).unwrap_err();
        assert!(err.contains("the signature does not match"), "{err}");
    }

    #[test]
    fn unsigned_content_fails() {
        let k = key();
        for content in [&b""[..], b"\n", SCRIPT, b"#!/bin/sh\n# remediate-sig\n"] {
            let err = verify(content, &[k.public_key()]).unwrap_err();
            assert!(err.starts_with("unsigned"), "{err}");
        }
        // A signature line that is not the last line.
        let mut moved = sign(SCRIPT, &k);
        moved.extend_from_slice(b"echo more\n");
        let err = verify(&moved, &[k.public_key()]).unwrap_err();
        assert!(
            err.starts_with("unsigned") && err.contains("last line"),
            "{err}"
        );
    }

    #[test]
    fn malformed_lines_fail() {
        let k = key();
        let signed = String::from_utf8(sign(SCRIPT, &k)).unwrap();
        let line = signed.lines().last().unwrap();
        let fields: Vec<&str> = line[MARKER.len()..].split_whitespace().collect();
        let (sig, id) = (fields[0], fields[1]);
        let short = STANDARD.encode([0u8; 10]);
        for (bad, why) in [
            (MARKER.to_string(), "0 field(s)"),
            (format!("{MARKER} {sig}"), "1 field(s)"),
            (format!("{MARKER} {sig} {id} extra"), "3 field(s)"),
            (format!("{MARKER} !!notbase64!! {id}"), "not base64"),
            (format!("{MARKER} {short} {id}"), "10 bytes"),
            (format!("{MARKER} {sig} {}", id.to_uppercase()), "hex"),
            (format!("{MARKER} {sig} {}", &id[..8]), "hex"),
        ] {
            let mut content = SCRIPT.to_vec();
            content.extend_from_slice(bad.as_bytes());
            content.push(b'\n');
            let err = verify(&content, &[k.public_key()]).unwrap_err();
            assert!(
                err.starts_with("malformed signature line") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let mut content = SCRIPT.to_vec();
        content.extend_from_slice(MARKER.as_bytes());
        content.extend_from_slice(b" \xff\xfe x\n");
        let err = verify(&content, &[k.public_key()]).unwrap_err();
        assert!(err.starts_with("malformed signature line"), "{err}");
    }

    #[test]
    fn openssl_keys_load() {
        let pair = KeyPair::parse(OPENSSL_KEY).unwrap();
        let from_pem = PublicKey::parse(OPENSSL_PUB).unwrap();
        let from_raw = PublicKey::parse(OPENSSL_RAW).unwrap();
        assert_eq!(pair.public_key(), from_pem);
        assert_eq!(from_raw, from_pem);
        assert_eq!(from_raw.to_base64(), OPENSSL_RAW);
        // The base64 SubjectPublicKeyInfo (PEM without its lines) too.
        let spki = OPENSSL_PUB.lines().nth(1).unwrap();
        assert_eq!(PublicKey::parse(spki).unwrap(), from_raw);
        // The key id: SHA-256 of the raw key, first 16 hex characters.
        let digest = ring::digest::digest(&ring::digest::SHA256, from_raw.raw());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(from_raw.id(), &hex[..16]);
        assert_eq!(pair.id(), from_raw.id());
        let signed = sign(SCRIPT, &pair);
        assert_eq!(verify(&signed, &[from_raw]).unwrap(), SCRIPT);
    }

    #[test]
    fn generated_keys_load_as_pem_and_base64() {
        let (pair, pem) = KeyPair::generate().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = KeyPair::parse(&pem).unwrap();
        assert_eq!(again.public_key(), pair.public_key());
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(
            KeyPair::parse(&b64).unwrap().public_key(),
            pair.public_key()
        );
        assert_eq!(
            PublicKey::parse(&format!("{}\n", pair.public_key().to_base64())).unwrap(),
            pair.public_key()
        );
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(KeyPair::parse("hello")
            .unwrap_err()
            .contains("not a private key"));
        assert!(KeyPair::parse(OPENSSL_PUB)
            .unwrap_err()
            .contains("PUBLIC KEY"));
        assert!(PublicKey::parse(OPENSSL_KEY)
            .unwrap_err()
            .contains("PRIVATE KEY"));
        assert!(PublicKey::parse(&STANDARD.encode([1u8; 31]))
            .unwrap_err()
            .contains("31 bytes"));
        assert!(KeyPair::parse(&STANDARD.encode([1u8; 48]))
            .unwrap_err()
            .contains("PKCS#8"));
    }

    #[test]
    fn key_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "remediate-signature-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&dir).unwrap();
        let (private, public) = (dir.join("key.pem"), dir.join("key.pub"));
        let pair = create_key_file(&private).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Never overwritten.
        assert!(create_key_file(&private).is_err());
        assert_eq!(
            load_key_pair(&private).unwrap().public_key(),
            pair.public_key()
        );
        write_public_key(&public, &pair.public_key()).unwrap();
        let text = std::fs::read_to_string(&public).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(load_public_key(&public).unwrap(), pair.public_key());
        let err = load_public_key(&dir.join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
