//! TLS for the main listener (`--tls`, `--tls-cert`/`--tls-key`) and the proxy: the local CA that
//! remediate makes once in the data directory (`ca.pem`, `ca-key.pem` mode 0600, reused on later
//! starts), leaf certificates it signs (kept in memory, renewed before they expire), the
//! operator's certificate files (reloaded on demand, e.g. on SIGHUP), and the rustls server
//! configurations over them. rustls with the ring provider only; no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA certificate's file in the data directory (what clients trust).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key in the data directory (mode 0600; it never leaves the directory).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The names every `--tls` certificate of the local CA covers, besides `--tls-name` names.
pub const DEFAULT_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// How long the local CA is valid.
const CA_DAYS: u64 = 3650;
/// How long a leaf is valid (the most browsers accept), and how long before its end it is renewed.
const LEAF_DAYS: u64 = 397;
const LEAF_RENEW_BEFORE_DAYS: u64 = 30;
const DAY: Duration = Duration::from_secs(86_400);

/// A failure to make, load or use a certificate, with what it was about.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

impl TlsError {
    fn new(context: impl std::fmt::Display, error: impl std::fmt::Display) -> TlsError {
        TlsError(format!("{context}: {error}"))
    }
}

/// Where the main listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Signed by the local CA for [`DEFAULT_NAMES`] and these names.
    LocalCa { names: Vec<String> },
    /// The operator's PEM files (certificate chain, private key), reloaded by [`ServerTls::reload`].
    Files { cert: PathBuf, key: PathBuf },
}

/// The crypto provider of every TLS configuration here: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The local certificate authority of a data directory.
pub struct LocalCa {
    key: KeyPair,
    /// The CA as rcgen signs with it (its name and key identifier; rebuilt from the key on load).
    issuer: rcgen::Certificate,
    /// The certificate as stored in `ca.pem`.
    der: CertificateDer<'static>,
    cert_path: PathBuf,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Load the CA of `data_dir`, creating it (key mode 0600) when it does not exist yet.
    ///
    /// The CA's name is derived from its key, so the issuer that signs leaves is rebuilt from the
    /// key alone; a leaf is then checked against the stored `ca.pem`, so a certificate that does
    /// not belong to the key is refused here rather than by every client.
    pub fn load_or_create(data_dir: &Path) -> Result<LocalCa, TlsError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| TlsError::new(format!("creating {}", data_dir.display()), e))?;
        let key_path = data_dir.join(CA_KEY_FILE);
        let cert_path = data_dir.join(CA_CERT_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem)
                .map_err(|e| TlsError::new(format!("reading {}", key_path.display()), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key =
                    KeyPair::generate().map_err(|e| TlsError::new("generating the CA key", e))?;
                write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                // Another process may have won the race: always use what is on disk.
                let pem = std::fs::read_to_string(&key_path)
                    .map_err(|e| TlsError::new(format!("reading {}", key_path.display()), e))?;
                KeyPair::from_pem(&pem)
                    .map_err(|e| TlsError::new(format!("reading {}", key_path.display()), e))?
            }
            Err(e) => return Err(TlsError::new(format!("reading {}", key_path.display()), e)),
        };
        let issuer = ca_params(&key, SystemTime::now())
            .self_signed(&key)
            .map_err(|e| TlsError::new("making the CA certificate", e))?;
        if !cert_path.exists() {
            write_new(&cert_path, issuer.pem().as_bytes(), 0o644)?;
        }
        let der = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| TlsError::new(format!("reading {}", cert_path.display()), e))?;
        let ca = LocalCa {
            key,
            issuer,
            der,
            cert_path,
        };
        ca.check()?;
        Ok(ca)
    }

    /// A leaf of this CA must verify against the stored certificate.
    fn check(&self) -> Result<(), TlsError> {
        use rustls::client::danger::ServerCertVerifier;
        let (cert, _) = self.issue(&["localhost".to_owned()])?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .map_err(|e| TlsError::new(format!("reading {}", self.cert_path.display()), e))?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| TlsError::new("checking the local CA", e))?;
        let name = rustls_pki_types::ServerName::try_from("localhost")
            .map_err(|e| TlsError::new("checking the local CA", e))?;
        verifier
            .verify_server_cert(&cert, &[], &name, &[], rustls_pki_types::UnixTime::now())
            .map_err(|e| {
                TlsError(format!(
                    "{} does not belong to {} ({e}); remove both files to make a new local CA \
                     (clients must then trust the new one)",
                    self.cert_path.display(),
                    CA_KEY_FILE
                ))
            })?;
        Ok(())
    }

    /// The CA certificate's file (`ca.pem` in the data directory).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The SHA-256 fingerprint of the CA certificate, as `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.der);
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Where the CA certificate is and how to make clients trust it (printed on start).
    pub fn trust_instructions(&self) -> String {
        let path = self.cert_path.display();
        format!(
            "local CA certificate: {path} (SHA-256 {fingerprint})\n\
             trust it (each of these replaces the default bundle, except Node's and the system store):\n\
             \x20 Python (requests, azure-identity): export REQUESTS_CA_BUNDLE={path}\n\
             \x20 Node.js:                           export NODE_EXTRA_CA_CERTS={path}\n\
             \x20 OpenSSL-based tools, Python ssl:   export SSL_CERT_FILE={path}\n\
             \x20 the system store (Debian, Ubuntu): cp {path} /usr/local/share/ca-certificates/remediate.crt && update-ca-certificates",
            fingerprint = self.fingerprint()
        )
    }

    /// A new leaf certificate for `names` (DNS names or IP addresses) and its private key, both
    /// as PEM: what a server presents for those names to clients that trust this CA.
    pub fn issue_pem(&self, names: &[String]) -> Result<(String, String), TlsError> {
        let (cert, key) = self.issue(names)?;
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(der);
            let mut out = format!("-----BEGIN {label}-----\n");
            for line in text.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(line).unwrap_or_default());
                out.push('\n');
            }
            out.push_str(&format!("-----END {label}-----\n"));
            out
        };
        Ok((
            pem("CERTIFICATE", &cert),
            pem("PRIVATE KEY", key.secret_pkcs8_der()),
        ))
    }

    /// A new leaf for `names`: its certificate and private key.
    fn issue(
        &self,
        names: &[String],
    ) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), TlsError> {
        let now = SystemTime::now();
        let key = KeyPair::generate().map_err(|e| TlsError::new("generating a leaf key", e))?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(|e| TlsError::new(format!("the names {names:?}"), e))?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            names.first().map_or("remediate", String::as_str),
        );
        name.push(DnType::OrganizationName, "remediate");
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, now - DAY, now + DAY * LEAF_DAYS as u32);
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| TlsError::new(format!("signing a certificate for {names:?}"), e))?;
        Ok((
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()),
        ))
    }

    /// A leaf for `names`, ready for rustls, and when to renew it.
    fn mint(&self, names: &[String]) -> Result<Leaf, TlsError> {
        let (cert, key) = self.issue(names)?;
        let certified = CertifiedKey::from_der(vec![cert], key.into(), &provider())
            .map_err(|e| TlsError::new(format!("loading the certificate for {names:?}"), e))?;
        Ok(Leaf {
            key: Arc::new(certified),
            renew_at: SystemTime::now() + DAY * (LEAF_DAYS - LEAF_RENEW_BEFORE_DAYS) as u32,
        })
    }

    /// A server configuration presenting a leaf of this CA for `names` (renewed before it
    /// expires), whatever name the client asks for.
    pub fn server_config(self: &Arc<Self>, names: &[String]) -> Result<ServerTls, TlsError> {
        let leaf = self.mint(names)?;
        let resolver = LocalResolver {
            ca: self.clone(),
            names: names.to_vec(),
            leaf: Mutex::new(leaf),
        };
        Ok(ServerTls {
            current: Arc::new(RwLock::new(server_config(Arc::new(resolver))?)),
            files: None,
        })
    }
}

/// The CA's parameters: its name is derived from its key (so it is the same on every start).
fn ca_params(key: &KeyPair, now: SystemTime) -> CertificateParams {
    let digest = ring::digest::digest(&ring::digest::SHA256, &key.public_key_der());
    let id: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("remediate local CA {id}"));
    name.push(DnType::OrganizationName, "remediate");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = random_serial().ok();
    set_validity(&mut params, now - DAY, now + DAY * CA_DAYS as u32);
    params
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError("no random bytes for a serial number".into()))?;
    // A positive integer.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Valid from `from` until `until` (whole seconds).
fn set_validity(params: &mut CertificateParams, from: SystemTime, until: SystemTime) {
    let since_epoch = |at: SystemTime| {
        Duration::from_secs(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(from);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(until);
}

/// Write a new file (never overwriting one that exists) with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    match options.open(path) {
        Ok(mut file) => file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| TlsError::new(format!("writing {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(TlsError::new(format!("creating {}", path.display()), e)),
    }
}

/// A leaf in use and when to replace it.
struct Leaf {
    key: Arc<CertifiedKey>,
    renew_at: SystemTime,
}

/// Presents the CA's leaf for a fixed set of names, minting a new one when it is due.
struct LocalResolver {
    ca: Arc<LocalCa>,
    names: Vec<String>,
    leaf: Mutex<Leaf>,
}

impl std::fmt::Debug for LocalResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalResolver")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for LocalResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut leaf = self.leaf.lock().unwrap_or_else(|e| e.into_inner());
        if SystemTime::now() >= leaf.renew_at {
            match self.ca.mint(&self.names) {
                Ok(fresh) => *leaf = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing a certificate failed; the current one stays in use")
                }
            }
        }
        Some(leaf.key.clone())
    }
}

/// The operator's certificate files.
#[derive(Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn load(&self) -> Result<CertifiedKey, TlsError> {
        let (cert, key) = (&self.cert, &self.key);
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::new(format!("reading {}", cert.display()), e))?;
        if chain.is_empty() {
            return Err(TlsError(format!(
                "{} holds no certificate (PEM 'CERTIFICATE' blocks)",
                cert.display()
            )));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::new(format!("reading {}", key.display()), e))?;
        CertifiedKey::from_der(chain, private, &provider())
            .map_err(|e| TlsError::new(format!("{} with {}", cert.display(), key.display()), e))
    }

    /// A configuration presenting what the files hold now.
    fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(Arc::new(Fixed(Arc::new(self.load()?))))
    }
}

/// Always the same certificate.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A server's TLS configuration, and the files it reloads from when it has them.
///
/// A reload replaces the whole configuration (not only its certificate), so the sessions of
/// the previous one are not resumed: every new connection is shown the new certificate.
#[derive(Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    files: Option<Arc<Files>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The main listener's configuration: the local CA's leaf (`ca` must then be given) or the
    /// operator's files.
    pub fn new(source: &TlsSource, ca: Option<&Arc<LocalCa>>) -> Result<ServerTls, TlsError> {
        match source {
            TlsSource::LocalCa { names } => {
                let ca = ca.ok_or_else(|| TlsError("the local CA is not loaded".into()))?;
                let mut all: Vec<String> = DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect();
                for name in names {
                    if !all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        all.push(name.clone());
                    }
                }
                ca.server_config(&all)
            }
            TlsSource::Files { cert, key } => {
                let files = Files {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                Ok(ServerTls {
                    current: Arc::new(RwLock::new(files.server_config()?)),
                    files: Some(Arc::new(files)),
                })
            }
        }
    }

    /// The configuration in use now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An acceptor for a new connection (with the configuration in use now).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// Whether the certificate comes from files that [`ServerTls::reload`] reads again.
    pub fn reloadable(&self) -> bool {
        self.files.is_some()
    }

    /// Read the certificate files again: new connections present what they hold now. On an
    /// error (a file missing, unreadable, or a key that does not match) the certificate in use
    /// stays. Returns the certificate file when something was reloaded.
    pub fn reload(&self) -> Result<Option<PathBuf>, TlsError> {
        let Some(files) = &self.files else {
            return Ok(None);
        };
        let config = files.server_config()?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(Some(files.cert.clone()))
    }
}

/// TLS 1.2 and 1.3 with ring's safe defaults, HTTP/1.1 only (ALPN), certificates from `resolver`.
fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("configuring TLS", e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("remediate-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_ca_is_made_once_and_reused() {
        let dir = temp_dir();
        let first = LocalCa::load_or_create(&dir).unwrap();
        let again = LocalCa::load_or_create(&dir).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.cert_der(), again.cert_der());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The leaves the reloaded CA signs verify against the stored certificate.
        again.check().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let (one, two) = (temp_dir(), temp_dir());
        LocalCa::load_or_create(&one).unwrap();
        LocalCa::load_or_create(&two).unwrap();
        std::fs::copy(two.join(CA_CERT_FILE), one.join(CA_CERT_FILE)).unwrap();
        let error = LocalCa::load_or_create(&one).unwrap_err();
        assert!(error.0.contains("does not belong"), "{error}");
        std::fs::remove_dir_all(&one).unwrap();
        std::fs::remove_dir_all(&two).unwrap();
    }

    #[test]
    fn files_load_and_reload_and_refuse_a_mismatched_key() {
        let dir = temp_dir();
        let ca = LocalCa::load_or_create(&dir).unwrap();
        let (cert, key) = ca.issue_pem(&["example.test".to_owned()]).unwrap();
        let (cert_path, key_path) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let tls = ServerTls::new(
            &TlsSource::Files {
                cert: cert_path.clone(),
                key: key_path.clone(),
            },
            None,
        )
        .unwrap();
        assert!(tls.reloadable());
        let (_, other_key) = ca.issue_pem(&["example.test".to_owned()]).unwrap();
        std::fs::write(&key_path, &other_key).unwrap();
        let error = tls.reload().unwrap_err();
        assert!(error.0.contains("c.pem"), "{error}");
        std::fs::write(&key_path, &key).unwrap();
        assert_eq!(tls.reload().unwrap(), Some(cert_path));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
