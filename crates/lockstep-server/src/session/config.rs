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

impl Session {
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
