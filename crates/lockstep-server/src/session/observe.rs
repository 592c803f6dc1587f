//! What operators watch a node with: every command is counted and timed
//! (metrics, INFO commandstats / errorstats), logged when slow (SLOWLOG),
//! its spikes kept (LATENCY), and shown to MONITOR connections; CLIENT
//! KILL closes connections.

use std::time::Instant;

use bytes::Bytes;
use lockstep_engine::Reply;

use super::{is, text, Session};
use crate::metrics::command_label;

/// Commands MONITOR does not show (they carry passwords), as Redis.
fn is_sensitive(name: &str) -> bool {
    matches!(name, "auth" | "hello" | "acl" | "migrate")
}

/// One CLIENT KILL filter.
type Filter = Box<dyn Fn(&crate::clients::ClientInfo) -> bool>;

impl Session {
    /// Runs one command; the flag says whether to close the connection
    /// after replying.
    pub async fn execute(&mut self, argv: Vec<Bytes>) -> (Reply, bool) {
        let started = Instant::now();
        let name = String::from_utf8_lossy(&argv[0].to_ascii_lowercase()).into_owned();
        if self.context.monitors.active() && !is_sensitive(&name) {
            self.context.monitors.post(self.id, &self.addr, &argv);
        }
        let (reply, close) =
            if self.monitoring && !matches!(name.as_str(), "quit" | "reset" | "ping" | "monitor") {
                (
                    Reply::error("ERR a MONITOR connection only takes QUIT, RESET and PING"),
                    false,
                )
            } else {
                self.run_command(&name, &argv).await
            };
        // One clock reading serves the timing and the client's last activity.
        let finished = Instant::now();
        let elapsed = finished.saturating_duration_since(started);
        let label = command_label(&name);
        let error = match &reply {
            Reply::Error(message) => Some(message.as_str()),
            _ => None,
        };
        self.context.metrics.observe(label, elapsed, error);
        let slowlog = &self.context.slowlog;
        // A blocking command's wait is not slowness (Redis leaves it out
        // too).
        let waits = super::may_wait(&argv);
        if !waits {
            self.context.latency.record("command", elapsed);
        }
        if slowlog.wants(elapsed) && !waits {
            let client_name = self
                .context
                .clients
                .get(self.id)
                .map(|client| client.name)
                .unwrap_or_default();
            // Passwords stay out of the slow log.
            let shown = if is_sensitive(&name) {
                vec![argv[0].clone(), Bytes::from_static(b"(redacted)")]
            } else {
                argv.clone()
            };
            slowlog.record(&shown, elapsed, self.addr.clone(), client_name);
        }
        let subscriptions = self.subscriptions.counts();
        let (multi, watched) = self.transaction.sizes();
        let mut flags = String::new();
        if subscriptions != (0, 0, 0) {
            flags.push('P');
        }
        if multi.is_some() {
            flags.push('x');
        }
        if self.tracking.is_some() {
            flags.push('t');
        }
        if self.monitoring {
            flags.push('O');
        }
        self.context.clients.update(self.id, |client| {
            client.last_command = label.to_string();
            client.last_active = finished;
            client.subscriptions = subscriptions;
            client.multi = multi;
            client.watched = watched;
            client.flags = flags;
        });
        (reply, close)
    }

    /// SLOWLOG, LATENCY and MONITOR.
    pub(super) fn observe_command(&mut self, name: &str, args: &[Bytes]) -> Reply {
        match name {
            "monitor" => {
                if !args.is_empty() {
                    return Reply::wrong_arity("monitor");
                }
                self.monitoring = true;
                self.context
                    .monitors
                    .add(self.id, self.subscriptions.mailbox().clone());
                Reply::ok()
            }
            "latency" => self.latency(args),
            _ => self.slowlog(args),
        }
    }

    fn latency(&self, args: &[Bytes]) -> Reply {
        let monitor = &self.context.latency;
        let Some(sub) = args.first() else {
            return Reply::wrong_arity("latency");
        };
        let sub_name = text(sub).to_ascii_lowercase();
        match (sub_name.as_str(), &args[1..]) {
            ("latest", []) => Reply::Array(
                monitor
                    .events()
                    .into_iter()
                    .filter_map(|(name, series)| {
                        let (at, ms) = *series.samples.back()?;
                        Some(Reply::Array(vec![
                            Reply::bulk(name),
                            Reply::Integer(at as i64),
                            Reply::Integer(ms as i64),
                            Reply::Integer(series.max_ms as i64),
                        ]))
                    })
                    .collect(),
            ),
            ("history", [event]) => Reply::Array(
                monitor
                    .history(&text(event))
                    .into_iter()
                    .map(|(at, ms)| {
                        Reply::Array(vec![Reply::Integer(at as i64), Reply::Integer(ms as i64)])
                    })
                    .collect(),
            ),
            ("reset", events) => {
                let names: Vec<String> = events.iter().map(|event| text(event)).collect();
                Reply::Integer(monitor.reset(&names) as i64)
            }
            ("doctor", []) => {
                let threshold = monitor
                    .threshold_ms
                    .load(std::sync::atomic::Ordering::Relaxed);
                let mut report = String::new();
                if threshold == 0 {
                    report.push_str(
                        "The latency monitor is off on this node. Turn it on with \
                         CONFIG SET latency-monitor-threshold <milliseconds>.\n",
                    );
                }
                let events = monitor.events();
                if events.is_empty() {
                    report.push_str("No latency spikes were recorded on this node.\n");
                }
                for (name, series) in events {
                    let total: u64 = series.samples.iter().map(|(_, ms)| ms).sum();
                    let count = series.samples.len() as u64;
                    report.push_str(&format!(
                        "{name}: {count} spikes of {threshold} ms or more (average {} ms, \
                         worst {} ms). Look at SLOWLOG GET for the commands; a slow \
                         write is usually the disk's fsync (lockstep_raft_fsync_seconds).\n",
                        total / count.max(1),
                        series.max_ms
                    ));
                }
                Reply::bulk(report)
            }
            ("help", []) => Reply::Array(
                [
                    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "DOCTOR",
                    "    Return a human readable latency analysis report.",
                    "HISTORY <event>",
                    "    Return time-latency samples for the <event> class.",
                    "LATEST",
                    "    Return the latest latency samples for all events.",
                    "RESET [<event> ...]",
                    "    Reset latency data of one or more <event> classes.",
                    "    (default: reset all data for all event classes)",
                    "HELP",
                    "    Print this help.",
                ]
                .into_iter()
                .map(|line| Reply::Status(line.into()))
                .collect(),
            ),
            ("latest" | "history" | "doctor" | "help", _) => Reply::error(format!(
                "ERR wrong number of arguments for 'latency|{sub_name}' command"
            )),
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try LATENCY HELP.",
                text(sub)
            )),
        }
    }

    fn slowlog(&self, args: &[Bytes]) -> Reply {
        let log = &self.context.slowlog;
        let Some(sub) = args.first() else {
            return Reply::wrong_arity("slowlog");
        };
        let sub_name = text(sub).to_ascii_lowercase();
        match (sub_name.as_str(), &args[1..]) {
            ("get", rest) if rest.len() <= 1 => {
                let count = match rest.first() {
                    None => Some(10),
                    Some(count) => match text(count).parse::<i64>() {
                        Ok(-1) => None,
                        Ok(n) if n >= 0 => Some(n as usize),
                        _ => {
                            return Reply::error("ERR count should be greater than or equal to -1")
                        }
                    },
                };
                Reply::Array(
                    log.newest(count)
                        .into_iter()
                        .map(|entry| {
                            Reply::Array(vec![
                                Reply::Integer(entry.id as i64),
                                Reply::Integer(entry.at_unix_secs as i64),
                                Reply::Integer(entry.micros as i64),
                                Reply::Array(entry.argv.into_iter().map(Reply::Bulk).collect()),
                                Reply::bulk(entry.client),
                                Reply::bulk(entry.name),
                            ])
                        })
                        .collect(),
                )
            }
            ("len", []) => Reply::Integer(log.len() as i64),
            ("reset", []) => {
                log.reset();
                Reply::ok()
            }
            ("help", []) => Reply::Array(
                [
                    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GET [<count>]",
                    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "LEN",
                    "    Return the length of the slowlog.",
                    "RESET",
                    "    Reset the slowlog.",
                    "HELP",
                    "    Print this help.",
                ]
                .into_iter()
                .map(|line| Reply::Status(line.into()))
                .collect(),
            ),
            ("get" | "len" | "reset" | "help", _) => Reply::error(format!(
                "ERR wrong number of arguments for 'slowlog|{sub_name}' command"
            )),
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try SLOWLOG HELP.",
                text(sub)
            )),
        }
    }

    /// CLIENT KILL addr (old form: OK or an error) or CLIENT KILL with
    /// filters (ID, ADDR, LADDR, USER, SKIPME, MAXAGE; the count killed).
    pub(super) fn client_kill(&self, args: &[Bytes]) -> Reply {
        let clients = self.context.clients.all();
        if let [addr] = args {
            let addr = text(addr);
            return match clients
                .iter()
                .find(|client| client.addr.to_string() == addr)
            {
                Some(client) => {
                    client.kill.notify_one();
                    Reply::ok()
                }
                None => Reply::error("ERR No such client"),
            };
        }
        if args.is_empty() || !args.len().is_multiple_of(2) {
            return Reply::syntax_error();
        }
        let mut skip_me = true;
        let mut filters: Vec<Filter> = Vec::new();
        for pair in args.chunks(2) {
            let value = text(&pair[1]);
            if is(&pair[0], "id") {
                let Ok(id) = value.parse::<u64>() else {
                    return Reply::error("ERR client-id should be greater than 0");
                };
                filters.push(Box::new(move |client| client.id == id));
            } else if is(&pair[0], "addr") {
                filters.push(Box::new(move |client| client.addr.to_string() == value));
            } else if is(&pair[0], "laddr") {
                filters.push(Box::new(move |client| client.local.to_string() == value));
            } else if is(&pair[0], "user") {
                filters.push(Box::new(move |client| {
                    let user = if client.user.is_empty() {
                        "default"
                    } else {
                        &client.user
                    };
                    user == value
                }));
            } else if is(&pair[0], "maxage") {
                let Ok(age) = value.parse::<u64>() else {
                    return Reply::not_integer();
                };
                filters.push(Box::new(move |client| {
                    client.connected_at.elapsed().as_secs() >= age
                }));
            } else if is(&pair[0], "skipme") {
                skip_me = match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Reply::syntax_error(),
                };
            } else {
                return Reply::syntax_error();
            }
        }
        let mut killed = 0;
        for client in &clients {
            if skip_me && client.id == self.id {
                continue;
            }
            if filters.iter().all(|filter| filter(client)) {
                client.kill.notify_one();
                killed += 1;
            }
        }
        Reply::Integer(killed)
    }
}
