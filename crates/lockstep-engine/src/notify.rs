//! Keyspace notifications as Redis sends them: the `notify-keyspace-events`
//! flag letters, and the messages an event becomes.
//!
//! Commands report what they did with [`crate::context::Context::notify`]
//! (a class and a Redis event name, per key, in Redis's order). Whether a
//! message is published depends on the replicated setting read when the
//! entry is applied, so every node publishes the same messages at the same
//! index; the change feed (`changes`) records every event whatever the
//! setting.

/// `K`: `__keyspace@0__:<key>` channels.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: `__keyevent@0__:<event>` channels.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: DEL, EXPIRE, RENAME, ... (type-independent).
pub const GENERIC: u32 = 1 << 2;
/// `$`: strings.
pub const STRING: u32 = 1 << 3;
/// `l`: lists.
pub const LIST: u32 = 1 << 4;
/// `s`: sets.
pub const SET: u32 = 1 << 5;
/// `h`: hashes.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted sets.
pub const ZSET: u32 = 1 << 7;
/// `x`: a key removed because its TTL passed.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: evictions (lockstep never evicts; accepted for compatibility).
pub const EVICTED: u32 = 1 << 9;
/// `t`: streams (none in lockstep; accepted for compatibility).
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses on reads (reads are not log entries: never sent).
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: lockstep's own types: locks, leases' keys, elections, services,
/// barriers (Redis's class for module types).
pub const MODULE: u32 = 1 << 13;
/// `n`: a key was created.
pub const NEW: u32 = 1 << 14;
/// `A`: every class but `m` and `n`, as in Redis.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The error text Redis gives for a letter it does not know.
pub const INVALID_FLAGS: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// The flags a `notify-keyspace-events` value names; `None` for an
/// unknown letter.
pub fn parse_flags(text: &[u8]) -> Option<u32> {
    let mut flags = 0;
    for letter in text {
        flags |= match letter {
            b'A' => ALL,
            b'g' => GENERIC,
            b'$' => STRING,
            b'l' => LIST,
            b's' => SET,
            b'h' => HASH,
            b'z' => ZSET,
            b'x' => EXPIRED,
            b'e' => EVICTED,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b't' => STREAM,
            b'm' => KEY_MISS,
            b'd' => MODULE,
            b'n' => NEW,
            _ => return None,
        };
    }
    Some(flags)
}

/// The normalised text of `flags`, as CONFIG GET shows it.
pub fn flags_text(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (class, letter) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & class != 0 {
                out.push(letter);
            }
        }
    }
    for (class, letter) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & class != 0 {
            out.push(letter);
        }
    }
    out
}

/// Whether an event of `class` is published under `flags`.
pub fn publishes(flags: u32, class: u32) -> bool {
    flags & class != 0 && flags & (KEYSPACE | KEYEVENT) != 0
}

/// The `(channel, message)` pairs an event becomes under `flags`, keyspace
/// channel first, as Redis publishes them.
pub fn messages(flags: u32, event: &str, key: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(2);
    if flags & KEYSPACE != 0 {
        let mut channel = b"__keyspace@0__:".to_vec();
        channel.extend_from_slice(key);
        out.push((channel, event.as_bytes().to_vec()));
    }
    if flags & KEYEVENT != 0 {
        let channel = format!("__keyevent@0__:{event}").into_bytes();
        out.push((channel, key.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_normalise_as_redis_does() {
        for (given, shown) in [
            ("", ""),
            ("KEA", "AKE"),
            ("AKE", "AKE"),
            ("Elg", "glE"),
            ("g$lshzxetdKE", "AKE"),
            ("nKE", "nKE"),
            // Redis prints no `n` beside `A`.
            ("An", "A"),
            ("Kxm", "xKm"),
        ] {
            let flags = parse_flags(given.as_bytes()).expect(given);
            assert_eq!(flags_text(flags), shown, "{given}");
        }
        assert_eq!(parse_flags(b"KEq"), None);
        assert_eq!(parse_flags(b"k"), None);
    }

    #[test]
    fn nothing_is_published_without_a_channel_kind() {
        assert!(!publishes(ALL, STRING));
        assert!(publishes(ALL | KEYEVENT, STRING));
        assert!(!publishes(KEYSPACE | HASH, STRING));
        assert!(!publishes(ALL | KEYSPACE, NEW));
        let messages = messages(KEYSPACE | KEYEVENT, "set", b"k");
        assert_eq!(
            messages,
            vec![
                (b"__keyspace@0__:k".to_vec(), b"set".to_vec()),
                (b"__keyevent@0__:set".to_vec(), b"k".to_vec())
            ]
        );
    }
}
