//! ZooKeeper's client protocol: op codes, error codes, the records of each
//! request, and the stat, watch-event and ACL records of replies.

use bytes::Bytes;

use crate::jute::{Malformed, Reader, Writer};

pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
    /// A failed operation's result inside a multi.
    pub const ERROR: i32 = -1;
}

/// The special xids of replies that answer no numbered request.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

pub mod err {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NOT_READONLY: i32 = -119;
    pub const NO_WATCHER: i32 = -121;
}

/// Watch event types and the connected state of a notification.
pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const SYNC_CONNECTED: i32 = 3;
}

/// The error code of an engine error reply (`ZNONODE ...` and the like);
/// any other engine error is a bad argument.
pub fn code_of(error: &str) -> i32 {
    let word = error.split(' ').next().unwrap_or("");
    match word {
        "ZNONODE" => err::NO_NODE,
        "ZNODEEXISTS" => err::NODE_EXISTS,
        "ZBADVERSION" => err::BAD_VERSION,
        "ZNOTEMPTY" => err::NOT_EMPTY,
        "ZNOCHILDRENFOREPHEMERALS" => err::NO_CHILDREN_FOR_EPHEMERALS,
        "ZSESSIONEXPIRED" => err::SESSION_EXPIRED,
        "ZRUNTIMEINCONSISTENCY" => err::RUNTIME_INCONSISTENCY,
        "ZNOAUTH" => err::NO_AUTH,
        "ZINVALIDACL" => err::INVALID_ACL,
        _ => err::BAD_ARGUMENTS,
    }
}

/// A znode's stat, as the engine reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Stat {
    pub fn write(&self, w: &mut Writer) {
        w.long(self.czxid)
            .long(self.mzxid)
            .long(self.ctime)
            .long(self.mtime)
            .int(self.version)
            .int(self.cversion)
            .int(self.aversion)
            .long(self.ephemeral_owner)
            .int(self.data_length)
            .int(self.num_children)
            .long(self.pzxid);
    }
}

/// One access control entry: permissions for an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub perms: i32,
    pub scheme: Bytes,
    pub id: Bytes,
}

impl Acl {
    fn read_list(r: &mut Reader) -> Result<Vec<Acl>, Malformed> {
        let n = r.count(12)?;
        (0..n)
            .map(|_| {
                Ok(Acl {
                    perms: r.int()?,
                    scheme: r.string()?,
                    id: r.string()?,
                })
            })
            .collect()
    }

    pub fn write_list(acls: &[Acl], w: &mut Writer) {
        w.int(acls.len() as i32);
        for acl in acls {
            w.int(acl.perms).string(&acl.scheme).string(&acl.id);
        }
    }
}

/// Create flags (ZooKeeper's CreateMode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateMode {
    pub ephemeral: bool,
    pub sequential: bool,
    pub container: bool,
    pub ttl: bool,
}

impl CreateMode {
    pub fn from_flags(flags: i32) -> Option<CreateMode> {
        let mode = |ephemeral, sequential, container, ttl| CreateMode {
            ephemeral,
            sequential,
            container,
            ttl,
        };
        Some(match flags {
            0 => mode(false, false, false, false),
            1 => mode(true, false, false, false),
            2 => mode(false, true, false, false),
            3 => mode(true, true, false, false),
            4 => mode(false, false, true, false),
            5 => mode(false, false, false, true),
            6 => mode(false, true, false, true),
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Create {
    pub path: Bytes,
    /// None: null data (not the same as empty).
    pub data: Option<Bytes>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    pub ttl: i64,
}

/// A request's body, by op code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// create, create2, createContainer, createTTL (`op` says which).
    Create {
        op: i32,
        create: Create,
    },
    Delete {
        path: Bytes,
        version: i32,
    },
    Exists {
        path: Bytes,
        watch: bool,
    },
    GetData {
        path: Bytes,
        watch: bool,
    },
    SetData {
        path: Bytes,
        /// None: null data.
        data: Option<Bytes>,
        version: i32,
    },
    GetAcl {
        path: Bytes,
    },
    SetAcl {
        path: Bytes,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: Bytes,
        watch: bool,
        with_stat: bool,
    },
    Sync {
        path: Bytes,
    },
    Ping,
    Check {
        path: Bytes,
        version: i32,
    },
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    CheckWatches {
        path: Bytes,
        kind: i32,
    },
    RemoveWatches {
        path: Bytes,
        kind: i32,
    },
    Auth {
        scheme: Bytes,
        auth: Bytes,
    },
    SetWatches(SetWatches),
    GetEphemerals {
        prefix: Bytes,
    },
    GetAllChildrenNumber {
        path: Bytes,
    },
    AddWatch {
        path: Bytes,
        mode: i32,
    },
    WhoAmI,
    CloseSession,
}

impl Request {
    /// Whether the request changes the namespace (refused in read-only
    /// mode with NOTREADONLY, as ZooKeeper's read-only server does).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Delete { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Check { .. }
                | Request::Multi(_)
        )
    }
}

/// setWatches / setWatches2: the watches a reconnecting client had, and
/// the last zxid it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<Bytes>,
    pub exist: Vec<Bytes>,
    pub child: Vec<Bytes>,
    pub persistent: Vec<Bytes>,
    pub recursive: Vec<Bytes>,
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// An op code this server does not know: Unimplemented, then close.
    Unknown(i32),
    Malformed(Malformed),
}

impl From<Malformed> for BadRequest {
    fn from(m: Malformed) -> Self {
        BadRequest::Malformed(m)
    }
}

fn create(r: &mut Reader, op: i32) -> Result<Request, Malformed> {
    let path = r.string()?;
    let data = r.optional_buffer()?;
    let acl = Acl::read_list(r)?;
    let flags = r.int()?;
    let ttl = if op == op::CREATE_TTL { r.long()? } else { -1 };
    Ok(Request::Create {
        op,
        create: Create {
            path,
            data,
            acl,
            flags,
            ttl,
        },
    })
}

pub fn parse(op: i32, r: &mut Reader) -> Result<Request, BadRequest> {
    Ok(match op {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => create(r, op)?,
        op::DELETE => Request::Delete {
            path: r.string()?,
            version: r.int()?,
        },
        op::EXISTS => Request::Exists {
            path: r.string()?,
            watch: r.boolean()?,
        },
        op::GET_DATA => Request::GetData {
            path: r.string()?,
            watch: r.boolean()?,
        },
        op::SET_DATA => Request::SetData {
            path: r.string()?,
            data: r.optional_buffer()?,
            version: r.int()?,
        },
        op::GET_ACL => Request::GetAcl { path: r.string()? },
        op::SET_ACL => Request::SetAcl {
            path: r.string()?,
            acl: Acl::read_list(r)?,
            version: r.int()?,
        },
        op::GET_CHILDREN | op::GET_CHILDREN2 => Request::GetChildren {
            path: r.string()?,
            watch: r.boolean()?,
            with_stat: op == op::GET_CHILDREN2,
        },
        op::SYNC => Request::Sync { path: r.string()? },
        op::PING => Request::Ping,
        op::CHECK => Request::Check {
            path: r.string()?,
            version: r.int()?,
        },
        op::MULTI | op::MULTI_READ => {
            let mut ops = Vec::new();
            loop {
                let kind = r.int()?;
                let done = r.boolean()?;
                let _err = r.int()?;
                if done {
                    break;
                }
                let allowed = if op == op::MULTI {
                    matches!(
                        kind,
                        op::CREATE
                            | op::CREATE2
                            | op::CREATE_CONTAINER
                            | op::CREATE_TTL
                            | op::DELETE
                            | op::SET_DATA
                            | op::CHECK
                    )
                } else {
                    matches!(kind, op::GET_DATA | op::GET_CHILDREN)
                };
                if !allowed {
                    return Err(BadRequest::Malformed(Malformed("operation in multi")));
                }
                ops.push(parse(kind, r)?);
                if ops.len() > lockstep_engine::MAX_ZNODE_MULTI_OPS {
                    return Err(BadRequest::Malformed(Malformed("too many operations")));
                }
            }
            if op == op::MULTI {
                Request::Multi(ops)
            } else {
                Request::MultiRead(ops)
            }
        }
        op::CHECK_WATCHES => Request::CheckWatches {
            path: r.string()?,
            kind: r.int()?,
        },
        op::REMOVE_WATCHES => Request::RemoveWatches {
            path: r.string()?,
            kind: r.int()?,
        },
        op::AUTH => {
            let _type = r.int()?;
            Request::Auth {
                scheme: r.string()?,
                auth: r.buffer()?,
            }
        }
        op::SET_WATCHES | op::SET_WATCHES2 => {
            let relative_zxid = r.long()?;
            let data = r.strings()?;
            let exist = r.strings()?;
            let child = r.strings()?;
            let (persistent, recursive) = if op == op::SET_WATCHES2 {
                (r.strings()?, r.strings()?)
            } else {
                (Vec::new(), Vec::new())
            };
            Request::SetWatches(SetWatches {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                recursive,
            })
        }
        op::GET_EPHEMERALS => Request::GetEphemerals {
            prefix: r.string()?,
        },
        op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber { path: r.string()? },
        op::ADD_WATCH => Request::AddWatch {
            path: r.string()?,
            mode: r.int()?,
        },
        op::WHO_AM_I => Request::WhoAmI,
        op::CLOSE_SESSION => Request::CloseSession,
        other => return Err(BadRequest::Unknown(other)),
    })
}

/// The connect request, the first frame of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Bytes,
    pub read_only: bool,
}

impl Connect {
    pub fn parse(r: &mut Reader) -> Result<Connect, Malformed> {
        let protocol_version = r.int()?;
        let last_zxid_seen = r.long()?;
        let timeout_ms = r.int()?;
        let session_id = r.long()?;
        let password = r.buffer()?;
        // Clients before 3.4 send no read-only flag.
        let read_only = if r.remaining() > 0 {
            r.boolean()?
        } else {
            false
        };
        Ok(Connect {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            password,
            read_only,
        })
    }
}

/// The connect response: timeout 0 and session 0 say "expired".
pub fn connect_response(
    timeout_ms: i32,
    session_id: i64,
    password: &[u8],
    read_only: bool,
) -> Writer {
    let mut w = Writer::default();
    w.int(0)
        .int(timeout_ms)
        .long(session_id)
        .buffer(password)
        .boolean(read_only);
    w
}

/// A reply header followed by nothing yet.
pub fn reply_header(xid: i32, zxid: i64, err: i32) -> Writer {
    let mut w = Writer::default();
    w.int(xid).long(zxid).int(err);
    w
}

/// A watch notification.
pub fn notification(event_type: i32, path: &[u8]) -> Writer {
    let mut w = reply_header(xid::NOTIFICATION, -1, err::OK);
    w.int(event_type).int(event::SYNC_CONNECTED).string(path);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multi(kinds: &[(i32, &[u8])]) -> Reader {
        let mut w = Writer::default();
        for (kind, body) in kinds {
            w.int(*kind).boolean(false).int(-1);
            w.out.extend_from_slice(body);
        }
        w.int(-1).boolean(true).int(-1);
        Reader::new(w.out.freeze())
    }

    #[test]
    fn multi_reads_each_operation_and_refuses_reads_inside_a_write_multi() {
        let mut check = Writer::default();
        check.string(b"/a").int(3);
        let mut delete = Writer::default();
        delete.string(b"/b").int(-1);
        let parsed = parse(
            op::MULTI,
            &mut multi(&[(op::CHECK, &check.out), (op::DELETE, &delete.out)]),
        )
        .unwrap();
        assert_eq!(
            parsed,
            Request::Multi(vec![
                Request::Check {
                    path: Bytes::from_static(b"/a"),
                    version: 3
                },
                Request::Delete {
                    path: Bytes::from_static(b"/b"),
                    version: -1
                },
            ])
        );
        let mut get = Writer::default();
        get.string(b"/a").boolean(false);
        assert!(parse(op::MULTI, &mut multi(&[(op::GET_DATA, &get.out)])).is_err());
        assert!(parse(op::MULTI_READ, &mut multi(&[(op::GET_DATA, &get.out)])).is_ok());
    }

    #[test]
    fn an_unknown_op_code_is_reported_as_such() {
        let mut r = Reader::new(Bytes::new());
        assert_eq!(parse(16, &mut r), Err(BadRequest::Unknown(16)));
        assert_eq!(parse(12345, &mut r), Err(BadRequest::Unknown(12345)));
    }

    #[test]
    fn create_modes_follow_zookeepers_flags() {
        assert!(CreateMode::from_flags(3).is_some_and(|m| m.ephemeral && m.sequential));
        assert!(CreateMode::from_flags(6).is_some_and(|m| m.ttl && m.sequential));
        assert!(CreateMode::from_flags(7).is_none());
        assert_eq!(code_of("ZNONODE /a does not exist"), err::NO_NODE);
        assert_eq!(code_of("ERR syntax error"), err::BAD_ARGUMENTS);
    }
}
