//! `--join`: a new node adds itself to a running cluster through any
//! member's client port (CLUSTER.MEMBERS to learn the members, then
//! CLUSTER.ADD on the leader), before its replication core starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use redis::Value;
use slog::{info, Logger};

/// How long a join keeps trying (the leader may be changing).
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// One member as CLUSTER.MEMBERS lists it.
#[derive(Debug, Default)]
struct Listed {
    id: u64,
    peer: String,
    client: String,
    leader: bool,
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn parse_members(value: Value) -> Result<Vec<Listed>> {
    let Value::Array(entries) = value else {
        bail!("CLUSTER.MEMBERS: unexpected reply {value:?}");
    };
    let mut members = Vec::new();
    for entry in entries {
        let pairs: Vec<(Value, Value)> = match entry {
            Value::Map(pairs) => pairs,
            Value::Array(flat) => {
                let mut flat = flat.into_iter();
                let mut pairs = Vec::new();
                while let (Some(key), Some(value)) = (flat.next(), flat.next()) {
                    pairs.push((key, value));
                }
                pairs
            }
            other => bail!("CLUSTER.MEMBERS: unexpected entry {other:?}"),
        };
        let mut member = Listed::default();
        for (key, value) in pairs {
            match text(&key).as_str() {
                "id" => member.id = text(&value).parse().unwrap_or(0),
                "peer" => member.peer = text(&value),
                "client" => member.client = text(&value),
                "leader" => member.leader = text(&value) == "1",
                _ => {}
            }
        }
        members.push(member);
    }
    Ok(members)
}

/// The default user's password to AUTH with (the node's --requirepass).
static PASSWORD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

async fn command(addr: &str, args: &[&str]) -> Result<Value> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("timed out")??;
    if let Some(Some(password)) = PASSWORD.get() {
        redis::cmd("AUTH")
            .arg(password)
            .query_async::<()>(&mut connection)
            .await
            .context("AUTH with --requirepass")?;
    }
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    Ok(cmd.query_async(&mut connection).await?)
}

/// Adds this node (`id`, listening for peers on `peer` and clients on
/// `client`) to the cluster `contact` belongs to; returns the members'
/// peer addresses, this node's included.
pub async fn join(
    contact: &str,
    id: u64,
    peer: SocketAddr,
    client: SocketAddr,
    password: Option<String>,
    log: &Logger,
) -> Result<BTreeMap<u64, SocketAddr>> {
    let _ = PASSWORD.set(password);
    let started = Instant::now();
    let mut last_error = String::new();
    while started.elapsed() < JOIN_PATIENCE {
        match try_join(contact, id, peer, client, log).await {
            Ok(peers) => return Ok(peers),
            Err(err) => {
                last_error = format!("{err:#}");
                // A change in progress or a leader election ends soon.
                info!(log, "join not done yet; retrying"; "reason" => &last_error);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    bail!("could not join the cluster through {contact}: {last_error}")
}

async fn try_join(
    contact: &str,
    id: u64,
    peer: SocketAddr,
    client: SocketAddr,
    log: &Logger,
) -> Result<BTreeMap<u64, SocketAddr>> {
    let members = parse_members(
        command(contact, &["CLUSTER.MEMBERS"])
            .await
            .with_context(|| format!("CLUSTER.MEMBERS on {contact}"))?,
    )?;
    let mut peers = BTreeMap::new();
    for member in &members {
        if let Ok(addr) = member.peer.parse::<SocketAddr>() {
            peers.insert(member.id, addr);
        }
    }
    match members.iter().find(|member| member.id == id) {
        Some(me) if me.peer == peer.to_string() => {
            // Added already (a restart before the snapshot arrived).
            info!(log, "already a member; waiting for the leader"; "id" => id);
            return Ok(peers);
        }
        Some(me) => bail!(
            "node id {id} is already a member with peer address {}, not {peer}",
            me.peer
        ),
        None => {}
    }
    let leader = members
        .iter()
        .find(|member| member.leader)
        .context("the cluster has no leader right now")?;
    let leader_client = if leader.client.is_empty() {
        contact.to_string()
    } else {
        leader.client.clone()
    };
    let id_text = id.to_string();
    let peer_text = peer.to_string();
    let client_text = client.to_string();
    command(
        &leader_client,
        &["CLUSTER.ADD", &id_text, &peer_text, &client_text],
    )
    .await
    .with_context(|| format!("CLUSTER.ADD on the leader at {leader_client}"))?;
    info!(log, "added as a learner; waiting for the leader's snapshot";
        "id" => id, "leader" => leader.id);
    peers.insert(id, peer);
    Ok(peers)
}
