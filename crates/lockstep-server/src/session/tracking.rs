//! CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO, and the keys a
//! tracked read hands to this node's tracking table (see `tracking`).

use bytes::Bytes;
use lockstep_engine::Reply;

use super::{is, Session};
use crate::tracking::Options;

/// The keys a read-only command reads, from the command table's key
/// positions (scripts name theirs after numkeys and are not tracked).
fn read_keys(argv: &[Bytes]) -> Vec<Bytes> {
    let Some(spec) = lockstep_engine::lookup(&argv[0]) else {
        return Vec::new();
    };
    if spec.first_key <= 0 || spec.step <= 0 {
        return Vec::new();
    }
    let last = if spec.last_key < 0 {
        argv.len() as i32 + spec.last_key
    } else {
        spec.last_key
    };
    (spec.first_key..=last.min(argv.len() as i32 - 1))
        .step_by(spec.step as usize)
        .map(|at| argv[at as usize].clone())
        .collect()
}

impl Session {
    pub(super) fn tracking_command(&mut self, sub: &str, args: &[Bytes]) -> Reply {
        match sub {
            "tracking" => self.tracking_switch(args),
            "caching" => self.caching(args),
            "getredir" => match self.tracking.as_ref() {
                Some(options) => Reply::Integer(options.redirect.map_or(0, |id| id as i64)),
                None => Reply::Integer(-1),
            },
            "trackinginfo" => self.tracking_info(),
            _ => unreachable!("{sub} is not a tracking subcommand"),
        }
    }

    fn tracking_switch(&mut self, args: &[Bytes]) -> Reply {
        let Some(switch) = args.first() else {
            return Reply::error("ERR wrong number of arguments for 'client|tracking' command");
        };
        let mut options = Options::default();
        let mut rest = args[1..].iter();
        while let Some(option) = rest.next() {
            if is(option, "redirect") {
                let Some(id) = rest.next() else {
                    return Reply::syntax_error();
                };
                if options.redirect.is_some() {
                    return Reply::error("ERR A client can only redirect to a single other client");
                }
                let Some(id) = std::str::from_utf8(id)
                    .ok()
                    .and_then(|id| id.parse::<i64>().ok())
                else {
                    return Reply::not_integer();
                };
                if id != 0 {
                    if u64::try_from(id).map_or(true, |id| !self.context.tracking.exists(id)) {
                        return Reply::error(
                            "ERR The client ID you want redirect to does not exist",
                        );
                    }
                    options.redirect = Some(id as u64);
                }
            } else if is(option, "bcast") {
                options.bcast = true;
            } else if is(option, "optin") {
                options.optin = true;
            } else if is(option, "optout") {
                options.optout = true;
            } else if is(option, "noloop") {
                options.noloop = true;
            } else if is(option, "prefix") {
                let Some(prefix) = rest.next() else {
                    return Reply::syntax_error();
                };
                options.prefixes.push(prefix.clone());
            } else {
                return Reply::syntax_error();
            }
        }
        if is(switch, "off") {
            self.context.tracking.stop(self.id);
            self.tracking = None;
            self.caching = None;
            return Reply::ok();
        }
        if !is(switch, "on") {
            return Reply::syntax_error();
        }
        let refusal = if !options.bcast && !options.prefixes.is_empty() {
            Some("ERR PREFIX option requires BCAST mode to be enabled")
        } else if self
            .tracking
            .as_ref()
            .is_some_and(|old| old.bcast != options.bcast)
        {
            Some("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.")
        } else if options.bcast && (options.optin || options.optout) {
            Some("ERR OPTIN and OPTOUT are not compatible with BCAST")
        } else if options.optin && options.optout {
            Some("ERR You can't specify both OPTIN mode and OPTOUT mode")
        } else if self
            .tracking
            .as_ref()
            .is_some_and(|old| (options.optin && old.optout) || (options.optout && old.optin))
        {
            Some("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Reply::error(refusal);
        }
        self.context.tracking.start(self.id, options);
        self.tracking = self.context.tracking.options(self.id);
        Reply::ok()
    }

    fn caching(&mut self, args: &[Bytes]) -> Reply {
        let [choice] = args else {
            return Reply::error("ERR wrong number of arguments for 'client|caching' command");
        };
        let Some(options) = self.tracking.as_ref() else {
            return Reply::error(
                "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
            );
        };
        if is(choice, "yes") {
            if !options.optin {
                return Reply::error(
                    "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
                );
            }
        } else if is(choice, "no") {
            if !options.optout {
                return Reply::error(
                    "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
                );
            }
        } else {
            return Reply::syntax_error();
        }
        // It applies to the next command only.
        self.caching = Some(self.commands_run + 1);
        Reply::ok()
    }

    fn tracking_info(&self) -> Reply {
        let mut flags = Vec::new();
        let caching = self.caching == Some(self.commands_run);
        match &self.tracking {
            None => flags.push(Reply::bulk("off")),
            Some(options) => {
                flags.push(Reply::bulk("on"));
                if options.bcast {
                    flags.push(Reply::bulk("bcast"));
                }
                if options.optin {
                    flags.push(Reply::bulk("optin"));
                    if caching {
                        flags.push(Reply::bulk("caching-yes"));
                    }
                }
                if options.optout {
                    flags.push(Reply::bulk("optout"));
                    if caching {
                        flags.push(Reply::bulk("caching-no"));
                    }
                }
                if options.noloop {
                    flags.push(Reply::bulk("noloop"));
                }
                if options
                    .redirect
                    .is_some_and(|id| !self.context.tracking.exists(id))
                {
                    flags.push(Reply::bulk("broken_redirect"));
                }
            }
        }
        let redirect = match &self.tracking {
            Some(options) => options.redirect.map_or(0, |id| id as i64),
            None => -1,
        };
        let prefixes = match &self.tracking {
            Some(options) if options.bcast => {
                options.prefixes.iter().cloned().map(Reply::Bulk).collect()
            }
            _ => Vec::new(),
        };
        Reply::Map(vec![
            (Reply::bulk("flags"), Reply::Array(flags)),
            (Reply::bulk("redirect"), Reply::Integer(redirect)),
            (Reply::bulk("prefixes"), Reply::Array(prefixes)),
        ])
    }

    /// Before a read-only command runs: a tracking client (in default
    /// mode, and opted in or not opted out for this command) is
    /// remembered as caching its keys.
    pub(super) fn track_read(&self, argv: &[Bytes]) {
        let Some(options) = &self.tracking else {
            return;
        };
        if options.bcast {
            return;
        }
        let flagged = self.caching == Some(self.commands_run);
        let tracked = if options.optin {
            flagged
        } else if options.optout {
            !flagged
        } else {
            true
        };
        if tracked {
            let keys = read_keys(argv);
            if !keys.is_empty() {
                let index = self.context.node.delivered_index();
                self.context.tracking.remember(self.id, &keys, index);
            }
        }
    }

    /// Whether this connection drops invalidations caused by its own writes.
    pub fn noloop(&self) -> bool {
        self.tracking
            .as_ref()
            .is_some_and(|o| o.noloop && o.redirect.is_none())
    }
}
