//! The ZooKeeper front end on a real three-node cluster: kazoo (the
//! Python ZooKeeper client, unmodified; `python/zk_client.py`) through
//! followers, a kazoo lock seen from redis on another node, and the
//! protocol's edges through raw frames: sessions that move between nodes
//! and expire, notifications before the replies that reflect them,
//! persistent watches and setWatches after a reconnect, and requests that
//! must close the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use integration_tests::Cluster;
use lockstep_zk::jute::{Reader, Writer};
use lockstep_zk::proto::{err, op};

fn zk_hosts(cluster: &Cluster, order: &[u64]) -> Vec<String> {
    order
        .iter()
        .map(|id| cluster.node(*id).zk_addr.to_string())
        .collect()
}

fn kazoo(scenario: &str, hosts: &[String]) -> Result<()> {
    let output = Command::new("python3")
        .arg(integration_tests::manifest_dir().join("python/zk_client.py"))
        .arg(scenario)
        .args(hosts)
        .output()
        .context("running kazoo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains(&format!("{scenario} ok")),
        "kazoo {scenario}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A kazoo scenario that talks back: its stdout line by line, and a line
/// on its stdin when the test says so.
struct Interactive {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Interactive {
    fn start(scenario: &str, args: &[&str]) -> Result<Interactive> {
        let mut child = Command::new("python3")
            .arg(integration_tests::manifest_dir().join("python/zk_client.py"))
            .arg(scenario)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("running kazoo")?;
        let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        Ok(Interactive { child, out })
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut line)?;
        Ok(line.trim().to_string())
    }

    fn finish(&mut self) -> Result<std::process::ExitStatus> {
        Ok(self.child.wait()?)
    }

    fn go_on(&mut self) -> Result<()> {
        self.child.stdin.take().expect("piped").write_all(b"\n")?;
        Ok(())
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kazoo_uses_the_namespace_through_every_node() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.leader().context("a leader")?;
    // Followers first: most requests take the forwarding hop.
    let mut order: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    order.push(leader);
    let hosts = zk_hosts(&cluster, &order);
    for scenario in ["basics", "watches", "locks", "ephemerals", "security"] {
        kazoo(scenario, &hosts)?;
    }
    Ok(())
}

#[test]
fn a_kazoo_lock_is_seen_from_redis_on_another_node() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let zk = cluster.node(1).zk_addr.to_string();
    let mut holder = Interactive::start("hold-lock", &[&zk])?;
    let line = holder.line()?;
    let node = line
        .strip_prefix("held ")
        .with_context(|| format!("kazoo said {line:?}"))?
        .to_string();
    let mut redis = cluster.client(3)?;
    let children: Vec<String> = redis::cmd("ZNODE.CHILDREN")
        .arg("/mixed/lock")
        .query(&mut redis)?;
    ensure!(children == vec![node.clone()], "{children:?} vs {node}");
    let stat: redis::Value = redis::cmd("ZNODE.STAT")
        .arg(format!("/mixed/lock/{node}"))
        .query(&mut redis)?;
    ensure!(
        format!("{stat:?}").contains("ephemeralOwner"),
        "the lock node is ephemeral: {stat:?}"
    );
    holder.go_on()?;
    let line = holder.line()?;
    ensure!(line == "released", "{line:?}");
    ensure!(holder.finish()?.success());
    let children: Vec<String> = redis::cmd("ZNODE.CHILDREN")
        .arg("/mixed/lock")
        .query(&mut redis)?;
    ensure!(children.is_empty(), "released: {children:?}");
    Ok(())
}

/// A reply's header and body.
struct Frame {
    xid: i32,
    zxid: i64,
    err: i32,
    body: Reader,
}

/// A ZooKeeper client written from the protocol, for the edges kazoo
/// does not show.
struct Raw {
    stream: TcpStream,
    next_xid: i32,
    session: i64,
    password: Bytes,
    timeout: i32,
}

fn string(path: &str) -> Writer {
    let mut w = Writer::default();
    w.string(path.as_bytes());
    w
}

fn open_acl(w: &mut Writer) {
    w.int(1).int(31).string(b"world").string(b"anyone");
}

impl Raw {
    /// Connects; Ok(None) if the server answered "expired".
    fn connect(
        addr: SocketAddr,
        session: i64,
        password: &[u8],
        last_zxid: i64,
    ) -> Result<Option<Raw>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = Writer::default();
        w.int(0)
            .long(last_zxid)
            .int(4000)
            .long(session)
            .buffer(password)
            .boolean(false);
        send_frame(&mut stream, &w.out)?;
        let Some(mut r) = read_frame(&mut stream)? else {
            bail!("closed during connect");
        };
        let _version = r.int()?;
        let timeout = r.int()?;
        let session = r.long()?;
        let password = r.buffer()?;
        if timeout == 0 {
            ensure!(session == 0, "an expired reply names no session");
            ensure!(read_frame(&mut stream)?.is_none(), "closed after expired");
            return Ok(None);
        }
        Ok(Some(Raw {
            stream,
            next_xid: 1,
            session,
            password,
            timeout,
        }))
    }

    fn send(&mut self, xid: i32, op_code: i32, body: &Writer) -> Result<()> {
        let mut w = Writer::default();
        w.int(xid).int(op_code);
        w.out.extend_from_slice(&body.out);
        send_frame(&mut self.stream, &w.out)
    }

    fn next(&mut self) -> Result<Option<Frame>> {
        let Some(mut r) = read_frame(&mut self.stream)? else {
            return Ok(None);
        };
        Ok(Some(Frame {
            xid: r.int()?,
            zxid: r.long()?,
            err: r.int()?,
            body: r,
        }))
    }

    /// Sends a request; its reply and the notifications that came first.
    fn call(&mut self, op_code: i32, body: Writer) -> Result<(Frame, Vec<(i32, String)>)> {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.send(xid, op_code, &body)?;
        let mut events = Vec::new();
        loop {
            let frame = self.next()?.context("closed before the reply")?;
            if frame.xid == -1 {
                events.push(event(frame)?);
                continue;
            }
            ensure!(
                frame.xid == xid,
                "reply xid {} for request {xid}",
                frame.xid
            );
            return Ok((frame, events));
        }
    }

    fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Result<(i32, String)> {
        let mut w = string(path);
        w.buffer(data);
        open_acl(&mut w);
        w.int(flags);
        let (mut frame, _) = self.call(op::CREATE, w)?;
        if frame.err != 0 {
            return Ok((frame.err, String::new()));
        }
        Ok((0, String::from_utf8(frame.body.string()?.to_vec())?))
    }

    fn exists(&mut self, path: &str, watch: bool) -> Result<(Frame, Vec<(i32, String)>)> {
        let mut w = string(path);
        w.boolean(watch);
        self.call(op::EXISTS, w)
    }

    fn set(&mut self, path: &str, data: &[u8]) -> Result<Frame> {
        let mut w = string(path);
        w.buffer(data).int(-1);
        Ok(self.call(op::SET_DATA, w)?.0)
    }
}

fn event(mut frame: Frame) -> Result<(i32, String)> {
    let kind = frame.body.int()?;
    let _state = frame.body.int()?;
    Ok((kind, String::from_utf8(frame.body.string()?.to_vec())?))
}

fn send_frame(stream: &mut TcpStream, body: &[u8]) -> Result<()> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    Ok(())
}

fn read_frame(stream: &mut TcpStream) -> Result<Option<Reader>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body)?;
    Ok(Some(Reader::new(Bytes::from(body))))
}

fn exists_via_redis(cluster: &Cluster, id: u64, path: &str) -> Result<bool> {
    let mut redis = cluster.client(id)?;
    let stat: redis::Value = redis::cmd("ZNODE.EXISTS").arg(path).query(&mut redis)?;
    Ok(stat != redis::Value::Nil)
}

#[test]
fn sessions_move_between_nodes_and_expire_through_the_log() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let mut first = Raw::connect(cluster.node(1).zk_addr, 0, &[], 0)?.context("new session")?;
    ensure!(first.timeout == 4000, "negotiated {}", first.timeout);
    ensure!(first.password.len() == 16);
    let (code, _) = first.create("/owned", b"", 1)?;
    ensure!(code == 0, "ephemeral create: {code}");
    let (session, password) = (first.session, first.password.clone());
    drop(first);
    // Another node knows the session and its password.
    let mut second = Raw::connect(cluster.node(2).zk_addr, session, &password, 0)?
        .context("the session moves to node 2")?;
    ensure!(second.session == session && second.timeout == 4000);
    let (frame, _) = second.exists("/owned", false)?;
    ensure!(
        frame.err == 0,
        "the ephemeral stays with its session: {}",
        frame.err
    );
    // A wrong password is "expired".
    let mut wrong = password.to_vec();
    wrong[0] ^= 1;
    ensure!(
        Raw::connect(cluster.node(3).zk_addr, session, &wrong, 0)?.is_none(),
        "a wrong password must not resume the session"
    );
    // A client that vanishes loses its session one timeout later.
    drop(second);
    let gone = Instant::now();
    ensure!(
        exists_via_redis(&cluster, 3, "/owned")?,
        "not before the timeout"
    );
    while exists_via_redis(&cluster, 3, "/owned")? {
        ensure!(
            gone.elapsed() < Duration::from_secs(12),
            "the ephemeral outlived its session"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        gone.elapsed() >= Duration::from_millis(2500),
        "gone after {:?}",
        gone.elapsed()
    );
    ensure!(
        Raw::connect(cluster.node(1).zk_addr, session, &password, 0)?.is_none(),
        "an expired session cannot be resumed"
    );
    // closeSession ends it at once.
    let mut third = Raw::connect(cluster.node(2).zk_addr, 0, &[], 0)?.context("session")?;
    third.create("/short", b"", 1)?;
    let (frame, _) = third.call(op::CLOSE_SESSION, Writer::default())?;
    ensure!(frame.err == 0);
    ensure!(third.next()?.is_none(), "closed after closeSession");
    ensure!(!exists_via_redis(&cluster, 1, "/short")?);
    Ok(())
}

#[test]
fn notifications_come_before_replies_and_watches_survive_a_reconnect() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let mut writer = Raw::connect(cluster.node(2).zk_addr, 0, &[], 0)?.context("writer")?;
    let mut watcher = Raw::connect(cluster.node(3).zk_addr, 0, &[], 0)?.context("watcher")?;
    writer.create("/x", b"0", 0)?;
    let mut w = string("/x");
    w.boolean(true);
    let (frame, _) = watcher.call(op::GET_DATA, w)?;
    ensure!(frame.err == 0);
    let change = writer.set("/x", b"1")?;
    // The next reply on the watcher's connection reflects the change, so
    // the notification must come first.
    let (frame, events) = watcher.exists("/x", false)?;
    ensure!(
        frame.zxid >= change.zxid,
        "{} < {}",
        frame.zxid,
        change.zxid
    );
    ensure!(events == vec![(3, "/x".to_string())], "{events:?}");
    // With requests in flight while the change applies: no reply that
    // reflects it may come before its notification.
    for round in 0..20 {
        let mut w = string("/x");
        w.boolean(true);
        ensure!(watcher.call(op::GET_DATA, w)?.0.err == 0);
        let mut w = string("/x");
        w.buffer(format!("r{round}").as_bytes()).int(-1);
        writer.send(100 + round, op::SET_DATA, &w)?;
        let pipelined = 30;
        for i in 0..pipelined {
            let mut w = string("/x");
            w.boolean(false);
            watcher.send(1000 + i, op::EXISTS, &w)?;
        }
        let change = writer.next()?.context("set reply")?;
        ensure!(change.err == 0);
        let mut notified = false;
        let mut replies = 0;
        while replies < pipelined {
            let frame = watcher.next()?.context("watcher frames")?;
            if frame.xid == -1 {
                ensure!(!notified, "one notification per change");
                notified = true;
                continue;
            }
            replies += 1;
            ensure!(
                notified || frame.zxid < change.zxid,
                "round {round}: a reply at {} came before the notification of {}",
                frame.zxid,
                change.zxid
            );
        }
        if !notified {
            let frame = watcher.next()?.context("the notification")?;
            ensure!(frame.xid == -1, "round {round}: no notification");
        }
    }
    // Persistent recursive watch: every descendant, no children events.
    let mut w = string("/x");
    w.int(1);
    let (frame, _) = watcher.call(op::ADD_WATCH, w)?;
    ensure!(frame.err == 0);
    writer.create("/x/a", b"", 0)?;
    writer.set("/x/a", b"2")?;
    let (_, events) = watcher.exists("/x/a", false)?;
    ensure!(
        events == vec![(1, "/x/a".to_string()), (3, "/x/a".to_string())],
        "{events:?}"
    );
    let mut w = string("/x");
    w.int(3);
    let (frame, _) = watcher.call(op::CHECK_WATCHES, w)?;
    ensure!(frame.err == 0, "a watch is held");
    let mut w = string("/x");
    w.int(3);
    let (frame, _) = watcher.call(op::REMOVE_WATCHES, w)?;
    ensure!(frame.err == 0);
    let mut w = string("/x");
    w.int(3);
    let (frame, _) = watcher.call(op::CHECK_WATCHES, w)?;
    ensure!(frame.err == err::NO_WATCHER, "removed: {}", frame.err);
    // setWatches after a reconnect: what changed meanwhile fires at once.
    let (frame, _) = watcher.exists("/x", false)?;
    let seen = frame.zxid;
    let (session, password) = (watcher.session, watcher.password.clone());
    drop(watcher);
    writer.set("/x", b"3")?;
    writer.create("/x/b", b"", 0)?;
    let mut watcher =
        Raw::connect(cluster.node(1).zk_addr, session, &password, seen)?.context("resume")?;
    let mut w = Writer::default();
    w.long(seen);
    w.strings([b"/x".as_slice()].into_iter()); // data
    w.strings([b"/y".as_slice()].into_iter()); // exist
    w.strings([b"/x/a".as_slice()].into_iter()); // child
    watcher.send(-8, op::SET_WATCHES, &w)?;
    let mut events = Vec::new();
    loop {
        let frame = watcher.next()?.context("setWatches reply")?;
        if frame.xid == -1 {
            events.push(event(frame)?);
            continue;
        }
        ensure!(frame.xid == -8 && frame.err == 0);
        break;
    }
    ensure!(events == vec![(3, "/x".to_string())], "{events:?}");
    // The watches that did not fire are set: /y's creation fires now.
    writer.create("/y", b"", 0)?;
    writer.create("/x/a/c", b"", 0)?;
    let (_, events) = watcher.exists("/y", false)?;
    ensure!(
        events == vec![(1, "/y".to_string()), (4, "/x/a".to_string())]
            || events == vec![(4, "/x/a".to_string()), (1, "/y".to_string())],
        "{events:?}"
    );
    // The Java client numbers its setWatches2 like any request: the reply
    // must carry that xid (a -8 there is "Xid out of order" and the client
    // drops the connection).
    let none = || std::iter::empty::<&[u8]>();
    let mut w = Writer::default();
    w.long(seen);
    w.strings(none())
        .strings(none())
        .strings(none())
        .strings(none());
    w.strings([b"/x".as_slice()].into_iter()); // persistent recursive
    watcher.send(77, op::SET_WATCHES2, &w)?;
    let frame = loop {
        let frame = watcher.next()?.context("setWatches2 reply")?;
        if frame.xid != -1 {
            break frame;
        }
    };
    ensure!(
        frame.xid == 77 && frame.err == 0,
        "setWatches2 reply xid {}",
        frame.xid
    );
    writer.set("/x/a/c", b"z")?;
    let (_, events) = watcher.exists("/x", false)?;
    ensure!(events == vec![(3, "/x/a/c".to_string())], "{events:?}");
    Ok(())
}

#[test]
fn create_modes_and_refusals_follow_zookeeper() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let mut zk = Raw::connect(cluster.node(2).zk_addr, 0, &[], 0)?.context("session")?;
    // createContainer: gone with its last child.
    let mut w = string("/box");
    w.buffer(b"");
    open_acl(&mut w);
    w.int(4);
    let (mut frame, _) = zk.call(op::CREATE_CONTAINER, w)?;
    ensure!(frame.err == 0);
    ensure!(frame.body.string()?.as_ref() == b"/box");
    let czxid = frame.body.long()?;
    ensure!(czxid > 0, "create2's reply carries the stat");
    zk.create("/box/item", b"", 0)?;
    let mut w = string("/box/item");
    w.int(-1);
    ensure!(zk.call(op::DELETE, w)?.0.err == 0);
    ensure!(
        zk.exists("/box", false)?.0.err == err::NO_NODE,
        "the empty container went"
    );
    // Refusals are ZooKeeper's codes.
    ensure!(zk.create("/a/b", b"", 0)?.0 == err::NO_NODE);
    ensure!(zk.create("bad", b"", 0)?.0 == err::BAD_ARGUMENTS);
    ensure!(
        zk.create("/z", b"", 9)?.0 == err::BAD_ARGUMENTS,
        "unknown create flags"
    );
    let mut w = string("/narrow");
    w.buffer(b"");
    w.int(0); // an empty ACL
    w.int(0);
    let (frame, _) = zk.call(op::CREATE, w)?;
    ensure!(
        frame.err == err::INVALID_ACL,
        "an empty ACL is refused: {}",
        frame.err
    );
    // A four-letter word.
    let mut s = TcpStream::connect(cluster.node(1).zk_addr)?;
    s.write_all(b"ruok")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    ensure!(answer == "imok", "{answer:?}");
    let mut s = TcpStream::connect(cluster.node(1).zk_addr)?;
    s.write_all(b"mntr")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    ensure!(answer.contains("not in the whitelist"), "{answer:?}");
    // An unknown op is Unimplemented, then the connection closes.
    let (frame, _) = zk.call(9999, Writer::default())?;
    ensure!(frame.err == err::UNIMPLEMENTED);
    ensure!(zk.next()?.is_none(), "closed after an unknown op");
    // A truncated request and an oversized frame close the connection.
    let mut zk = Raw::connect(cluster.node(2).zk_addr, 0, &[], 0)?.context("session")?;
    zk.send(1, op::CREATE, &string("/half"))?;
    ensure!(zk.next()?.is_none(), "closed after a malformed request");
    let mut zk = Raw::connect(cluster.node(2).zk_addr, 0, &[], 0)?.context("session")?;
    zk.stream.write_all(&(2u32 << 20).to_be_bytes())?;
    zk.stream.write_all(&vec![0u8; 1 << 16])?;
    ensure!(
        zk.next().map(|f| f.is_none()).unwrap_or(true),
        "closed after an oversized frame"
    );
    // The node is fine.
    let mut redis = cluster.client(2)?;
    let pong: String = redis::cmd("PING").query(&mut redis)?;
    ensure!(pong == "PONG");
    Ok(())
}

/// A four-letter word's answer from a node's ZooKeeper port.
fn word(addr: SocketAddr, word: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(word.as_bytes())?;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    Ok(text)
}

#[test]
fn zookeeper_clients_connect_over_tls_with_certificates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = integration_tests::pki::Pki::new(dir.path())?;
    let (cert, key) = pki.issue("server", &["localhost", "127.0.0.1"])?;
    let (client_cert, client_key) = pki.issue("client", &["client"])?;
    let tls = SocketAddr::from(([127, 0, 0, 1], integration_tests::free_port()));
    let (tls_text, ca) = (tls.to_string(), pki.ca_path().display().to_string());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let cluster = Cluster::start_with(
        1,
        &[
            "--zk-tls-listen",
            &tls_text,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
        ],
    )?;
    integration_tests::wait_for_port(tls, Duration::from_secs(10))?;
    // kazoo with use_ssl: served with its certificate, refused without.
    let output = Command::new("python3")
        .arg(integration_tests::manifest_dir().join("python/zk_client.py"))
        .args(["tls", &tls_text, &ca])
        .arg(&client_cert)
        .arg(&client_key)
        .output()
        .context("running kazoo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains("tls ok"),
        "kazoo over TLS: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // One namespace: what was created over TLS is there for RESP clients.
    let path = stdout.lines().next().unwrap_or_default();
    ensure!(exists_via_redis(&cluster, 1, path)?, "{path} over RESP");
    // Plaintext on the TLS port gets nothing.
    ensure!(!word(tls, "ruok")?.contains("imok"));
    ensure!(word(cluster.node(1).zk_addr, "ruok")? == "imok");
    Ok(())
}

#[test]
fn a_node_without_a_quorum_serves_read_only_sessions() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let mut redis = cluster.client(3)?;
    for (path, data) in [("/ro", ""), ("/ro/data", "before")] {
        redis::cmd("ZNODE.CREATE")
            .arg(path)
            .arg(data)
            .query::<redis::Value>(&mut redis)?;
    }
    ensure!(exists_via_redis(&cluster, 3, "/ro/data")?);
    let survivor = cluster.node(3).zk_addr;
    ensure!(word(survivor, "isro")? == "rw");
    cluster.kill(1);
    cluster.kill(2);
    integration_tests::retry(Duration::from_secs(20), || {
        let answer = word(survivor, "isro")?;
        ensure!(answer == "ro", "isro: {answer}");
        Ok(())
    })?;
    ensure!(word(survivor, "srvr")?.contains("Mode: read-only"));
    let mut client = Interactive::start("read-only", &[&survivor.to_string()])?;
    let line = client.line()?;
    ensure!(
        line == "read-only ok",
        "kazoo in read-only mode said {line:?}"
    );
    // The quorum comes back: the same client finds a read-write session.
    cluster.spawn(1)?;
    cluster.spawn(2)?;
    client.go_on()?;
    let line = client.line()?;
    ensure!(
        client.finish()?.success() && line == "read-write ok",
        "kazoo after the quorum came back said {line:?}"
    );
    ensure!(exists_via_redis(&cluster, 1, "/ro/after")?);
    Ok(())
}
