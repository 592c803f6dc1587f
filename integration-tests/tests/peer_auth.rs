//! Peer links authenticate with the cluster secret: a process that does
//! not know it cannot forward a command into the log or hold a peer
//! connection open; without a secret the same forgery gets in (the
//! negative control that shows the check is what stops it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::Cluster;

/// A forwarded-proposal frame claiming to come from node `origin`,
/// carrying `SET key value`, length-prefixed as on a peer link.
fn forged_forward(origin: u64, key: &str, value: &str) -> Vec<u8> {
    let mut body = vec![2u8];
    body.extend_from_slice(&origin.to_be_bytes());
    body.extend_from_slice(&(1u64 << 40).to_be_bytes());
    body.extend_from_slice(&0u64.to_be_bytes());
    let argv: [&[u8]; 3] = [b"SET", key.as_bytes(), value.as_bytes()];
    body.extend_from_slice(&(argv.len() as u32).to_be_bytes());
    for arg in argv {
        body.extend_from_slice(&(arg.len() as u32).to_be_bytes());
        body.extend_from_slice(arg);
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Dials the leader's peer port as node `origin` (no secret) and sends a
/// forged SET.
fn forge(cluster: &mut Cluster, key: &str) -> Result<()> {
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let origin = (1..=3).find(|&id| id != leader).unwrap();
    let mut stream = TcpStream::connect(cluster.node(leader).peer_addr)?;
    stream.write_all(&origin.to_be_bytes())?;
    stream.write_all(&forged_forward(origin, key, "forged"))?;
    std::thread::sleep(Duration::from_millis(1500));
    Ok(())
}

fn get(cluster: &Cluster, key: &str) -> Result<Option<String>> {
    let mut con = cluster.client(1)?;
    Ok(redis::cmd("GET").arg(key).query(&mut con)?)
}

#[test]
fn a_process_without_the_cluster_secret_cannot_reach_the_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-long-enough-cluster-secret\n")?;
    let mut cluster = Cluster::start_with(3, &["--cluster-secret-file", secret.to_str().unwrap()])?;
    let mut con = cluster.client(2)?;
    redis::cmd("SET")
        .arg("real")
        .arg("1")
        .query::<()>(&mut con)?;
    forge(&mut cluster, "forged")?;
    assert_eq!(
        get(&cluster, "forged")?,
        None,
        "a forged forward was applied"
    );
    assert_eq!(get(&cluster, "real")?.as_deref(), Some("1"));

    // A connection that never finishes the handshake is closed.
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut idle = TcpStream::connect(cluster.node(leader).peer_addr)?;
    idle.set_read_timeout(Some(Duration::from_secs(15)))?;
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = idle.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an idle peer held on"
    );
    assert_eq!(sink.len(), 16, "only the nonce was sent");

    // The cluster itself is unaffected and counts the refusals.
    for n in 0..20 {
        redis::cmd("SET")
            .arg(format!("k{n}"))
            .arg(n)
            .query::<()>(&mut con)?;
    }
    let (_, metrics) = integration_tests::http_get(cluster.node(leader).metrics_addr, "/metrics")?;
    let rejected: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("lockstep_peer_rejected_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(rejected >= 2.0, "rejections counted: {rejected}");
    Ok(())
}

#[test]
fn peers_with_mutual_tls_replicate_and_refuse_strangers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = integration_tests::pki::Pki::new(dir.path())?;
    let (cert, key) = pki.issue("node", &["127.0.0.1", "localhost"])?;
    let ca = pki.ca_path();
    let args = [
        "--peer-tls-cert-file",
        cert.to_str().unwrap(),
        "--peer-tls-key-file",
        key.to_str().unwrap(),
        "--peer-tls-ca-file",
        ca.to_str().unwrap(),
    ];
    let mut cluster = Cluster::start_with(3, &args)?;
    let mut con = cluster.client(1)?;
    redis::cmd("SET")
        .arg("over-mtls")
        .arg("1")
        .query::<()>(&mut con)?;
    let mut other = cluster.client(3)?;
    let value: Option<String> = redis::cmd("GET").arg("over-mtls").query(&mut other)?;
    assert_eq!(value.as_deref(), Some("1"));
    // Plaintext frames to a TLS peer port get nowhere.
    forge(&mut cluster, "forged")?;
    assert_eq!(
        get(&cluster, "forged")?,
        None,
        "a plaintext forgery was applied"
    );
    // Nor does a TLS client whose certificate another CA signed.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir)?;
    let stranger_ca = integration_tests::pki::Pki::new(&other_dir)?;
    let (cert, key) = stranger_ca.issue("stranger", &["127.0.0.1"])?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let refused = tls_dial(cluster.node(leader).peer_addr, &ca, &cert, &key);
    assert!(refused.is_err(), "a stranger's certificate was accepted");
    let (cert, key) = pki.issue("member", &["127.0.0.1"])?;
    tls_dial(cluster.node(leader).peer_addr, &ca, &cert, &key)?;
    Ok(())
}

/// A TLS handshake to a peer port with the given client certificate,
/// then a read: Err if the peer refuses it.
fn tls_dial(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let certs =
        rustls::pki_types::CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    // The handshake completes on first use; a member's id then goes out.
    tls.write_all(&99u64.to_be_bytes())?;
    tls.flush()?;
    let mut byte = [0u8; 1];
    match tls.read(&mut byte) {
        // Accepted: the peer waits for frames (a read timeout), or closes
        // after our unknown id sends nothing.
        Err(err)
            if err.kind() == std::io::ErrorKind::WouldBlock
                || err.kind() == std::io::ErrorKind::TimedOut =>
        {
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[test]
fn without_a_secret_the_same_forgery_gets_in() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    forge(&mut cluster, "forged")?;
    assert_eq!(get(&cluster, "forged")?.as_deref(), Some("forged"));
    Ok(())
}
