//! TLS for the integration tests, with nothing but crates: certificates made
//! at test time with rcgen, a throwaway `redis-server` on a TLS port, a
//! small RESP client over rustls to read back what pipeload loaded, and a
//! TLS server that answers one command and then never again.
//!
//! - [`Pki`]: a CA, a server certificate for `localhost` and 127.0.0.1
//!   signed by it, a client certificate signed by it, and an unrelated CA
//!   that verifies none of them; made once per test binary, kept in memory.
//! - [`TlsFiles`]: those as PEM files in a directory removed on drop.
//! - [`TlsRedis`]: `redis-server --port 0 --tls-port P`, no persistence,
//!   its own directory and files, client certificates required or not;
//!   killed on drop.
//! - [`TlsClient`]: RESP over rustls, trusting the test CA.
//! - [`SilentTlsServer`]: completes the handshake, answers the first
//!   command with `+PONG`, then reads and never answers.

use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls::{StreamOwned, crypto::CryptoProvider};

use crate::client::{Value, process_id, read_value, resp_command};
use crate::server::{free_port, spawn_server_binary, start_with_retries, wait_until_answering};
use crate::temp::TempDir;

/// Hang guard for every read of the test client and the silent server.
const READ_GUARD: Duration = Duration::from_secs(60);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The test PKI, PEM text in memory.
pub struct Pki {
    ca: String,
    other_ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    /// One per test binary: key generation is the slow part.
    pub fn shared() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(Pki::generate)
    }

    fn generate() -> Pki {
        let (ca, issuer) = certificate_authority("pipeload test CA");
        let (other_ca, _) = certificate_authority("some other CA");
        let (server_cert, server_key) = leaf(
            &issuer,
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            "pipeload test client",
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca,
            other_ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    /// A rustls client configuration trusting the test CA, with the
    /// client certificate or without.
    pub fn client_config(&self, with_client_cert: bool) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for certificate in certificates(&self.ca) {
            roots.add(certificate).expect("add the test CA");
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        Arc::new(match with_client_cert {
            true => builder
                .with_client_auth_cert(
                    certificates(&self.client_cert),
                    private_key(&self.client_key),
                )
                .expect("client certificate"),
            false => builder.with_no_client_auth(),
        })
    }

    /// A rustls server configuration with the server certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(
                    certificates(&self.server_cert),
                    private_key(&self.server_key),
                )
                .expect("server certificate"),
        )
    }
}

/// The test PKI as PEM files, in a directory removed on drop.
pub struct TlsFiles {
    /// Held for its drop, which removes the files.
    _dir: TempDir,
    pub ca: PathBuf,
    /// A CA that signed none of these certificates.
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Writes the shared test PKI into a new directory.
    #[expect(
        clippy::new_without_default,
        reason = "it writes files: not a default value"
    )]
    pub fn new() -> TlsFiles {
        let pki = Pki::shared();
        let dir = TempDir::new("tls");
        TlsFiles {
            ca: dir.write("ca.pem", &pki.ca),
            other_ca: dir.write("other-ca.pem", &pki.other_ca),
            server_cert: dir.write("server.pem", &pki.server_cert),
            server_key: dir.write("server.key", &pki.server_key),
            client_cert: dir.write("client.pem", &pki.client_cert),
            client_key: dir.write("client.key", &pki.client_key),
            _dir: dir,
        }
    }

    /// The `redis-server` arguments for a TLS port with these files: the
    /// server's certificate and key, and the CA it trusts.
    pub fn server_args(&self) -> [&OsStr; 6] {
        [
            OsStr::new("--tls-cert-file"),
            self.server_cert.as_os_str(),
            OsStr::new("--tls-key-file"),
            self.server_key.as_os_str(),
            OsStr::new("--tls-ca-cert-file"),
            self.ca.as_os_str(),
        ]
    }
}

/// A self-signed CA: its certificate (PEM) and what signs with it.
fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("generate a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let certificate = params.self_signed(&key).expect("self-sign the CA");
    (certificate.pem(), Issuer::new(params, key))
}

/// A certificate signed by `issuer`: its PEM and its key's PEM.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    alt_names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("generate a key");
    let mut params = CertificateParams::new(alt_names).expect("certificate params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let certificate = params.signed_by(&key, issuer).expect("sign a certificate");
    (certificate.pem(), key.serialize_pem())
}

fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("test certificate PEM")
}

fn private_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("test key PEM")
}

/// A throwaway `redis-server` listening on a TLS port only.
pub struct TlsRedis {
    child: Child,
    port: u16,
    files: TlsFiles,
    /// Whether clients must present a certificate.
    auth_clients: bool,
    dir: TempDir,
}

impl TlsRedis {
    /// A TLS server with the shared test certificates; `auth_clients`
    /// makes it require a client certificate (`--tls-auth-clients yes`).
    pub fn start(auth_clients: bool) -> TlsRedis {
        start_with_retries("redis-server with TLS", || {
            TlsRedis::try_start(TlsFiles::new(), free_port(), auth_clients)
        })
    }

    fn try_start(files: TlsFiles, port: u16, auth_clients: bool) -> Result<TlsRedis, String> {
        let dir = TempDir::new("redis-tls");
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg("0")
            .arg("--tls-port")
            .arg(port.to_string())
            .args(files.server_args())
            .arg("--tls-auth-clients")
            .arg(if auth_clients { "yes" } else { "no" })
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_server_binary(&mut command)?;
        let mut server = TlsRedis {
            child,
            port,
            files,
            auth_clients,
            dir,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Waits until this server (not another on its port) answers over TLS.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let (port, auth_clients) = (self.port, self.auth_clients);
        let log = self.dir.path().join("redis.log");
        wait_until_answering(&mut self.child, &format!("TLS port {port}"), &log, || {
            let mut client = TlsClient::try_connect(port, auth_clients).ok()?;
            Some(client.server_pid())
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The certificate files this server uses (and the client's).
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A client trusting the test CA (with the client certificate when the
    /// server requires one).
    pub fn client(&self) -> TlsClient {
        TlsClient::try_connect(self.port, self.auth_clients)
            .unwrap_or_else(|err| panic!("connect over TLS to port {}: {err}", self.port))
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RESP over rustls: enough to read back what a test loaded.
pub struct TlsClient {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    pub fn try_connect(port: u16, with_client_cert: bool) -> io::Result<TlsClient> {
        let socket = TcpStream::connect(("127.0.0.1", port))?;
        socket.set_read_timeout(Some(READ_GUARD))?;
        let name = ServerName::try_from("localhost").expect("a server name");
        let connection = ClientConnection::new(Pki::shared().client_config(with_client_cert), name)
            .map_err(io::Error::other)?;
        let mut client = TlsClient {
            reader: BufReader::new(StreamOwned::new(connection, socket)),
        };
        // The handshake, and under TLS 1.3 the server's verdict on the
        // client certificate, come with the first answer.
        match client.try_cmd(&["PING"])? {
            Value::Simple(pong) if pong == "PONG" => Ok(client),
            other => Err(io::Error::other(format!("PING answered {other:?}"))),
        }
    }

    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Value> {
        let stream = self.reader.get_mut();
        stream.write_all(&resp_command(args))?;
        stream.flush()?;
        read_value(&mut self.reader)
    }

    /// The pid of the server process (`INFO server`).
    pub fn server_pid(&mut self) -> io::Result<u32> {
        process_id(self.try_cmd(&["INFO", "server"])?)
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        let command = String::from_utf8_lossy(args[0].as_ref()).into_owned();
        self.try_cmd(args)
            .unwrap_or_else(|err| panic!("{command} over TLS: {err}"))
    }

    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.cmd(&[b"GET".as_slice(), key.as_ref()]).into_bulk()
    }

    pub fn dbsize(&mut self) -> i64 {
        self.cmd(&["DBSIZE"]).as_int()
    }

    pub fn select(&mut self, db: u32) {
        let reply = self.cmd(&["SELECT".to_owned(), db.to_string()]);
        assert_eq!(reply, Value::Simple("OK".into()), "SELECT {db}");
    }
}

/// A TLS server that answers the first command with `+PONG`, then reads
/// everything and answers nothing: a server that hangs after the handshake.
pub struct SilentTlsServer {
    port: u16,
    /// Plaintext bytes received after the first command.
    swallowed: Arc<AtomicU64>,
}

impl SilentTlsServer {
    pub fn start() -> SilentTlsServer {
        let config = Pki::shared().server_config();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let swallowed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&swallowed);
        // Detached: it ends when the client goes away (or the guard fires).
        thread::spawn(move || {
            let Ok((socket, _)) = listener.accept() else {
                return;
            };
            let _ = socket.set_read_timeout(Some(READ_GUARD));
            let Ok(connection) = ServerConnection::new(config) else {
                return;
            };
            let mut reader = BufReader::new(StreamOwned::new(connection, socket));
            if read_value(&mut reader).is_err() {
                return;
            }
            let stream = reader.get_mut();
            if stream
                .write_all(b"+PONG\r\n")
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            while let Ok(read @ 1..) = reader.read(&mut chunk) {
                counter.fetch_add(read as u64, Ordering::Relaxed);
            }
        });
        SilentTlsServer { port, swallowed }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn swallowed(&self) -> u64 {
        self.swallowed.load(Ordering::Relaxed)
    }
}
