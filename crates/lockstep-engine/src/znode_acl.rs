//! ZooKeeper's access control on znodes: each node keeps a list of
//! (permissions, scheme, id); a caller is a set of identities (scheme, id)
//! and may do what any entry that matches one of them allows.
//!
//! Schemes: `world anyone` (everyone), `digest user:base64(sha1(user:pw))`
//! (a user who authenticated with that password), `ip addr[/bits]` (the
//! caller's address), and `auth` in a new ACL, which stands for every
//! identity the caller has authenticated (not its address).
//!
//! A command names its caller with `AS scheme id` (repeatable); the
//! ZooKeeper front end always does, with the client's address and its
//! authenticated users. A command without AS is trusted (a RESP client,
//! whose rights are its Redis ACL user's), as ZooKeeper's super user.

use std::net::IpAddr;

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is};
use crate::codec::{Reader, Writer};
use crate::Reply;

pub const READ: u32 = 1;
pub const WRITE: u32 = 2;
pub const CREATE: u32 = 4;
pub const DELETE: u32 = 8;
pub const ADMIN: u32 = 16;
pub const ALL: u32 = 31;
/// Most entries in one node's ACL.
pub const MAX_ENTRIES: usize = 100;
/// Most identities one caller names.
pub const MAX_IDENTITIES: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub perms: u32,
    pub scheme: Bytes,
    pub id: Bytes,
}

/// One identity of a caller.
pub type Identity = (Bytes, Bytes);

pub fn open() -> Vec<Acl> {
    anyone(ALL)
}

/// `world:anyone` with `perms`.
pub fn anyone(perms: u32) -> Vec<Acl> {
    vec![Acl {
        perms,
        scheme: Bytes::from_static(b"world"),
        id: Bytes::from_static(b"anyone"),
    }]
}

/// Permissions as a number (0-31) or ZooKeeper's letters (`cdrwa`).
pub fn parse_perms(arg: &[u8]) -> Result<u32, Reply> {
    if let Ok(n) = integer(arg) {
        if (0..=i64::from(ALL)).contains(&n) {
            return Ok(n as u32);
        }
    } else if !arg.is_empty() {
        let mut perms = 0;
        for letter in arg {
            perms |= match letter.to_ascii_lowercase() {
                b'r' => READ,
                b'w' => WRITE,
                b'c' => CREATE,
                b'd' => DELETE,
                b'a' => ADMIN,
                _ => return Err(bad_perms()),
            };
        }
        return Ok(perms);
    }
    Err(bad_perms())
}

fn bad_perms() -> Reply {
    Reply::error("ERR ACL permissions are 0-31 or letters of cdrwa")
}

pub fn letters(perms: u32) -> String {
    [
        (CREATE, 'c'),
        (DELETE, 'd'),
        (READ, 'r'),
        (WRITE, 'w'),
        (ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| perms & bit != 0)
    .map(|(_, c)| *c)
    .collect()
}

/// One entry from the three arguments after the word ACL.
pub fn parse_entry(perms: &[u8], scheme: &Bytes, id: &Bytes) -> Result<Acl, Reply> {
    Ok(Acl {
        perms: parse_perms(perms)?,
        scheme: scheme.clone(),
        id: id.clone(),
    })
}

/// Takes the trailing `AS scheme id` triples off `args`: the caller's
/// identities, or None (trusted) if there are none.
pub fn split_caller(args: &[Bytes]) -> Result<(&[Bytes], Option<Vec<Identity>>), Reply> {
    let mut end = args.len();
    let mut ids = Vec::new();
    while end >= 3 && is(&args[end - 3], "as") {
        ids.push((args[end - 2].clone(), args[end - 1].clone()));
        end -= 3;
        if ids.len() > MAX_IDENTITIES {
            return Err(Reply::error(format!(
                "ERR at most {MAX_IDENTITIES} AS identities"
            )));
        }
    }
    ids.reverse();
    Ok((&args[..end], (!ids.is_empty()).then_some(ids)))
}

fn ip_matches(pattern: &[u8], addr: &[u8]) -> bool {
    let (Ok(pattern), Ok(addr)) = (std::str::from_utf8(pattern), std::str::from_utf8(addr)) else {
        return false;
    };
    let (net, bits) = match pattern.split_once('/') {
        Some((net, bits)) => (net, bits.parse::<u32>().ok()),
        None => (pattern, None),
    };
    let (Ok(net), Ok(addr)) = (net.parse::<IpAddr>(), addr.parse::<IpAddr>()) else {
        return false;
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => same_prefix(&n.octets(), &a.octets(), bits),
        (IpAddr::V6(n), IpAddr::V6(a)) => same_prefix(&n.octets(), &a.octets(), bits),
        _ => false,
    }
}

/// Whether two addresses agree in their first `bits` bits (all of them
/// without a prefix length).
fn same_prefix(net: &[u8], addr: &[u8], bits: Option<u32>) -> bool {
    let bits = bits.map_or(net.len() * 8, |b| (b as usize).min(net.len() * 8));
    let (whole, rest) = (bits / 8, bits % 8);
    net[..whole] == addr[..whole] && (rest == 0 || (net[whole] ^ addr[whole]) >> (8 - rest) == 0)
}

/// `addr` or `addr/bits`, bits within the address's length.
fn valid_ip_pattern(pattern: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(pattern) else {
        return false;
    };
    let (net, bits) = match text.split_once('/') {
        Some((net, bits)) => (net, Some(bits)),
        None => (text, None),
    };
    match (net.parse::<IpAddr>(), bits.map(str::parse::<u32>)) {
        (Ok(_), None) => true,
        (Ok(IpAddr::V4(_)), Some(Ok(bits))) => bits <= 32,
        (Ok(IpAddr::V6(_)), Some(Ok(bits))) => bits <= 128,
        _ => false,
    }
}

fn matches(entry: &Acl, id: &Identity) -> bool {
    match &entry.scheme[..] {
        b"world" => &entry.id[..] == b"anyone",
        b"ip" => &id.0[..] == b"ip" && ip_matches(&entry.id, &id.1),
        _ => entry.scheme == id.0 && entry.id == id.1,
    }
}

/// Whether `caller` may do `perm` (any of its bits) on a node with `acl`.
pub fn allows(acl: &[Acl], caller: Option<&[Identity]>, perm: u32) -> bool {
    let Some(ids) = caller else {
        return true;
    };
    acl.iter().any(|entry| {
        entry.perms & perm != 0
            && ((&entry.scheme[..], &entry.id[..]) == (b"world".as_slice(), b"anyone".as_slice())
                || ids.iter().any(|id| matches(entry, id)))
    })
}

/// Checks a new ACL and expands `auth` to the caller's authenticated
/// identities; Err(why) is ZooKeeper's INVALIDACL.
pub fn validate(acl: Vec<Acl>, caller: Option<&[Identity]>) -> Result<Vec<Acl>, String> {
    if acl.is_empty() {
        return Err("an ACL needs at least one entry".into());
    }
    let mut out = Vec::with_capacity(acl.len());
    for entry in acl {
        match &entry.scheme[..] {
            b"world" if &entry.id[..] == b"anyone" => out.push(entry),
            b"digest" if entry.id.contains(&b':') => out.push(entry),
            b"ip" if valid_ip_pattern(&entry.id) => out.push(entry),
            b"auth" => {
                let authenticated: Vec<&Identity> = caller
                    .into_iter()
                    .flatten()
                    .filter(|(scheme, _)| &scheme[..] != b"ip")
                    .collect();
                if authenticated.is_empty() && caller.is_some() {
                    return Err("auth ACL without an authenticated identity".into());
                }
                for (scheme, id) in authenticated {
                    out.push(Acl {
                        perms: entry.perms,
                        scheme: scheme.clone(),
                        id: id.clone(),
                    });
                }
            }
            _ => {
                return Err(format!(
                    "unknown ACL {}:{}",
                    String::from_utf8_lossy(&entry.scheme),
                    String::from_utf8_lossy(&entry.id)
                ))
            }
        }
    }
    // The same entry twice is kept once, as ZooKeeper does.
    let mut seen = Vec::with_capacity(out.len());
    out.retain(|entry| {
        let fresh = !seen.contains(entry);
        if fresh {
            seen.push(entry.clone());
        }
        fresh
    });
    if out.is_empty() {
        return Err("an ACL needs at least one entry".into());
    }
    if out.len() > MAX_ENTRIES {
        return Err(format!("at most {MAX_ENTRIES} ACL entries"));
    }
    Ok(out)
}

pub fn encode(acl: &[Acl], out: &mut Vec<u8>) {
    out.put_u32(acl.len() as u32);
    for entry in acl {
        out.put_u32(entry.perms);
        out.put_bytes(&entry.scheme);
        out.put_bytes(&entry.id);
    }
}

pub fn decode(r: &mut Reader<'_>) -> Result<Vec<Acl>, StoreError> {
    let n = r.count(12)?;
    (0..n)
        .map(|_| {
            Ok(Acl {
                perms: r.u32()?,
                scheme: r.bytes()?,
                id: r.bytes()?,
            })
        })
        .collect()
}

/// An ACL as a reply: one `[perms, scheme, id]` per entry.
pub fn reply(acl: &[Acl]) -> Reply {
    Reply::Array(
        acl.iter()
            .map(|e| {
                Reply::Array(vec![
                    Reply::bulk(letters(e.perms)),
                    Reply::Bulk(e.scheme.clone()),
                    Reply::Bulk(e.id.clone()),
                ])
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ip_patterns_match_by_prefix() {
        let m = |pattern: &str, addr: &str| ip_matches(pattern.as_bytes(), addr.as_bytes());
        assert!(m("10.1.2.3", "10.1.2.3"));
        assert!(!m("10.1.2.3", "10.1.2.4"));
        assert!(m("10.0.0.0/8", "10.200.3.4"));
        assert!(m("10.1.2.0/23", "10.1.3.255"));
        assert!(!m("10.1.2.0/23", "10.1.4.0"));
        assert!(m("0.0.0.0/0", "192.168.1.1"));
        assert!(m("fe80::/10", "febf::1"));
        assert!(!m("fe80::/10", "fec0::1"));
        assert!(m("::1", "::1"));
        assert!(!m("10.0.0.0/8", "::ffff:10.0.0.1"));
        assert!(!m("not-an-address", "10.0.0.1"));
    }

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn acl(perms: u32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            scheme: b(scheme),
            id: b(id),
        }
    }

    #[test]
    fn permissions_follow_matching_entries() {
        let node = vec![acl(READ, "world", "anyone"), acl(ALL, "digest", "bob:h")];
        let anon = [(b("ip"), b("10.1.2.3"))];
        let bob = [(b("ip"), b("10.1.2.3")), (b("digest"), b("bob:h"))];
        assert!(allows(&node, Some(&anon), READ));
        assert!(!allows(&node, Some(&anon), WRITE));
        assert!(allows(&node, Some(&bob), WRITE | ADMIN));
        assert!(
            allows(&node, None, ADMIN),
            "a trusted caller may do anything"
        );
        let net = vec![acl(ALL, "ip", "10.1.0.0/16")];
        assert!(allows(&net, Some(&anon), DELETE));
        assert!(!allows(&net, Some(&[(b("ip"), b("10.2.0.1"))]), DELETE));
        assert!(!allows(
            &[acl(ALL, "ip", "10.1.2.3")],
            Some(&[(b("digest"), b("10.1.2.3"))]),
            READ
        ));
    }

    #[test]
    fn new_acls_are_checked_and_auth_expands() {
        let bob = [(b("ip"), b("::1")), (b("digest"), b("bob:h"))];
        assert_eq!(
            validate(vec![acl(ALL, "auth", "")], Some(&bob)).unwrap(),
            vec![acl(ALL, "digest", "bob:h")]
        );
        assert!(validate(vec![acl(ALL, "auth", "")], Some(&bob[..1])).is_err());
        assert!(validate(vec![], None).is_err());
        let twice = vec![acl(ALL, "world", "anyone"), acl(ALL, "world", "anyone")];
        assert_eq!(validate(twice, None).unwrap().len(), 1, "duplicates go");
        assert!(validate(vec![acl(ALL, "world", "someone")], None).is_err());
        assert!(validate(vec![acl(ALL, "ip", "not-an-ip")], None).is_err());
        assert!(validate(vec![acl(ALL, "ip", "10.0.0.0/8")], None).is_ok());
        assert!(validate(vec![acl(ALL, "sasl", "x")], None).is_err());
        assert_eq!(parse_perms(b"cdrwa"), Ok(ALL));
        assert_eq!(parse_perms(b"17"), Ok(READ | ADMIN));
        assert!(parse_perms(b"x").is_err() && parse_perms(b"32").is_err());
        assert_eq!(letters(READ | ADMIN), "ra");
    }

    #[test]
    fn as_identities_come_off_the_end() {
        let args = [
            b("/p"),
            b("d"),
            b("AS"),
            b("ip"),
            b("1.2.3.4"),
            b("as"),
            b("digest"),
            b("u:h"),
        ];
        let (rest, ids) = split_caller(&args).unwrap();
        assert_eq!(rest, &args[..2]);
        assert_eq!(
            ids.unwrap(),
            vec![(b("ip"), b("1.2.3.4")), (b("digest"), b("u:h"))]
        );
        let (rest, ids) = split_caller(&args[..2]).unwrap();
        assert_eq!((rest.len(), ids), (2, None));
    }
}
