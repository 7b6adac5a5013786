//! TLS for the tests: certificates made with the `openssl` command (a CA, a server certificate
//! for localhost and 127.0.0.1, a client certificate, an unrelated CA, and on demand self-signed
//! server certificates, current or expired), and a redis-server that serves TLS on one port and
//! plain TCP on another (for the test's own checks).

use crate::{free_port, Redis};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Certificates in a temporary directory, deleted on drop.
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes every certificate and key (EC P-256, valid two days).
    pub fn new() -> TestCerts {
        let certs = TestCerts {
            dir: crate::temp_dir(),
        };
        certs.ca("ca", "smart-relayer test CA");
        certs.ca("other-ca", "some other CA");
        certs.leaf(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        certs.leaf("client", "relayer", "extendedKeyUsage=clientAuth\n");
        certs
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<name>.pem` (certificate) or `<name>.key` (its key) in the directory: `ca`, `other-ca`,
    /// `server`, `client`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self, name: &str, cn: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// A certificate signed by `ca`, with the extensions in `ext` (openssl extfile lines).
    fn leaf(&self, name: &str, cn: &str, ext: &str) {
        std::fs::write(self.file(&format!("{name}.ext")), ext).unwrap();
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    /// A self-signed certificate for localhost and 127.0.0.1 made as `openssl req -x509` makes
    /// one by default (RSA, `CA:TRUE`): `<name>.pem` and `<name>.key`.
    pub fn self_signed(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]);
    }

    /// The same as `self_signed`, valid only on the first of January 2020. `openssl req` of
    /// OpenSSL 3.0 cannot date a certificate in the past; `openssl ca` can.
    pub fn expired_self_signed(&self, name: &str) {
        let db = format!("{name}.db");
        std::fs::create_dir_all(self.file(&db)).unwrap();
        std::fs::write(self.file(&format!("{db}/index.txt")), "").unwrap();
        std::fs::write(self.file(&format!("{db}/serial")), "01\n").unwrap();
        let cnf = format!(
            "[ca]\ndefault_ca = self\n[self]\ndatabase = {db}/index.txt\nserial = {db}/serial\n\
             new_certs_dir = {db}\ndefault_md = sha256\npolicy = any\nx509_extensions = ext\n\
             [any]\ncommonName = supplied\n[ext]\nbasicConstraints = critical,CA:TRUE\n\
             subjectAltName = DNS:localhost,IP:127.0.0.1\n"
        );
        std::fs::write(self.file(&format!("{name}.cnf")), cnf).unwrap();
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=localhost",
        ]);
        self.openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-selfsign",
            "-config",
            &format!("{name}.cnf"),
            "-keyfile",
            &format!("{name}.key"),
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.pem"),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let (st, _, err) = crate::run_program(
            Command::new("openssl").args(args).current_dir(self.dir.path()),
            b"",
            "openssl (is openssl installed?)",
        );
        assert!(st.success(), "openssl {args:?} failed with {st}: {err}");
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        TestCerts::new()
    }
}

/// A redis-server serving TLS (the server certificate of `certs`) on a port of its own, and
/// plain TCP on `redis.port()` for the test's direct checks.
pub struct TlsRedis {
    pub redis: Redis,
    pub tls_port: u16,
}

impl TlsRedis {
    /// `client_certs`: whether the server requires a client certificate signed by the CA.
    /// `extra`: more redis-server arguments.
    pub fn start(certs: &TestCerts, client_certs: bool, extra: &[&str]) -> TlsRedis {
        TlsRedis::serving(certs, "server", client_certs, extra)
    }

    /// Like `start`, the server presenting the certificate `<name>.pem` of `certs`.
    pub fn serving(certs: &TestCerts, name: &str, client_certs: bool, extra: &[&str]) -> TlsRedis {
        let tls_port = free_port();
        let port = tls_port.to_string();
        let (cert, key, ca) = (
            certs.file(&format!("{name}.pem")),
            certs.file(&format!("{name}.key")),
            certs.file("ca.pem"),
        );
        let mut args = vec![
            "--tls-port",
            &port,
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca.to_str().unwrap(),
            "--tls-auth-clients",
            if client_certs { "yes" } else { "no" },
        ];
        args.extend_from_slice(extra);
        TlsRedis {
            redis: Redis::start_with(&args),
            tls_port,
        }
    }

    /// `rediss://[userinfo@]127.0.0.1:TLS_PORT`
    pub fn url(&self, userinfo: &str) -> String {
        let at = if userinfo.is_empty() { "" } else { "@" };
        format!("rediss://{userinfo}{at}127.0.0.1:{}", self.tls_port)
    }
}
