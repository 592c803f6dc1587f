//! TLS clients on real processes, with a throwaway CA made by rcgen:
//! a rustls client, redis-cli --tls and redis-py with ssl=True connect;
//! client certificates are required when configured; plaintext on the
//! TLS port and handshakes that never finish are closed; a renewed
//! certificate is picked up without a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::pki::Pki;
use integration_tests::{free_port, retry, wait_for_port, Cluster};

/// A rustls client: sends PING, returns the reply line.
fn tls_ping(addr: SocketAddr, ca: &Path, client: Option<(&Path, &Path)>) -> Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca)?;
    for cert in rustls_pemfile_certs(&pem)? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = rustls_pemfile_certs(&std::fs::read(cert)?)?;
            use rustls::pki_types::pem::PemObject;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&std::fs::read(key)?)
                .context("client key")?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"PING\r\n")?;
    let mut reply = [0u8; 64];
    let n = tls.read(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    Ok(rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?)
}

fn start(pki: &Pki, extra: &[&str]) -> Result<(Cluster, SocketAddr)> {
    let (cert, key) = pki.issue("server", &["localhost", "127.0.0.1"])?;
    let port = free_port();
    let tls = SocketAddr::from(([127, 0, 0, 1], port));
    let mut args = vec![
        "--tls-listen".to_string(),
        tls.to_string(),
        "--tls-cert-file".into(),
        cert.display().to_string(),
        "--tls-key-file".into(),
        key.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with(1, &args)?;
    wait_for_port(tls, Duration::from_secs(10))?;
    Ok((cluster, tls))
}

#[test]
fn tls_clients_connect_and_plaintext_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path())?;
    let (cluster, tls) = start(&pki, &[])?;
    assert_eq!(tls_ping(tls, &pki.ca_path(), None)?, "+PONG\r\n");

    // redis-cli --tls, and redis-py with ssl=True.
    let ca = pki.ca_path().display().to_string();
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &tls.port().to_string()])
        .args(["--tls", "--cacert", &ca, "--sni", "localhost"])
        .args(["SET", "over-tls", "yes"])
        .output()
        .context("redis-cli")?;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "OK",
        "{output:?}"
    );
    let script = format!(
        "import redis; r = redis.Redis(host='localhost', port={}, ssl=True, ssl_ca_certs='{ca}'); \
         print(r.get('over-tls').decode())",
        tls.port()
    );
    let output = Command::new("python3").args(["-c", &script]).output()?;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "yes",
        "{output:?}"
    );
    // The same data on the plaintext port.
    let mut plain = cluster.client(1)?;
    let value: String = redis::cmd("GET").arg("over-tls").query(&mut plain)?;
    assert_eq!(value, "yes");

    // Plaintext on the TLS port: closed, nothing served.
    let mut stranger = TcpStream::connect(tls)?;
    stranger.set_read_timeout(Some(Duration::from_secs(15)))?;
    stranger.write_all(b"PING\r\n")?;
    let mut reply = Vec::new();
    let _ = stranger.read_to_end(&mut reply);
    assert!(!String::from_utf8_lossy(&reply).contains("PONG"));
    // A handshake that never finishes is cut off.
    let mut silent = TcpStream::connect(tls)?;
    silent.set_read_timeout(Some(Duration::from_secs(20)))?;
    let started = Instant::now();
    let _ = silent.read_to_end(&mut Vec::new());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a silent client held on"
    );
    assert_eq!(tls_ping(tls, &pki.ca_path(), None)?, "+PONG\r\n");

    // A renewed certificate (here: one from a new CA) is served without a
    // restart.
    let renewed_dir = dir.path().join("renewed");
    std::fs::create_dir_all(&renewed_dir)?;
    let renewed = Pki::new(&renewed_dir)?;
    let (cert, key) = renewed.issue("server", &["localhost", "127.0.0.1"])?;
    std::fs::copy(&key, dir.path().join("server.key"))?;
    std::fs::copy(&cert, dir.path().join("server.pem"))?;
    retry(Duration::from_secs(20), || {
        let reply = tls_ping(tls, &renewed.ca_path(), None)?;
        if reply != "+PONG\r\n" {
            bail!("{reply}");
        }
        Ok(())
    })?;
    Ok(())
}

#[test]
fn client_certificates_are_required_when_configured() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path())?;
    let ca = pki.ca_path().display().to_string();
    let (_cluster, tls) = start(&pki, &["--tls-ca-cert-file", &ca])?;
    let (cert, key) = pki.issue("client", &["client"])?;
    assert_eq!(
        tls_ping(tls, &pki.ca_path(), Some((&cert, &key)))?,
        "+PONG\r\n"
    );
    assert!(
        tls_ping(tls, &pki.ca_path(), None).map_or(true, |reply| !reply.contains("PONG")),
        "a client without a certificate was served"
    );
    // A certificate from another CA is refused too.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir)?;
    let other = Pki::new(&other_dir)?;
    let (cert, key) = other.issue("intruder", &["intruder"])?;
    assert!(
        tls_ping(tls, &pki.ca_path(), Some((&cert, &key))).map_or(true, |r| !r.contains("PONG"))
    );
    Ok(())
}
