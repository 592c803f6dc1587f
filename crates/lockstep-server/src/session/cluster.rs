//! Operations on the cluster itself: CLUSTER.MEMBERS, CLUSTER.ADD,
//! CLUSTER.PROMOTE, CLUSTER.REMOVE, CLUSTER.TRANSFER, CLUSTER.BACKUP (what
//! `lockstep backup` reads), and Redis Cluster's
//! own CLUSTER, answered as a Redis without cluster support does. The
//! checks and the changes are the replication core's; this turns them into
//! commands and replies.

use bytes::Bytes;
use lockstep_engine::Reply;
use lockstep_raft::{validate_address, MemberAddrs, MembershipChange, MembershipError, NodeStatus};

use super::Session;

fn node_id(arg: &[u8]) -> Result<u64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|&id| id > 0)
        .ok_or_else(|| Reply::error("ERR node id must be an integer of 1 or more"))
}

fn address(arg: &[u8]) -> Result<String, Reply> {
    let text = std::str::from_utf8(arg).map_err(|_| Reply::error("ERR address is not UTF-8"))?;
    validate_address(text).map_err(|err| Reply::error(format!("ERR {err}")))?;
    Ok(text.to_string())
}

/// The error a client gets for a membership change or transfer that did
/// not happen.
fn membership_error(err: MembershipError, status: &NodeStatus, what: &str) -> Reply {
    match err {
        MembershipError::NotLeader { leader: 0 } => Reply::error(format!(
            "CLUSTERDOWN no leader is known; {what} needs one, retry"
        )),
        MembershipError::NotLeader { leader } => {
            let at = status
                .client_addr(leader)
                .map(|addr| format!(" at {addr}"))
                .unwrap_or_default();
            Reply::error(format!(
                "NOTLEADER {what} goes through the leader: node {leader}{at}"
            ))
        }
        MembershipError::Refused(text) => Reply::error(format!("ERR {text}")),
        MembershipError::NoQuorum { live, voters } => Reply::error(format!(
            "CLUSTERDOWN the leader hears from {live} of {voters} voters, not a majority; \
             membership changes need a live quorum"
        )),
        MembershipError::TimedOut => Reply::error(format!(
            "TRYAGAIN {what} did not complete in time; check CLUSTER.MEMBERS before retrying"
        )),
        MembershipError::Removed => removed_error(status.id),
        MembershipError::Propose(err) => super::propose_error(err, 5),
    }
}

/// What every command gets on a node that was removed from the cluster.
pub fn removed_error(id: u64) -> Reply {
    Reply::error(format!(
        "REMOVED node {id} was removed from the cluster and serves no more; connect to a member"
    ))
}

impl Session {
    pub(super) async fn cluster_command(&mut self, name: &str, args: &[Bytes]) -> Reply {
        match name {
            "cluster" => Reply::error("ERR This instance has cluster support disabled"),
            "cluster.members" => match args {
                [] => self.members(),
                _ => Reply::wrong_arity(name),
            },
            "cluster.add" => match args {
                [id, peer] | [id, peer, _] => {
                    let parsed = (|| {
                        Ok::<_, Reply>(MembershipChange::Add {
                            id: node_id(id)?,
                            addrs: MemberAddrs {
                                peer: address(peer)?,
                                client: match args.get(2) {
                                    Some(client) => address(client)?,
                                    None => String::new(),
                                },
                            },
                        })
                    })();
                    match parsed {
                        Ok(change) => self.change(change, "CLUSTER.ADD").await,
                        Err(reply) => reply,
                    }
                }
                _ => Reply::wrong_arity(name),
            },
            "cluster.promote" | "cluster.remove" => match args {
                [id] => match node_id(id) {
                    Ok(id) if name == "cluster.promote" => {
                        self.change(MembershipChange::Promote { id }, "CLUSTER.PROMOTE")
                            .await
                    }
                    Ok(id) => {
                        self.change(MembershipChange::Remove { id }, "CLUSTER.REMOVE")
                            .await
                    }
                    Err(reply) => reply,
                },
                _ => Reply::wrong_arity(name),
            },
            "cluster.backup" => match args {
                [] => match self.context.node.backup().await {
                    Ok(file) => Reply::Bulk(Bytes::from(file)),
                    Err(err) => Reply::error(format!("ERR backup failed: {err}")),
                },
                _ => Reply::wrong_arity(name),
            },
            "cluster.transfer" => match args {
                [id] => match node_id(id) {
                    Ok(id) => {
                        let node = self.context.node.clone();
                        match node.transfer_leader(id).await {
                            Ok(_) => Reply::ok(),
                            Err(err) => membership_error(err, &node.status(), "CLUSTER.TRANSFER"),
                        }
                    }
                    Err(reply) => reply,
                },
                _ => Reply::wrong_arity(name),
            },
            _ => Reply::error(format!(
                "ERR unknown command '{name}', with args beginning with: "
            )),
        }
    }

    async fn change(&mut self, change: MembershipChange, what: &str) -> Reply {
        let node = self.context.node.clone();
        match node.change_membership(change).await {
            Ok(_) => Reply::ok(),
            Err(err) => membership_error(err, &node.status(), what),
        }
    }

    /// One entry per member, by id: addresses, role, and what this node
    /// knows of its replication (the leader knows every member's matched
    /// index; -1 where unknown).
    fn members(&self) -> Reply {
        let status = self.context.node.status();
        let mut ids: Vec<u64> = status
            .voters
            .iter()
            .chain(&status.learners)
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let entries = ids
            .into_iter()
            .map(|id| {
                let addrs = status.members.addrs.get(&id).cloned().unwrap_or_default();
                let client = if addrs.client.is_empty() {
                    self.context
                        .client_addr(&status, id)
                        .map(|addr| addr.to_string())
                        .unwrap_or_default()
                } else {
                    addrs.client
                };
                let matched = if id == status.id {
                    status.last_index as i64
                } else {
                    status
                        .progress
                        .iter()
                        .find(|peer| peer.id == id)
                        .map_or(-1, |peer| peer.matched as i64)
                };
                let contact = if id == status.id {
                    0
                } else {
                    status
                        .heard_from(id)
                        .map_or(-1, |ago| ago.as_millis() as i64)
                };
                let role = if status.voters.contains(&id) {
                    "voter"
                } else {
                    "learner"
                };
                Reply::Map(vec![
                    (Reply::bulk("id"), Reply::Integer(id as i64)),
                    (Reply::bulk("peer"), Reply::bulk(addrs.peer)),
                    (Reply::bulk("client"), Reply::bulk(client)),
                    (Reply::bulk("role"), Reply::bulk(role)),
                    (
                        Reply::bulk("leader"),
                        Reply::Integer(i64::from(status.leader_id == id)),
                    ),
                    (Reply::bulk("matched"), Reply::Integer(matched)),
                    (Reply::bulk("last-contact-ms"), Reply::Integer(contact)),
                ])
            })
            .collect();
        Reply::Array(entries)
    }
}
