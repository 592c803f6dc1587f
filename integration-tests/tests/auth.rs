//! Authentication and ACLs on real processes: users are replicated (set on
//! one node, enforced on every node, kept through restarts), commands,
//! keys and channels are checked before anything reaches the log, also in
//! MULTI and inside scripts; passwords, protected mode, hostile rules.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use integration_tests::{error_of, free_port, lockstep_binary, retry, wait_for_port, Cluster};

fn client_as(addr: SocketAddr, user: &str, password: &str) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://{user}:{password}@{addr}/"))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(con)
}

#[test]
fn users_are_replicated_and_enforced_on_every_node() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let mut admin = cluster.client(1)?;
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "alice",
            "on",
            ">s3cret",
            "~app:*",
            "&news",
            "+@read",
            "+set",
            "+eval",
            "+multi",
            "+exec",
            "+publish",
            "+acl|whoami",
        ])
        .query::<()>(&mut admin)?;
    for id in 1..=3 {
        let addr = cluster.node(id).client_addr;
        let mut alice = retry(Duration::from_secs(10), || {
            client_as(addr, "alice", "s3cret")
        })?;
        let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut alice)?;
        assert_eq!(who, "alice");
        redis::cmd("SET")
            .arg(format!("app:{id}"))
            .arg(id)
            .query::<()>(&mut alice)?;
        let err = error_of(&mut alice, &["SET", "other", "x"]);
        assert_eq!(err, "NOPERM No permissions to access a key");
        let err = error_of(&mut alice, &["DEL", "app:1"]);
        assert_eq!(
            err,
            "NOPERM User alice has no permissions to run the 'del' command"
        );
        let err = error_of(&mut alice, &["FLUSHALL"]);
        assert!(err.starts_with("NOPERM"), "{err}");
        let err = error_of(&mut alice, &["PUBLISH", "secret", "x"]);
        assert_eq!(err, "NOPERM No permissions to access a channel");
        let _: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg("x")
            .query(&mut alice)?;
        // Scripts run as alice: a call she may not make fails inside.
        let err = error_of(
            &mut alice,
            &["EVAL", "return redis.call('SET', 'other', 'x')", "0"],
        );
        assert!(
            err.contains("NOPERM No permissions to access a key"),
            "{err}"
        );
        let err = error_of(
            &mut alice,
            &["EVAL", "return redis.call('DEL', KEYS[1])", "1", "app:1"],
        );
        assert!(
            err.contains("no permissions to run the 'del' command"),
            "{err}"
        );
        let got: String = redis::cmd("EVAL")
            .arg("return redis.call('GET', KEYS[1])")
            .arg(1)
            .arg(format!("app:{id}"))
            .query(&mut alice)
            .with_context(|| format!("a script reading alice's own key on node {id}"))?;
        assert_eq!(got, id.to_string());
        // MULTI: a refused command aborts the transaction, nothing applies.
        redis::cmd("MULTI").query::<()>(&mut alice)?;
        redis::cmd("SET")
            .arg("app:multi")
            .arg("1")
            .query::<()>(&mut alice)?;
        let err = error_of(&mut alice, &["SET", "other", "1"]);
        assert!(err.starts_with("NOPERM"), "{err}");
        let err = error_of(&mut alice, &["EXEC"]);
        assert!(err.starts_with("EXECABORT"), "{err}");
        // A script queued in MULTI is checked too.
        redis::cmd("MULTI").query::<()>(&mut alice)?;
        redis::cmd("EVAL")
            .arg("return redis.call('SET', 'other', 'y')")
            .arg(0)
            .query::<()>(&mut alice)
            .context("queueing a script")?;
        let replies = error_of(&mut alice, &["EXEC"]);
        assert!(replies.contains("NOPERM"), "{replies}");
    }
    let other: Option<String> = redis::cmd("GET").arg("other").query(&mut admin)?;
    assert_eq!(other, None, "no refused write took effect");
    let multi: Option<String> = redis::cmd("GET").arg("app:multi").query(&mut admin)?;
    assert_eq!(multi, None);
    let err = error_of(&mut admin, &["ACL.AS", "default", "FLUSHALL"]);
    assert!(err.contains("unknown command"), "{err}");

    // ACL LOG on the node that refused.
    let mut node3 = cluster.client(3)?;
    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut node3)?;
    assert!(!log.is_empty());
    // Wrong passwords.
    let addr = cluster.node(2).client_addr;
    assert!(client_as(addr, "alice", "wrong").is_err());
    let mut anon = cluster.client(2)?;
    let err = error_of(&mut anon, &["AUTH", "alice", "wrong"]);
    assert_eq!(
        err,
        "WRONGPASS invalid username-password pair or user is disabled."
    );

    // The default user gets a password (replicated): strangers get NOAUTH
    // everywhere, and it survives a restart of every node.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("pw")
        .query::<()>(&mut admin)?;
    for id in 1..=3 {
        // A new connection each time: one made before this node applied
        // the password stays authenticated, as in Redis.
        retry(Duration::from_secs(10), || {
            let mut con = cluster.client(id)?;
            let err = error_of(&mut con, &["GET", "app:1"]);
            if err != "NOAUTH Authentication required." {
                bail!("node {id}: {err}");
            }
            Ok(())
        })?;
    }
    for id in 1..=3 {
        cluster.stop(id)?;
    }
    cluster.password = Some("pw".into());
    for id in 1..=3 {
        cluster.spawn(id)?;
    }
    cluster.wait_for_leader(Duration::from_secs(20))?;
    for id in 1..=3 {
        let mut con = integration_tests::connect(cluster.node(id).client_addr)?;
        assert_eq!(
            error_of(&mut con, &["SET", "k", "v"]),
            "NOAUTH Authentication required."
        );
        let hello: redis::Value = redis::cmd("HELLO")
            .arg(3)
            .arg("AUTH")
            .arg("default")
            .arg("pw")
            .query(&mut con)?;
        assert!(format!("{hello:?}").contains("proto"), "{hello:?}");
        let _: Option<String> = redis::cmd("GET").arg("app:1").query(&mut con)?;
        let mut alice = client_as(cluster.node(id).client_addr, "alice", "s3cret")?;
        let value: String = redis::cmd("GET")
            .arg(format!("app:{id}"))
            .query(&mut alice)?;
        assert_eq!(value, id.to_string());
    }
    // Deleting a user closes its connections.
    let mut admin = client_as(cluster.node(1).client_addr, "default", "pw")?;
    let mut alice = client_as(cluster.node(1).client_addr, "alice", "s3cret")?;
    let deleted: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg("alice")
        .query(&mut admin)?;
    assert_eq!(deleted, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(redis::cmd("PING").query::<String>(&mut alice).is_err());
    Ok(())
}

#[test]
fn hostile_acl_input_gets_errors() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let mut con = cluster.client(1)?;
    let mut huge = vec!["SETUSER".to_string(), "mallory".into()];
    huge.extend((0..5000).map(|n| format!("~k{n}")));
    let err = {
        let mut cmd = redis::cmd("ACL");
        for arg in &huge {
            cmd.arg(arg);
        }
        cmd.query::<()>(&mut con).unwrap_err().to_string()
    };
    assert!(err.contains("too many rules"), "{err}");
    let long = format!("~{}", "x".repeat(10_000));
    let err = error_of(&mut con, &["ACL", "SETUSER", "mallory", &long]);
    assert!(err.contains("at most 4096 bytes"), "{err}");
    for (rule, expected) in [
        ("+nosuchcommand", "Unknown command or category"),
        ("+@nosuchcategory", "Unknown command or category"),
        ("#nothex", "64 characters"),
        ("bogus", "Syntax error"),
    ] {
        let err = error_of(&mut con, &["ACL", "SETUSER", "mallory", "on", rule]);
        assert!(err.contains(expected), "{rule}: {err}");
    }
    // A refused SETUSER changes nothing.
    let user: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg("mallory")
        .query(&mut con)?;
    assert_eq!(user, redis::Value::Nil);
    let err = error_of(&mut con, &["ACL", "SETUSER", "bad name", "on"]);
    assert!(err.contains("can't contain spaces"), "{err}");
    let err = error_of(&mut con, &["ACL", "DELUSER", "default"]);
    assert!(err.contains("cannot be removed"), "{err}");
    let err = error_of(&mut con, &["ACL", "CAT", "nosuch"]);
    assert!(err.contains("Unknown category"), "{err}");
    let list: Vec<String> = redis::cmd("ACL").arg("CAT").arg("lock").query(&mut con)?;
    assert!(list.contains(&"lock.acquire".to_string()), "{list:?}");
    Ok(())
}

/// The address other machines reach this one at (not loopback).
fn outward_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket
        .connect("192.0.2.1:9")
        .or_else(|_| socket.connect("10.255.255.1:9"))
        .ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn protected_mode_refuses_strangers_until_a_password_is_set() -> Result<()> {
    let Some(ip) = outward_address() else {
        bail!("this machine has no non-loopback address to test protected mode with");
    };
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let peer = free_port();
    let mut child = Command::new(lockstep_binary())
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| -> Result<()> {
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
        )?;
        let outside = SocketAddr::new(ip, port);
        let mut stranger = integration_tests::resp::RawClient::connect(outside)?;
        let reply = stranger.read()?;
        assert!(format!("{reply:?}").contains("DENIED"), "{reply:?}");
        let mut local = integration_tests::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        retry(Duration::from_secs(10), || {
            Ok(redis::cmd("ACL")
                .arg(&["SETUSER", "default", "on", ">pw"])
                .query::<()>(&mut local)?)
        })?;
        let mut now = client_as(outside, "default", "pw")?;
        let pong: String = redis::cmd("PING").query(&mut now)?;
        assert_eq!(pong, "PONG");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
