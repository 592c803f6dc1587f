//! What operators watch a cluster with, on real processes: the metrics
//! endpoint (parsed as Prometheus text, values moving with load), the
//! health endpoints, hostile HTTP, SLOWLOG, MONITOR, CLIENT LIST / KILL,
//! INFO commandstats and errorstats.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::{connect, http_get, retry, Cluster};

fn scrape(addr: SocketAddr) -> Result<prometheus_parse::Scrape> {
    let (status, body) = http_get(addr, "/metrics")?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let lines = body.lines().map(|line| Ok(line.to_string()));
    Ok(prometheus_parse::Scrape::parse(lines)?)
}

/// The value of `name` with label `label` = `value` (or the only one).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| label.is_none_or(|(key, value)| sample.labels.get(key) == Some(value)))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |bucket| bucket.count)
            }
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_and_health_endpoints_follow_the_cluster() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let leader_http = cluster.node(leader).metrics_addr;
    let follower_http = cluster.node(follower).metrics_addr;

    let before = scrape(follower_http)?;
    let mut con = cluster.client(follower)?;
    for n in 0..200 {
        redis::cmd("SET")
            .arg(format!("k{n}"))
            .arg(n)
            .query::<()>(&mut con)?;
    }
    for n in 0..50 {
        redis::cmd("GET")
            .arg(format!("k{n}"))
            .query::<Option<String>>(&mut con)?;
    }
    let _ = redis::cmd("INCR")
        .arg("k1")
        .arg("extra")
        .query::<i64>(&mut con);
    let lease: i64 = redis::cmd("LEASE.GRANT").arg(60_000).query(&mut con)?;
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("metered")
        .arg("owner")
        .arg(60_000)
        .query(&mut con)?;
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("leased")
        .arg("owner")
        .arg(60_000)
        .arg("LEASE")
        .arg(lease)
        .query(&mut con)?;
    // A read barrier: another round, whose status includes the writes.
    let _: Option<String> = redis::cmd("GET").arg("k1").query(&mut con)?;
    let after = scrape(follower_http)?;
    let reading = |scrape: &prometheus_parse::Scrape, name: &str| {
        sample(scrape, "lockstep_node", Some(("reading", name)))
    };
    assert_eq!(reading(&after, "leases") - reading(&before, "leases"), 1.0);
    assert_eq!(reading(&after, "locks") - reading(&before, "locks"), 2.0);
    let set = ("command", "set");
    assert_eq!(
        sample(&after, "lockstep_commands_total", Some(set))
            - sample(&before, "lockstep_commands_total", Some(set)),
        200.0
    );
    assert!(
        sample(
            &after,
            "lockstep_command_duration_seconds_count",
            Some(("command", "get"))
        ) >= 50.0
    );
    assert!(sample(&after, "lockstep_errors_total", Some(("prefix", "ERR"))) >= 1.0);
    assert!(
        sample(&after, "lockstep_raft_proposals_committed_total", None)
            >= sample(&before, "lockstep_raft_proposals_committed_total", None) + 200.0
    );
    assert!(
        sample(&after, "lockstep_raft_read_index_requests_total", None)
            > sample(&before, "lockstep_raft_read_index_requests_total", None)
    );
    assert!(sample(&after, "lockstep_raft_fsync_seconds_count", None) > 0.0);
    assert!(sample(&after, "lockstep_raft_apply_seconds_count", None) > 0.0);
    assert_eq!(
        sample(&after, "lockstep_raft_role", Some(("role", "follower"))),
        1.0
    );
    assert_eq!(
        sample(&after, "lockstep_node", Some(("reading", "leader_id"))),
        leader as f64
    );
    assert!(sample(&after, "lockstep_node", Some(("reading", "applied_index"))) >= 200.0);
    assert!(sample(&after, "lockstep_store_bytes", Some(("family", "keyspace"))) > 0.0);
    // Revoking the lease lets go of the lock it holds.
    let _: i64 = redis::cmd("LEASE.REVOKE").arg(lease).query(&mut con)?;
    let _: i64 = redis::cmd("LOCK.RELEASE")
        .arg("metered")
        .arg("owner")
        .query(&mut con)?;
    let _: Option<String> = redis::cmd("GET").arg("k1").query(&mut con)?;
    let released = scrape(follower_http)?;
    assert_eq!(reading(&released, "leases"), reading(&before, "leases"));
    assert_eq!(reading(&released, "locks"), reading(&before, "locks"));
    let on_leader = scrape(leader_http)?;
    assert_eq!(
        sample(&on_leader, "lockstep_raft_role", Some(("role", "leader"))),
        1.0
    );
    assert!(
        sample(
            &on_leader,
            "lockstep_peer_sent_bytes_total",
            Some(("peer", &follower.to_string()))
        ) > 0.0
    );
    assert_eq!(
        sample(
            &on_leader,
            "lockstep_peer_connected",
            Some(("peer", &follower.to_string()))
        ),
        1.0
    );

    // Every metric the Grafana dashboard plots exists.
    let dashboard = std::fs::read_to_string(
        integration_tests::manifest_dir().join("../docs/grafana/lockstep.json"),
    )?;
    let mut plotted: Vec<&str> = dashboard
        .match_indices("lockstep_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| *name != "lockstep_")
        .collect();
    plotted.sort_unstable();
    plotted.dedup();
    assert!(plotted.len() > 10, "{plotted:?}");
    for name in plotted {
        let found = on_leader.samples.iter().any(|sample| {
            sample.metric == name
                || ["_bucket", "_count", "_sum"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(sample.metric.as_str()))
        });
        assert!(
            found,
            "the dashboard plots {name}, which /metrics does not have"
        );
    }

    for node in 1..=3 {
        let http = cluster.node(node).metrics_addr;
        assert_eq!(http_get(http, "/livez")?.0, 200);
        assert_eq!(http_get(http, "/readyz")?.0, 200);
        let (status, body) = http_get(http, "/health")?;
        assert_eq!(
            (status, body.as_str()),
            (200, "{\"health\":\"true\",\"reason\":\"\"}")
        );
    }
    assert_eq!(http_get(leader_http, "/nothing")?.0, 404);

    // Without a quorum a node is alive but neither healthy nor ready
    // (readiness needs a leader).
    let others: Vec<u64> = (1..=3).filter(|&id| id != follower).collect();
    for &id in &others {
        cluster.pause(id);
    }
    let (status, body) = retry(Duration::from_secs(10), || {
        let answer = http_get(follower_http, "/readyz")?;
        if answer.0 == 200 {
            bail!("still ready");
        }
        Ok(answer)
    })?;
    assert_eq!(status, 503);
    assert!(body.contains("no leader"), "{body}");
    let (status, body) = http_get(follower_http, "/health")?;
    assert_eq!(status, 503);
    assert!(body.contains("\"health\":\"false\""), "{body}");
    assert_eq!(http_get(follower_http, "/livez")?.0, 200);
    for &id in &others {
        cluster.resume(id);
    }
    retry(Duration::from_secs(10), || {
        match http_get(follower_http, "/readyz")? {
            (200, _) => Ok(()),
            other => bail!("not ready again: {other:?}"),
        }
    })?;
    Ok(())
}

#[test]
fn hostile_http_gets_errors_and_bounds() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let http = cluster.node(1).metrics_addr;
    // Garbage, a huge header, a POST: errors, and the endpoint still works.
    let mut garbage = TcpStream::connect(http)?;
    garbage.write_all(b"\x00\x01\x02 NOT HTTP AT ALL\r\n\r\n")?;
    garbage.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply);
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    let mut huge = TcpStream::connect(http)?;
    huge.set_write_timeout(Some(Duration::from_secs(5)))?;
    let _ = write!(
        huge,
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    huge.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut first = String::new();
    let _ = BufReader::new(&huge).read_line(&mut first);
    assert!(
        first.is_empty() || first.starts_with("HTTP/1.1 431"),
        "{first}"
    );
    let mut post = TcpStream::connect(http)?;
    write!(
        post,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    post.read_to_string(&mut response)?;
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    // A client that sends half a request is cut off, not kept forever.
    let mut slow = TcpStream::connect(http)?;
    slow.write_all(b"GET /metr")?;
    slow.set_read_timeout(Some(Duration::from_secs(15)))?;
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "a half request held the connection"
    );
    // Many idle connections do not stop the endpoint.
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(http).ok())
        .collect();
    assert!(idle.len() >= 100);
    drop(idle);
    assert_eq!(http_get(http, "/livez")?.0, 200);
    Ok(())
}

#[test]
fn slowlog_monitor_and_client_kill_work_as_in_redis() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let addr = cluster.node(1).client_addr;
    let mut con = connect(addr)?;
    // Everything is slow at a threshold of 0.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query::<()>(&mut con)?;
    let got: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-*")
        .query(&mut con)?;
    assert!(
        got.contains(&("slowlog-log-slower-than".into(), "0".into())),
        "{got:?}"
    );
    redis::cmd("SLOWLOG").arg("RESET").query::<()>(&mut con)?;
    redis::cmd("SET")
        .arg("slow")
        .arg("x".repeat(300))
        .query::<()>(&mut con)?;
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(1).query(&mut con)?;
    assert_eq!(entries.len(), 1);
    let redis::Value::Array(fields) = &entries[0] else {
        bail!("entry shape")
    };
    assert_eq!(fields.len(), 6);
    let redis::Value::Array(argv) = &fields[3] else {
        bail!("argv shape")
    };
    assert_eq!(argv.len(), 3);
    let redis::Value::BulkString(value) = &argv[2] else {
        bail!("arg shape")
    };
    assert!(value.ends_with(b"... (172 more bytes)"));
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut con)?;
    assert!(len >= 1);
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(-1)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("between 0 and"), "{err}");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(0)
        .query::<()>(&mut con)?;
    assert_eq!(redis::cmd("SLOWLOG").arg("LEN").query::<i64>(&mut con)?, 0);

    // LATENCY keeps the spikes at or over its threshold (off at 0).
    let latest = |con: &mut redis::Connection| -> Result<Vec<(String, i64, i64, i64)>> {
        Ok(redis::cmd("LATENCY").arg("LATEST").query(con)?)
    };
    let big = "v".repeat(8 << 20);
    redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query::<()>(&mut con)?;
    assert!(latest(&mut con)?.is_empty(), "off by default");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("latency-monitor-threshold")
        .arg(1)
        .query::<()>(&mut con)?;
    redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query::<()>(&mut con)?;
    let spikes = latest(&mut con)?;
    assert_eq!(spikes.len(), 1, "{spikes:?}");
    let (event, at, last_ms, max_ms) = spikes[0].clone();
    assert_eq!(event, "command");
    assert!(
        at > 1_700_000_000 && last_ms >= 1 && max_ms >= last_ms,
        "{spikes:?}"
    );
    let history: Vec<(i64, i64)> = redis::cmd("LATENCY")
        .arg("HISTORY")
        .arg("command")
        .query(&mut con)?;
    assert!(history.contains(&(at, last_ms)), "{history:?}");
    let doctor: String = redis::cmd("LATENCY").arg("DOCTOR").query(&mut con)?;
    assert!(doctor.contains("command:"), "{doctor}");
    assert_eq!(
        redis::cmd("LATENCY").arg("RESET").query::<i64>(&mut con)?,
        1
    );
    assert!(latest(&mut con)?.is_empty());
    let err = redis::cmd("LATENCY")
        .arg("GRAPHS")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("LATENCY HELP"), "{err}");
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("latency-monitor-threshold")
        .arg(-5)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("between 0 and"), "{err}");

    // MONITOR streams what other clients send, quoted as Redis does.
    let mut monitor = TcpStream::connect(addr)?;
    monitor.set_read_timeout(Some(Duration::from_secs(5)))?;
    monitor.write_all(b"MONITOR\r\n")?;
    let mut lines = BufReader::new(monitor.try_clone()?);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    assert_eq!(line, "+OK\r\n");
    redis::cmd("SET")
        .arg("mon key")
        .arg("v\"1")
        .query::<()>(&mut con)?;
    redis::cmd("AUTH").arg("secret").query::<()>(&mut con).ok();
    redis::cmd("GET")
        .arg("after")
        .query::<Option<String>>(&mut con)?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        lines.read_line(&mut line)?;
        seen.push(line);
    }
    assert!(
        seen[0].ends_with("\"SET\" \"mon key\" \"v\\\"1\"\r\n"),
        "{seen:?}"
    );
    assert!(
        seen[0].starts_with('+') && seen[0].contains(" [0 127.0.0.1:"),
        "{seen:?}"
    );
    assert!(
        seen[1].ends_with("\"GET\" \"after\"\r\n"),
        "AUTH is not shown: {seen:?}"
    );

    // CLIENT LIST shows the monitor's flag; CLIENT KILL closes it.
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con)?;
    let monitor_line = list
        .lines()
        .find(|line| line.contains("flags=O"))
        .context("monitor listed")?;
    let monitor_id: u64 = monitor_line
        .split(' ')
        .find_map(|field| field.strip_prefix("id="))
        .context("id")?
        .parse()?;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(monitor_id)
        .query(&mut con)?;
    assert_eq!(killed, 1);
    let mut rest = Vec::new();
    let _ = lines.read_to_end(&mut rest);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con)?;
    assert!(!list.contains(&format!("id={monitor_id} ")), "{list}");
    let err = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("1.2.3.4:5")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("No such client"), "{err}");
    // SKIPME yes by default: killing by our own address spares us.
    let own: String = redis::cmd("CLIENT").arg("INFO").query(&mut con)?;
    let own_addr = own
        .split(' ')
        .find_map(|f| f.strip_prefix("addr="))
        .context("addr")?
        .to_string();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ADDR")
        .arg(&own_addr)
        .query(&mut con)?;
    assert_eq!(killed, 0);

    // In MULTI, CLIENT LIST shows the queue.
    let mut other = connect(addr)?;
    redis::cmd("MULTI").query::<()>(&mut other)?;
    redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query::<()>(&mut other)?;
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con)?;
    assert!(
        list.lines()
            .any(|line| line.contains("flags=x") && line.contains("multi=1")),
        "{list}"
    );

    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut con)?;
    assert!(stats.contains("cmdstat_set:calls="), "{stats}");
    let errors: String = redis::cmd("INFO").arg("errorstats").query(&mut con)?;
    assert!(errors.contains("errorstat_ERR:count="), "{errors}");
    let default: String = redis::cmd("INFO").query(&mut con)?;
    assert!(
        !default.contains("cmdstat_"),
        "commandstats only when asked"
    );
    Ok(())
}

#[test]
fn io_threads_size_the_runtime_and_zero_is_refused() -> Result<()> {
    let cluster = Cluster::start_with(1, &["--io-threads", "3"])?;
    let workers = retry(Duration::from_secs(10), || {
        cluster
            .info_field(1, "io_threads")
            .context("INFO server has no io_threads")
    })?;
    assert_eq!(workers, "3");

    let dir = tempfile::tempdir()?;
    let refused = std::process::Command::new(integration_tests::lockstep_binary())
        .args(["--io-threads", "0", "--listen", "127.0.0.1:1"])
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("--io-threads must be between 1 and 1024"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "refused before any disk");
    Ok(())
}
