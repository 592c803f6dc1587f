//! The cluster's membership beyond raft's own configuration: each member's
//! peer and client address, and the ids removed for good.
//!
//! raft-rs's `ConfState` says who votes; this record says where each
//! member is. It lives in the keyspace family under a key the engine never
//! uses (`\xff` prefix: outside every engine range, so FLUSHALL and DEBUG
//! DIGEST do not see it), is written by the same store write that applies
//! a membership entry, and travels in snapshots, so every node knows every
//! member's addresses. A membership entry carries the added member's
//! addresses as its context.

use std::collections::{BTreeMap, BTreeSet};

/// Key of the membership record in the keyspace family.
pub const MEMBERS_KEY: &[u8] = b"\xffmembers";
/// Largest address accepted in a membership change.
const MAX_ADDRESS_LEN: usize = 255;

/// Where one member listens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberAddrs {
    /// Raft traffic from peers (host:port).
    pub peer: String,
    /// Redis clients (host:port); empty if not known.
    pub client: String,
}

/// Every member's addresses and every id ever removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    pub addrs: BTreeMap<u64, MemberAddrs>,
    /// Removed ids are never used again: a removed node that is still
    /// running must not be mistaken for a new member.
    pub removed: BTreeSet<u64>,
}

impl Members {
    /// Text, one line per member (`member id peer client`) or removed id
    /// (`removed id`): small, and readable in a dump of the store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from("v1\n");
        for (id, addrs) in &self.addrs {
            out.push_str(&format!("member {id} {} {}\n", addrs.peer, addrs.client));
        }
        for id in &self.removed {
            out.push_str(&format!("removed {id}\n"));
        }
        out.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Members, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "membership record is not UTF-8")?;
        let mut lines = text.lines();
        if lines.next() != Some("v1") {
            return Err("membership record: unknown format".into());
        }
        let mut members = Members::default();
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let id = |text: &str| {
                text.parse::<u64>()
                    .map_err(|_| format!("membership record: bad id in '{line}'"))
            };
            match fields.as_slice() {
                ["member", member, peer, client] => {
                    members.addrs.insert(
                        id(member)?,
                        MemberAddrs {
                            peer: peer.to_string(),
                            client: client.to_string(),
                        },
                    );
                }
                ["removed", removed] => {
                    members.removed.insert(id(removed)?);
                }
                _ => return Err(format!("membership record: bad line '{line}'")),
            }
        }
        Ok(members)
    }
}

impl MemberAddrs {
    /// The context of a membership entry that adds this member.
    pub fn encode_context(&self) -> Vec<u8> {
        format!("{} {}", self.peer, self.client).into_bytes()
    }

    pub fn decode_context(bytes: &[u8]) -> Option<MemberAddrs> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (peer, client) = text.split_once(' ')?;
        Some(MemberAddrs {
            peer: peer.to_string(),
            client: client.to_string(),
        })
    }
}

/// Checks an address given to CLUSTER.ADD: host:port, no spaces.
pub fn validate_address(text: &str) -> Result<(), String> {
    let valid = !text.is_empty()
        && text.len() <= MAX_ADDRESS_LEN
        && text.is_ascii()
        && !text
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        && text.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
    if valid {
        Ok(())
    } else {
        Err(format!("'{text}' is not a host:port address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let mut members = Members::default();
        members.addrs.insert(
            1,
            MemberAddrs {
                peer: "127.0.0.1:7001".into(),
                client: "127.0.0.1:6379".into(),
            },
        );
        members.addrs.insert(
            4,
            MemberAddrs {
                peer: "node4:7004".into(),
                client: String::new(),
            },
        );
        members.removed.insert(3);
        assert_eq!(Members::decode(&members.encode()).unwrap(), members);
        assert!(Members::decode(b"v2\n").is_err());
        assert!(Members::decode(b"v1\nmember x a b\n").is_err());
    }

    #[test]
    fn addresses_are_checked() {
        assert!(validate_address("127.0.0.1:7001").is_ok());
        assert!(validate_address("[::1]:7001").is_ok());
        assert!(validate_address("node-4.example:7001").is_ok());
        for bad in [
            "",
            "host",
            "host:",
            ":7001",
            "host:0",
            "host:99999",
            "a b:1",
            "h\n:1",
        ] {
            assert!(validate_address(bad).is_err(), "{bad:?}");
        }
        let context = MemberAddrs {
            peer: "a:1".into(),
            client: "b:2".into(),
        };
        assert_eq!(
            MemberAddrs::decode_context(&context.encode_context()),
            Some(context)
        );
    }
}
