//! ZooKeeper's four-letter words, sent instead of a connect request's
//! length on the client port; answered in text, then the connection
//! closes. Only the words in the configured allow list run.

use lockstep_raft::Role;
use lockstep_server::ServerContext;

use crate::{Stats, ZkConfig, ZOOKEEPER_VERSION};

pub const WORDS: [&str; 9] = [
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "envi", "wchs", "isro",
];

pub fn lookup(first: &[u8; 4]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == first)
}

/// ZooKeeper's server states; a node that knows no leader serves only
/// read-only sessions.
fn mode(ctx: &ServerContext) -> &'static str {
    let status = ctx.node.status();
    match status.role {
        Role::Leader => "leader",
        _ if status.leader_id == 0 => "read-only",
        _ => "follower",
    }
}

fn server_lines(ctx: &ServerContext, stats: &Stats) -> String {
    let status = ctx.node.status();
    format!(
        "Zookeeper version: {ZOOKEEPER_VERSION}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: {}\n",
        stats.total_received(),
        stats.total_sent(),
        stats.connection_count(),
        status.pending_requests,
        status.applied_index,
        mode(ctx),
    )
}

pub fn answer(word: &str, ctx: &ServerContext, config: &ZkConfig, stats: &Stats) -> String {
    if !config
        .four_letter_words
        .iter()
        .any(|w| w == word || w == "*")
    {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    let status = ctx.node.status();
    match word {
        "ruok" => "imok".into(),
        "isro" => if status.leader_id == 0 { "ro" } else { "rw" }.into(),
        "srvr" => server_lines(ctx, stats),
        "stat" => {
            let mut text = String::from("Clients:\n");
            for line in stats.connection_lines() {
                text.push_str(&format!(" {line}\n"));
            }
            text.push('\n');
            text + &server_lines(ctx, stats)
        }
        "cons" => {
            let mut text = String::new();
            for line in stats.connection_lines() {
                text.push_str(&format!(" {line}\n"));
            }
            text.push('\n');
            text
        }
        "mntr" => {
            let rows: Vec<(&str, String)> = vec![
                ("zk_version", ZOOKEEPER_VERSION.to_string()),
                ("zk_server_state", mode(ctx).to_string()),
                ("zk_num_alive_connections", stats.connection_count().to_string()),
                ("zk_outstanding_requests", status.pending_requests.to_string()),
                ("zk_packets_received", stats.total_received().to_string()),
                ("zk_packets_sent", stats.total_sent().to_string()),
                ("zk_watch_count", ctx.znode_watches.count().to_string()),
                ("zk_last_zxid", format!("0x{:x}", status.applied_index)),
                ("zk_quorum_size", status.voters.len().to_string()),
            ];
            rows.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
        }
        "conf" => format!(
            "clientPort={}\n{}serverId={}\ntickTime={}\nminSessionTimeout={}\nmaxSessionTimeout={}\nmaxClientCnxns={}\njute.maxbuffer={}\n",
            config.client_port,
            config
                .secure_client_port
                .map(|port| format!("secureClientPort={port}\n"))
                .unwrap_or_default(),
            status.id,
            config.tick_ms,
            config.min_session_ms,
            config.max_session_ms,
            ctx.limits.max_connections,
            config.max_frame,
        ),
        "envi" => format!(
            "Environment:\nzookeeper.version={ZOOKEEPER_VERSION}\nhost.name={}\nlockstep.version={}\n",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
            env!("CARGO_PKG_VERSION"),
        ),
        "wchs" => format!(
            "{} connections watching paths\nTotal watches:{}\n",
            stats.connection_count(),
            ctx.znode_watches.count()
        ),
        _ => String::new(),
    }
}
