//! CONFIG: GET answers the node's fixed settings that clients and tools
//! probe for, and the replicated limits of the coordination records; SET
//! changes those limits through the log (the same on every node); the
//! rest of lockstep is configured at start.

use bytes::Bytes;
use lockstep_engine::Reply;

use super::{is, text, Session};

/// Settings fixed for the life of a node, as Redis tools expect them.
const FIXED: [(&str, &str); 3] = [
    ("appendonly", "yes"),
    ("appendfsync", "always"),
    ("save", ""),
];

/// Settings of this node alone (as in Redis, each instance its own).
const LOCAL: [&str; 3] = [
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
];

fn is_local(name: &[u8]) -> bool {
    LOCAL.iter().any(|local| is(name, local))
}

/// Longest slow log a node keeps.
const MAX_SLOWLOG_LEN: i64 = 100_000;

impl Session {
    fn local_settings(&self) -> [(&'static str, String); 3] {
        let log = &self.context.slowlog;
        let latency = &self.context.latency;
        [
            (
                LOCAL[0],
                log.slower_than_us
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            (
                LOCAL[1],
                log.max_len
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            (
                LOCAL[2],
                latency
                    .threshold_ms
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
        ]
    }

    /// CONFIG SET of this node's own settings: all checked, then all set.
    fn set_local(&self, pairs: &[Bytes]) -> Reply {
        let mut parsed = Vec::new();
        for pair in pairs.chunks(2) {
            let Some(value) = std::str::from_utf8(&pair[1])
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
            else {
                return Reply::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - argument couldn't be parsed into an integer",
                    text(&pair[0])
                ));
            };
            let setting = LOCAL
                .iter()
                .position(|name| is(&pair[0], name))
                .expect("only local settings get here");
            let range = match setting {
                1 => Some(MAX_SLOWLOG_LEN),
                2 => Some(i64::MAX),
                _ => None,
            };
            if let Some(max) = range.filter(|max| !(0..=*max).contains(&value)) {
                return Reply::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - argument must be between 0 and {max} inclusive",
                    text(&pair[0])
                ));
            }
            parsed.push((setting, value));
        }
        let log = &self.context.slowlog;
        for (setting, value) in parsed {
            match setting {
                0 => log
                    .slower_than_us
                    .store(value, std::sync::atomic::Ordering::Relaxed),
                1 => log.set_max_len(value as usize),
                _ => self
                    .context
                    .latency
                    .threshold_ms
                    .store(value as u64, std::sync::atomic::Ordering::Relaxed),
            }
        }
        Reply::ok()
    }

    pub(super) async fn config(&mut self, args: &[Bytes]) -> Reply {
        let Some(sub) = args.first() else {
            return Reply::wrong_arity("config");
        };
        if is(sub, "get") {
            if args.len() < 2 {
                return Reply::error("ERR wrong number of arguments for 'config|get' command");
            }
            let mut pairs = Vec::new();
            for pattern in &args[1..] {
                for (name, value) in FIXED {
                    if lockstep_engine::glob_match(pattern, name.as_bytes()) {
                        pairs.push((Reply::bulk(name), Reply::bulk(value)));
                    }
                }
            }
            for (name, value) in self.local_settings() {
                if args[1..]
                    .iter()
                    .any(|pattern| lockstep_engine::glob_match(pattern, name.as_bytes()))
                {
                    pairs.push((Reply::bulk(name), Reply::bulk(value)));
                }
            }
            let mut argv = vec![Bytes::from_static(b"CONFIG.GET")];
            argv.extend_from_slice(&args[1..]);
            match self.engine_command(&argv).await {
                Reply::Map(limits) => pairs.extend(limits),
                error @ Reply::Error(_) => return error,
                _ => {}
            }
            Reply::Map(pairs)
        } else if is(sub, "set") {
            if args.len() < 3 || args.len().is_multiple_of(2) {
                return Reply::error("ERR wrong number of arguments for 'config|set' command");
            }
            if let [_, name, password] = args {
                if is(name, "requirepass") {
                    return self.set_requirepass(password).await;
                }
            }
            let local = args[1..]
                .iter()
                .step_by(2)
                .filter(|name| is_local(name))
                .count();
            if local > 0 {
                if local < args.len() / 2 {
                    return Reply::error(
                        "ERR set this node's own settings (slowlog-*, latency-monitor-threshold) apart from the replicated ones",
                    );
                }
                return self.set_local(&args[1..]);
            }
            if let Some(fixed) = args[1..]
                .iter()
                .step_by(2)
                .find(|name| !lockstep_engine::is_limit(name))
            {
                return Reply::error(if FIXED.iter().any(|(n, _)| is(fixed, n)) {
                    format!(
                        "ERR '{}' is fixed: lockstep is configured at start; CONFIG SET changes only the replicated limits",
                        text(fixed)
                    )
                } else {
                    format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        text(fixed)
                    )
                });
            }
            let mut argv = vec![Bytes::from_static(b"CONFIG.SET")];
            argv.extend_from_slice(&args[1..]);
            self.engine_command(&argv).await
        } else if is(sub, "resetstat") || is(sub, "rewrite") {
            Reply::error("ERR lockstep is configured at start; CONFIG SET changes only the replicated limits")
        } else {
            Reply::error(format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                text(sub)
            ))
        }
    }
}
