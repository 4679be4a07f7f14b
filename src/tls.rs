//! TLS (`--tls`, `rediss://`): the client configuration, built once from the
//! flags' files, and a TLS stream that two threads use at once.
//!
//! Place in the data flow: `cli` loads a [`TlsConfig`] while it validates
//! the flags (an unreadable certificate fails before anything connects);
//! `conn` runs [`handshake`] right after the TCP connect and wraps the
//! result in `Stream::Tls`, which the writer and the reply reader then share
//! like a TCP socket.
//!
//! One rustls `ClientConnection` is one state machine, but the writer and
//! the reply reader use the connection at the same time. The handles of one
//! connection share it under a mutex that is never held across a socket
//! call, so neither thread ever waits for the other's I/O:
//! - writing takes the *send lock*, encrypts a piece of plaintext into TLS
//!   records under the state lock, and writes the records to the socket
//!   holding the send lock only. Every socket write happens under the send
//!   lock, and records are taken out of rustls under it too, so they leave
//!   in the order rustls numbered them;
//! - reading waits on the socket with no lock held, then feeds what came
//!   (ciphertext) to rustls under the state lock and copies the plaintext
//!   out. Records rustls wants sent in return (a key update, an alert) go
//!   out at once when the writer is idle, else with the writer's next piece.
//!
//! A socket read timeout surfaces as the socket's own WouldBlock/TimedOut
//! error, a closed session as `Ok(0)`, as on a TCP stream.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, DigitallySignedStruct, InconsistentKeys,
    RootCertStore, SignatureScheme, SupportedCipherSuite,
};

use crate::config::TlsOptions;
use crate::io_error::describe_io_error;

/// Plaintext encrypted per lock: 4 full TLS records. Small enough that the
/// reader never waits long for the state lock, large enough for big socket
/// writes.
const WRITE_PIECE: usize = 64 * 1024;

/// Most ciphertext read from the socket at once.
const READ_PIECE: usize = 64 * 1024;

/// Least ciphertext asked of the socket at once, however small the read.
const MIN_READ: usize = 4096;

/// What every TLS connection of a run uses: trust roots, client certificate
/// and protocol settings, loaded once.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    client: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
}

/// A TLS file could not be used, or the server name is not one; `Display`
/// is the line to print (it names the file).
#[derive(Debug)]
pub struct TlsSetupError(String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

impl TlsConfig {
    /// Reads the files the options name and builds the client
    /// configuration. Without `--cacert` or `--cacertdir` the system's CA
    /// store is trusted, as redis-cli trusts OpenSSL's.
    pub fn load(options: &TlsOptions) -> Result<TlsConfig, TlsSetupError> {
        let sni = options
            .sni
            .as_deref()
            .map(server_name)
            .transpose()
            .map_err(TlsSetupError)?;
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = offered_cipher_suites(options).map_err(TlsSetupError)?;
        let provider = Arc::new(provider);
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsSetupError(format!("cannot set up TLS: {error}")))?;
        let builder = match options.insecure {
            true => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(Arc::clone(&provider)))),
            false => builder.with_root_certificates(trust_roots(options)?),
        };
        let client = match &options.client_auth {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => builder.with_client_cert_resolver(Arc::new(
                SingleCertAndKey::from(client_certificate(cert_file, key_file, &provider)?),
            )),
        };
        Ok(TlsConfig {
            client: Arc::new(client),
            sni,
        })
    }
}

/// The OpenSSL names (as redis-cli's `--tls-ciphers` and
/// `--tls-ciphersuites` take them) of the suites rustls offers.
const CIPHER_NAMES: [(&str, CipherSuite); 9] = [
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The provider's suites, narrowed by `--tls-ciphers` (TLS 1.2) and
/// `--tls-ciphersuites` (TLS 1.3); a version whose flag is not given keeps
/// all of its suites, as OpenSSL does. A name rustls does not offer (an
/// OpenSSL keyword like `HIGH` included) is refused, naming what it offers:
/// quietly offering something else would not be what was asked.
fn offered_cipher_suites(options: &TlsOptions) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    let mut offered = Vec::new();
    for (flag, list, tls13) in [
        ("--tls-ciphersuites", &options.ciphersuites, true),
        ("--tls-ciphers", &options.ciphers, false),
    ] {
        let of_version = all
            .iter()
            .filter(|suite| matches!(suite, SupportedCipherSuite::Tls13(_)) == tls13);
        let Some(list) = list else {
            offered.extend(of_version.copied());
            continue;
        };
        let names: Vec<&str> = CIPHER_NAMES
            .iter()
            .filter(|(_, id)| of_version.clone().any(|suite| suite.suite() == *id))
            .map(|(name, _)| *name)
            .collect();
        for wanted in list.split(':').filter(|name| !name.is_empty()) {
            let Some((_, id)) = CIPHER_NAMES
                .iter()
                .find(|(name, _)| *name == wanted && names.contains(name))
            else {
                return Err(format!(
                    "{flag}: '{wanted}' is not one pipeload's TLS (rustls) offers; it offers {}",
                    names.join(":")
                ));
            };
            offered.extend(all.iter().filter(|suite| suite.suite() == *id).copied());
        }
        if !offered
            .iter()
            .any(|suite| matches!(suite, SupportedCipherSuite::Tls13(_)) == tls13)
        {
            return Err(format!("{flag}: no cipher named"));
        }
    }
    Ok(offered)
}

/// The client certificate chain and its key. Unlike rustls'
/// `with_client_auth_cert`, a certificate webpki cannot parse is not refused
/// here: OpenSSL's `x509 -req` without extensions makes X.509 v1
/// certificates, which servers (and redis-cli) accept. The server judges the
/// certificate; only a key that provably does not match it is refused.
fn client_certificate(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let chain = read_certificates(cert_file, "client certificate")?;
    let key_failed = |reason: String| {
        TlsSetupError(format!(
            "cannot read private key {}: {reason}",
            key_file.display()
        ))
    };
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| match error {
        pem::Error::NoItemsFound => key_failed("no PEM private key in it".into()),
        error => key_failed(describe_pem_error(&error)),
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| key_failed(error.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsSetupError(format!(
                "client certificate {} does not match private key {}",
                cert_file.display(),
                key_file.display()
            )))
        }
        _ => Ok(certified),
    }
}

/// A host name or IP address as rustls wants it.
fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned())
        .map_err(|error| format!("invalid TLS server name '{name}': {error}"))
}

fn trust_roots(options: &TlsOptions) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    if let Some(file) = &options.ca_file {
        for certificate in read_certificates(file, "CA certificate")? {
            roots.add(certificate).map_err(|error| {
                TlsSetupError(format!(
                    "cannot read CA certificate {}: {error}",
                    file.display()
                ))
            })?;
        }
    }
    if let Some(dir) = &options.ca_dir {
        let (added, _) = roots.add_parsable_certificates(read_certificate_dir(dir)?);
        if added == 0 {
            return Err(TlsSetupError(format!(
                "no CA certificate found in {}",
                dir.display()
            )));
        }
    }
    if options.ca_file.is_none() && options.ca_dir.is_none() {
        // The machine's store (what OpenSSL, hence redis-cli, trusts;
        // SSL_CERT_FILE and SSL_CERT_DIR override it).
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            let why = native
                .errors
                .first()
                .map(|error| format!(" ({error})"))
                .unwrap_or_default();
            return Err(TlsSetupError(format!(
                "no CA certificates in the system store{why}: install them \
                 (ca-certificates) or give --cacert FILE"
            )));
        }
    }
    Ok(roots)
}

/// Every certificate of a PEM file; none at all is an error.
fn read_certificates(
    file: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let failed =
        |reason: String| TlsSetupError(format!("cannot read {what} {}: {reason}", file.display()));
    let certificates = CertificateDer::pem_file_iter(file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| failed(describe_pem_error(&error)))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

/// The certificates of every PEM file in a directory (as OpenSSL's
/// CApath; files that hold none are skipped).
fn read_certificate_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let entries = fs::read_dir(dir).map_err(|error| {
        TlsSetupError(format!(
            "cannot read CA certificate directory {}: {}",
            dir.display(),
            describe_io_error(&error)
        ))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    let mut certificates = Vec::new();
    for path in paths {
        if let Ok(found) = CertificateDer::pem_file_iter(&path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        {
            certificates.extend(found);
        }
    }
    Ok(certificates)
}

fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::Io(error) => describe_io_error(error),
        other => other.to_string(),
    }
}

/// `--insecure`: any certificate is accepted, but the handshake signatures
/// are still checked, so the session is encrypted with the key of whoever
/// holds the certificate presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs the TLS handshake on a connected socket, to completion, so that a
/// certificate that does not verify is a connection error. `timeout` bounds
/// each wait for the server. Fails with the reason to print after
/// "TLS handshake failed: ".
pub fn handshake(
    socket: TcpStream,
    config: &TlsConfig,
    host: &str,
    timeout: Option<Duration>,
) -> Result<TlsStream, String> {
    let name = match &config.sni {
        Some(name) => name.clone(),
        None => server_name(host)?,
    };
    let mut connection = ClientConnection::new(Arc::clone(&config.client), name)
        .map_err(|error| error.to_string())?;
    socket
        .set_read_timeout(timeout)
        .map_err(|error| describe_io_error(&error))?;
    let mut answered = false;
    loop {
        while connection.wants_write() {
            connection
                .write_tls(&mut &socket)
                .map_err(|error| describe_io_error(&error))?;
        }
        if !connection.is_handshaking() {
            break;
        }
        if !answered {
            check_first_byte(&socket)?;
            answered = true;
        }
        match connection.read_tls(&mut &socket) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if is_timeout(&error) => return Err("no answer from the server".into()),
            Err(error) => return Err(describe_io_error(&error)),
        }
        if let Err(error) = connection.process_new_packets() {
            // The alert tells the server why; the error is what counts.
            let _ = connection.write_tls(&mut &socket);
            return Err(error.to_string());
        }
    }
    Ok(TlsStream {
        shared: Arc::new(Shared {
            socket,
            send: Mutex::new(Vec::new()),
            state: Mutex::new(State {
                connection,
                unfed: Vec::new(),
            }),
        }),
        incoming: Vec::new(),
    })
}

/// A TLS server's first byte is a record type (20 to 24); a plain server
/// answers a ClientHello with RESP text, if at all.
fn check_first_byte(socket: &TcpStream) -> Result<(), String> {
    let mut first = [0u8; 1];
    loop {
        return match socket.peek(&mut first) {
            Ok(0) => Err("the server closed the connection".into()),
            Ok(_) if (20..=24).contains(&first[0]) => Ok(()),
            Ok(_) => Err("the server does not speak TLS on this port".into()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if is_timeout(&error) => {
                Err("no answer from the server (does it speak TLS on this port?)".into())
            }
            Err(error) => Err(describe_io_error(&error)),
        };
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One handle on a TLS connection; `try_clone` makes another on the same
/// session. Reads and writes may run on two handles at once (one reader,
/// one writer).
pub struct TlsStream {
    shared: Arc<Shared>,
    /// Ciphertext read from the socket, before it is fed to rustls.
    /// Allocated on the first read: the writer's handle never reads.
    incoming: Vec<u8>,
}

struct Shared {
    socket: TcpStream,
    /// The send lock: held across every socket write, so records leave in
    /// the order they were made. Holds the records being written.
    send: Mutex<Vec<u8>>,
    /// The state lock: the TLS session. Never held across a socket call.
    /// Lock order: `send`, then `state`.
    state: Mutex<State>,
}

struct State {
    connection: ClientConnection,
    /// Ciphertext read but not yet taken by rustls (it holds back while
    /// decrypted plaintext waits to be read).
    unfed: Vec<u8>,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.shared.socket)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// Another handle on the same session and socket.
    pub fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            shared: Arc::clone(&self.shared),
            incoming: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.shared.socket.set_read_timeout(timeout)
    }

    /// Wakes whoever is blocked on the socket, through any handle.
    pub fn shutdown(&self) {
        let _ = self.shared.socket.shutdown(Shutdown::Both);
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // First what is already here (plaintext, or ciphertext held back).
        let mut received = None;
        loop {
            let (plaintext, wants_write) = {
                let mut state = self.shared.state()?;
                let plaintext = match received.take() {
                    Some(read) => state.decrypt(&self.incoming[..read], buf),
                    None => state.decrypt_unfed(buf),
                };
                (plaintext, state.connection.wants_write())
            };
            if wants_write {
                self.shared.send_queued();
            }
            if let Some(read) = plaintext? {
                return Ok(read);
            }
            // Nothing to give yet: wait for the server, no lock held. No
            // more than `buf` holds (plaintext is shorter than its
            // records), so nothing is usually held back.
            if self.incoming.is_empty() {
                self.incoming = vec![0; READ_PIECE];
            }
            let limit = buf.len().clamp(MIN_READ, READ_PIECE);
            received = Some((&self.shared.socket).read(&mut self.incoming[..limit])?);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let piece = &buf[..buf.len().min(WRITE_PIECE)];
        let mut records = self.shared.send()?;
        let accepted = {
            let mut state = self.shared.state()?;
            let accepted = state.connection.writer().write(piece)?;
            // With anything the reader queued, in order.
            take_records(&mut state.connection, &mut records)?;
            accepted
        };
        let written = (&self.shared.socket).write_all(&records);
        records.clear();
        written.map(|()| accepted)
    }

    /// Every `write` has sent its records already.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| poisoned())
    }

    fn send(&self) -> io::Result<MutexGuard<'_, Vec<u8>>> {
        self.send.lock().map_err(|_| poisoned())
    }

    /// Sends the records rustls queued while reading, unless the writer is
    /// busy: it may be blocked on a full socket, and the reader must never
    /// wait for it (the server may be waiting for us to read). The writer
    /// then sends them ahead of its next piece.
    fn send_queued(&self) {
        let Ok(mut records) = self.send.try_lock() else {
            return;
        };
        let taken = self
            .state()
            .and_then(|mut state| take_records(&mut state.connection, &mut records));
        if taken.is_ok() {
            // A failure here shows up on the next read or write.
            let _ = (&self.socket).write_all(&records);
        }
        records.clear();
    }
}

impl Drop for Shared {
    /// Says goodbye (close_notify), so the server sees a clean end, but
    /// never blocks: a server that stopped reading does not hold us up.
    fn drop(&mut self) {
        let Ok(state) = self.state.get_mut() else {
            return;
        };
        state.connection.send_close_notify();
        let mut records = Vec::new();
        if take_records(&mut state.connection, &mut records).is_ok()
            && self.socket.set_nonblocking(true).is_ok()
        {
            let _ = (&self.socket).write(&records);
        }
    }
}

impl State {
    /// Feeds `ciphertext` to rustls and copies the plaintext into `buf`.
    /// `Some(0)` is the end of the session, `None` means more ciphertext
    /// is needed. Ciphertext rustls will not take yet is kept for later.
    fn decrypt(&mut self, ciphertext: &[u8], buf: &mut [u8]) -> io::Result<Option<usize>> {
        if ciphertext.is_empty() {
            // The socket's end: rustls decides whether it was clean.
            self.connection.read_tls(&mut io::empty())?;
            return self.take_plaintext(buf);
        }
        let mut filled = self.copy_plaintext(buf)?;
        let mut rest = ciphertext;
        while !rest.is_empty() && filled < buf.len() {
            match self.connection.read_tls(&mut rest) {
                // The session was closed: nothing after it counts.
                Ok(0) => rest = &[],
                Ok(_) => {
                    self.connection
                        .process_new_packets()
                        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                    filled += self.copy_plaintext(&mut buf[filled..])?;
                }
                // rustls holds back while plaintext waits (`Other` is how
                // it says so; reading from a slice fails no other way).
                Err(error) if error.kind() == io::ErrorKind::Other => break,
                Err(error) => return Err(error),
            }
        }
        self.unfed.extend_from_slice(rest);
        match filled {
            0 => self.take_plaintext(buf),
            filled => Ok(Some(filled)),
        }
    }

    /// Like `decrypt`, with the ciphertext held back earlier (if any).
    fn decrypt_unfed(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.unfed.is_empty() {
            return self.take_plaintext(buf);
        }
        let unfed = std::mem::take(&mut self.unfed);
        self.decrypt(&unfed, buf)
    }

    /// Plaintext rustls holds, the end of the session (`Some(0)`), or
    /// `None` when more ciphertext is needed.
    fn take_plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.connection.reader().read(buf) {
            Ok(read) => Ok(Some(read)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // The TCP connection ended without close_notify, as when a
            // server is killed. RESP frames are self-delimiting, so a cut
            // reply is caught by the scanner: report the end as TCP would.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
            Err(error) => Err(error),
        }
    }

    /// Copies what plaintext rustls holds into `buf`; 0 if none.
    fn copy_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.connection.reader().read(buf) {
            Ok(read) => Ok(read),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(0)
            }
            Err(error) => Err(error),
        }
    }
}

/// Moves every record rustls has ready into `records`.
fn take_records(connection: &mut ClientConnection, records: &mut Vec<u8>) -> io::Result<()> {
    while connection.wants_write() {
        connection.write_tls(records)?;
    }
    Ok(())
}

fn poisoned() -> io::Error {
    io::Error::other("TLS session unusable after a panic")
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    use super::*;

    const GUARD: Duration = Duration::from_secs(30);

    #[test]
    fn cipher_flags_narrow_what_is_offered_or_are_refused() {
        let named = |ciphers: Option<&str>, ciphersuites: Option<&str>| {
            offered_cipher_suites(&TlsOptions {
                ciphers: ciphers.map(str::to_owned),
                ciphersuites: ciphersuites.map(str::to_owned),
                ..TlsOptions::default()
            })
        };
        let all = named(None, None).unwrap();
        assert_eq!(
            all.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
        let narrowed = named(None, Some("TLS_CHACHA20_POLY1305_SHA256")).unwrap();
        let tls13: Vec<_> = narrowed
            .iter()
            .filter(|suite| matches!(suite, SupportedCipherSuite::Tls13(_)))
            .map(|suite| suite.suite())
            .collect();
        assert_eq!(tls13, [CipherSuite::TLS13_CHACHA20_POLY1305_SHA256]);
        assert_eq!(
            narrowed.len(),
            all.len() - 2,
            "TLS 1.2 keeps all of its own"
        );
        let tls12 = named(
            Some("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"),
            None,
        )
        .unwrap();
        assert_eq!(tls12.len(), 3 + 2);
        let refused = named(Some("HIGH:!aNULL"), None).unwrap_err();
        assert!(
            refused.starts_with("--tls-ciphers: 'HIGH' is not one"),
            "{refused}"
        );
        // A TLS 1.3 name is not a TLS 1.2 cipher.
        assert!(named(Some("TLS_AES_256_GCM_SHA384"), None).is_err());
        assert!(named(None, Some(":")).is_err());
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let options = TlsOptions {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsOptions::default()
        };
        let error = TlsConfig::load(&options).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"));
    }

    /// A client configuration and a server configuration whose certificate
    /// (for `localhost`, from a CA) it trusts.
    fn configs() -> (TlsConfig, Arc<ServerConfig>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();

        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let client = TlsConfig {
            client: Arc::new(client),
            sni: None,
        };
        (client, Arc::new(server))
    }

    /// Runs `script` on the server side of one TLS connection; returns the
    /// client's stream.
    fn connect(
        script: impl FnOnce(StreamOwned<ServerConnection, TcpStream>) + Send + 'static,
    ) -> TlsStream {
        let (client, server) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            socket.set_read_timeout(Some(GUARD)).unwrap();
            script(StreamOwned::new(
                ServerConnection::new(server).unwrap(),
                socket,
            ));
        });
        let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let stream = handshake(socket, &client, "localhost", Some(GUARD)).unwrap();
        stream.set_read_timeout(Some(GUARD)).unwrap();
        stream
    }

    /// Byte `at` of a long stream that shows misplaced or lost bytes.
    fn pattern(at: usize) -> u8 {
        (at % 251) as u8 ^ (at / 251 % 256) as u8
    }

    #[test]
    fn one_handle_writes_while_another_reads_large_transfers() {
        const TOTAL: usize = 24 << 20;
        let mut reader = connect(|mut server| {
            let mut chunk = vec![0u8; 100_000];
            loop {
                match server.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => server.write_all(&chunk[..read]).unwrap(),
                }
            }
        });
        let mut writer = reader.try_clone().unwrap();
        let sending = thread::spawn(move || {
            let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
            // Uneven pieces, some larger than one write piece.
            for piece in data.chunks(150_001) {
                writer.write_all(piece).unwrap();
            }
            writer
        });
        // Every buffer size, down to one byte: plaintext held back inside
        // rustls and ciphertext held back outside it both get exercised.
        let sizes = [1, 7, 4_095, 16_384, 65_536, 300_000];
        let mut buf = vec![0u8; 300_000];
        let mut received = 0;
        let mut turn = 0;
        while received < TOTAL {
            let size = sizes[turn % sizes.len()].min(TOTAL - received);
            turn += 1;
            let read = reader.read(&mut buf[..size]).unwrap();
            assert!(read > 0, "end of stream after {received} bytes");
            for (offset, byte) in buf[..read].iter().enumerate() {
                assert_eq!(
                    *byte,
                    pattern(received + offset),
                    "byte {}",
                    received + offset
                );
            }
            received += read;
        }
        sending.join().unwrap();
    }

    #[test]
    fn read_timeout_is_would_block_or_timed_out() {
        let mut stream = connect(|mut server| {
            // Never answers; ends when the client goes.
            let _ = server.read(&mut [0u8; 16]);
        });
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let error = stream.read(&mut [0u8; 16]).unwrap_err();
        assert!(is_timeout(&error), "{error:?}");
    }

    #[test]
    fn clean_close_and_abrupt_close_both_end_the_stream() {
        let mut clean = connect(|mut server| {
            server.write_all(b"+bye\r\n").unwrap();
            server.conn.send_close_notify();
            server.flush().unwrap();
        });
        let mut abrupt = connect(|mut server| {
            server.write_all(b"+bye\r\n").unwrap();
            server.flush().unwrap();
            // Dropped without close_notify, as a killed server.
        });
        for stream in [&mut clean, &mut abrupt] {
            let mut text = Vec::new();
            stream.read_to_end(&mut text).unwrap();
            assert_eq!(text, b"+bye\r\n");
        }
    }
}
