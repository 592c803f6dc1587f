//! INFO and COMMAND replies.

use std::fmt::Write as _;

use bytes::Bytes;
use lockstep_engine::{Reply, COMMANDS};
use lockstep_raft::Role;

use crate::session::REDIS_COMPAT_VERSION;
use crate::ServerContext;

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "persistence",
    "stats",
    "replication",
    "raft",
    "keyspace",
    "commandstats",
    "errorstats",
];

/// Sections only INFO ALL / EVERYTHING or their own name ask for, as Redis.
const NOT_DEFAULT: &[&str] = &["commandstats", "errorstats"];

pub fn info(context: &ServerContext, args: &[Bytes]) -> String {
    let wanted: Vec<String> = args
        .iter()
        .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase())
        .collect();
    let all = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut out = String::new();
    for section in SECTIONS {
        let by_default = default && !NOT_DEFAULT.contains(section);
        if all || by_default || wanted.iter().any(|w| w == section) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            section_text(context, section, &mut out);
        }
    }
    out
}

fn section_text(context: &ServerContext, section: &str, out: &mut String) {
    let status = context.node.status();
    let uptime = context.started.elapsed().as_secs();
    let mut w = Writer(out);
    match section {
        "server" => {
            w.header("Server");
            w.line("redis_version", &REDIS_COMPAT_VERSION);
            w.line("lockstep_version", &env!("CARGO_PKG_VERSION"));
            w.line("redis_mode", &"standalone");
            w.line("os", &std::env::consts::OS);
            w.line("arch_bits", &64);
            w.line("process_id", &std::process::id());
            // The async runtime's workers (`--io-threads`).
            w.line(
                "io_threads",
                &tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_workers()),
            );
            w.line("run_id", &format!("{:040x}", status.id));
            w.line(
                "tcp_port",
                &context
                    .client_addr(&status, status.id)
                    .map(|addr| addr.port())
                    .unwrap_or(0),
            );
            w.line("uptime_in_seconds", &uptime);
            w.line("uptime_in_days", &(uptime / 86_400));
        }
        "clients" => {
            w.header("Clients");
            w.line("connected_clients", &context.clients.connected());
            w.line("maxclients", &context.limits.max_connections);
            w.line("blocked_clients", &status.parked_requests);
            w.line("tracking_clients", &context.tracking.tracking_clients());
        }
        "persistence" => {
            w.header("Persistence");
            w.line("loading", &0);
            w.line("aof_enabled", &1);
            w.line("rdb_changes_since_last_save", &0);
        }
        "stats" => {
            w.header("Stats");
            w.line(
                "total_connections_received",
                &context.clients.total_connections(),
            );
            w.line(
                "total_commands_processed",
                &context.clients.total_commands(),
            );
            w.line(
                "rejected_connections",
                &context.metrics.connections_rejected.get(),
            );
            w.line(
                "total_error_replies",
                &context
                    .metrics
                    .error_stats()
                    .iter()
                    .map(|(_, count)| count)
                    .sum::<u64>(),
            );
            w.line("pubsub_patterns", &context.pubsub.pattern_count());
            w.line("tracking_total_keys", &context.tracking.tracked_keys());
        }
        "replication" => {
            w.header("Replication");
            if status.role == Role::Leader {
                w.line("role", &"master");
                let replicas: Vec<_> = status
                    .progress
                    .iter()
                    .filter(|peer| peer.id != status.id)
                    .collect();
                w.line("connected_slaves", &replicas.len());
                for (n, peer) in replicas.iter().enumerate() {
                    let addr = context.client_addr(&status, peer.id);
                    w.line(
                        &format!("slave{n}"),
                        &format!(
                            "ip={},port={},state=online,offset={},lag=0",
                            addr.map(|a| a.ip().to_string()).unwrap_or_default(),
                            addr.map(|a| a.port()).unwrap_or(0),
                            peer.matched
                        ),
                    );
                }
                w.line("master_repl_offset", &status.applied_index);
            } else {
                w.line("role", &"slave");
                let leader = context.client_addr(&status, status.leader_id);
                w.line(
                    "master_host",
                    &leader.map(|a| a.ip().to_string()).unwrap_or_default(),
                );
                w.line("master_port", &leader.map(|a| a.port()).unwrap_or(0));
                w.line(
                    "master_link_status",
                    &if status.leader_id != 0 { "up" } else { "down" },
                );
                w.line("slave_repl_offset", &status.applied_index);
                w.line("connected_slaves", &0);
            }
        }
        "raft" => {
            w.header("Raft");
            w.line("raft_node_id", &status.id);
            w.line("raft_cluster_id", &status.cluster_id);
            w.line("raft_role", &status.role.name());
            w.line("raft_term", &status.term);
            w.line("raft_leader_id", &status.leader_id);
            w.line(
                "raft_leader_addr",
                &context
                    .client_addr(&status, status.leader_id)
                    .map(|addr| addr.to_string())
                    .unwrap_or_default(),
            );
            w.line("raft_commit_index", &status.commit_index);
            w.line("raft_applied_index", &status.applied_index);
            w.line("raft_first_index", &status.first_index);
            w.line("raft_last_index", &status.last_index);
            w.line("raft_cluster_time_ms", &status.cluster_time_ms);
            w.line(
                "raft_nodes",
                &status
                    .voters
                    .iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            w.line(
                "raft_learners",
                &status
                    .learners
                    .iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            w.line(
                "raft_members",
                &status
                    .members
                    .addrs
                    .iter()
                    .map(|(id, addrs)| format!("{id}={}", addrs.client))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            w.line("raft_removed", &u8::from(status.removed));
        }
        "commandstats" => {
            w.header("Commandstats");
            for (name, calls, usec, failed) in context.metrics.command_stats() {
                if calls == 0 {
                    continue;
                }
                w.line(
                    &format!("cmdstat_{name}"),
                    &format!(
                        "calls={calls},usec={usec},usec_per_call={:.2},rejected_calls=0,failed_calls={failed}",
                        usec as f64 / calls as f64
                    ),
                );
            }
        }
        "errorstats" => {
            w.header("Errorstats");
            for (prefix, count) in context.metrics.error_stats() {
                w.line(&format!("errorstat_{prefix}"), &format!("count={count}"));
            }
        }
        "keyspace" => {
            w.header("Keyspace");
            if let Reply::Integer(keys) = context.node.read_local(&[Bytes::from_static(b"DBSIZE")])
            {
                if keys > 0 {
                    w.line("db0", &format!("keys={keys},expires=0,avg_ttl=0"));
                }
            }
        }
        _ => {}
    }
}

struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn header(&mut self, title: &str) {
        let _ = write!(self.0, "# {title}\r\n");
    }

    fn line(&mut self, key: &str, value: &dyn std::fmt::Display) {
        let _ = write!(self.0, "{key}:{value}\r\n");
    }
}

/// COMMAND, COMMAND COUNT / INFO / DOCS / LIST.
pub fn command(args: &[Bytes]) -> Reply {
    let describe = |name: &str| -> Reply {
        match COMMANDS.iter().find(|spec| spec.name == name) {
            Some(spec) => Reply::Array(vec![
                Reply::bulk(spec.name),
                Reply::Integer(spec.arity as i64),
                Reply::Array(
                    spec.flags()
                        .iter()
                        .map(|f| Reply::Status(f.to_string()))
                        .collect(),
                ),
                Reply::Integer(spec.first_key as i64),
                Reply::Integer(spec.last_key as i64),
                Reply::Integer(spec.step as i64),
            ]),
            None => Reply::Nil,
        }
    };
    let Some(sub) = args.first() else {
        return Reply::Array(COMMANDS.iter().map(|spec| describe(spec.name)).collect());
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let names = || {
        args[1..]
            .iter()
            .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase())
    };
    match sub.as_str() {
        "count" => Reply::Integer(COMMANDS.len() as i64),
        "list" => Reply::Array(COMMANDS.iter().map(|spec| Reply::bulk(spec.name)).collect()),
        "info" => Reply::Array(names().map(|name| describe(&name)).collect()),
        // Documentation is not served; an empty map keeps redis-cli's hints quiet.
        "docs" => Reply::Map(Vec::new()),
        _ => Reply::error(format!("ERR unknown subcommand '{sub}'. Try COMMAND HELP.")),
    }
}
