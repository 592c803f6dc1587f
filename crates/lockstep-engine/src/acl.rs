//! Users and their permissions (Redis's ACLs), as replicated records: the
//! rules of ACL SETUSER, the checks a command and its keys and channels
//! must pass, and the command categories.
//!
//! A user is one record (`u name`). Passwords reach the log only hashed
//! (`#` SHA-256 hex; the server turns `>password` into it). The server
//! checks every command against its connection's user before it is
//! proposed; a script's `redis.call`s are checked here, at apply, against
//! the user the server names in `ACL.AS user <command>`. With no record
//! for `default`, the default user may do everything without a password.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::context::Context;
use crate::spec::{self, Access};
use crate::{Event, Reply};

/// `u name` -> a user record.
pub const USER: u8 = b'u';

/// Most users, rules per user and patterns per user; longest rule.
pub const MAX_USERS: usize = 10_000;
pub const MAX_RULES: usize = 1_000;
pub const MAX_PATTERNS: usize = 1_000;
pub const MAX_RULE_BYTES: usize = 4_096;

/// Every category ACL CAT lists.
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "string",
    "hash",
    "list",
    "set",
    "sortedset",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    "lock",
    "lease",
    "election",
    "registry",
    "barrier",
    "namespace",
    "changes",
];

/// Commands the front end answers itself, with their categories.
const SERVER_COMMANDS: &[(&str, &[&str])] = &[
    ("quit", &["connection", "fast"]),
    ("ping", &["connection", "fast"]),
    ("echo", &["connection", "fast"]),
    ("select", &["connection", "fast"]),
    ("hello", &["connection", "fast"]),
    ("auth", &["connection", "fast"]),
    ("reset", &["connection", "fast"]),
    ("client", &["connection", "slow"]),
    ("command", &["connection", "slow"]),
    ("info", &["slow", "dangerous"]),
    ("role", &["admin", "fast", "dangerous"]),
    ("time", &["fast"]),
    ("readonly", &["connection", "fast"]),
    ("readwrite", &["connection", "fast"]),
    ("config", &["admin", "slow", "dangerous"]),
    ("subscribe", &["pubsub", "slow"]),
    ("psubscribe", &["pubsub", "slow"]),
    ("ssubscribe", &["pubsub", "slow"]),
    ("unsubscribe", &["pubsub", "slow"]),
    ("punsubscribe", &["pubsub", "slow"]),
    ("sunsubscribe", &["pubsub", "slow"]),
    ("pubsub", &["pubsub", "slow"]),
    ("multi", &["transaction", "fast"]),
    ("discard", &["transaction", "fast"]),
    ("unwatch", &["transaction", "fast"]),
    ("wait", &["slow", "blocking"]),
    ("waitaof", &["slow", "blocking"]),
    ("lease.bind", &["lease", "slow"]),
    ("lease.unbind", &["lease", "slow"]),
    ("znode.watch", &["namespace", "slow"]),
    ("znode.unwatch", &["namespace", "slow"]),
    ("changes.subscribe", &["changes", "slow"]),
    ("changes.unsubscribe", &["changes", "slow"]),
    ("cluster", &["admin", "slow", "dangerous"]),
    ("cluster.members", &["admin", "slow"]),
    ("cluster.add", &["admin", "slow", "dangerous"]),
    ("cluster.promote", &["admin", "slow", "dangerous"]),
    ("cluster.remove", &["admin", "slow", "dangerous"]),
    ("cluster.transfer", &["admin", "slow", "dangerous"]),
    ("cluster.backup", &["admin", "slow", "dangerous"]),
    ("slowlog", &["admin", "slow", "dangerous"]),
    ("latency", &["admin", "slow", "dangerous"]),
    ("monitor", &["admin", "slow", "dangerous"]),
    ("acl", &["admin", "slow", "dangerous"]),
];

/// Whether `name` (lowercase) is a command lockstep knows.
pub fn known_command(name: &str) -> bool {
    spec::lookup(name.as_bytes()).is_some() || SERVER_COMMANDS.iter().any(|(n, _)| *n == name)
}

/// Every command name lockstep knows.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    spec::COMMANDS
        .iter()
        .map(|spec| spec.name)
        .filter(|name| !name.starts_with("acl."))
        .chain(SERVER_COMMANDS.iter().map(|(name, _)| *name))
}

/// The categories of command `name` (lowercase).
pub fn categories(name: &str) -> Vec<&'static str> {
    if let Some((_, cats)) = SERVER_COMMANDS.iter().find(|(n, _)| *n == name) {
        return cats.to_vec();
    }
    let Some(spec) = spec::lookup(name.as_bytes()) else {
        return Vec::new();
    };
    let mut cats = vec![match spec.access {
        Access::Read => "read",
        Access::Write => "write",
    }];
    let family = match name {
        n if n.starts_with("lock.") => "lock",
        n if n.starts_with("lease.") => "lease",
        n if n.starts_with("elect.") => "election",
        n if n.starts_with("svc.") => "registry",
        n if n.starts_with("barrier.") => "barrier",
        n if n.starts_with("znode.") => "namespace",
        n if n.starts_with("changes.") || n == "xrange" || n == "xread" => "changes",
        "publish" | "spublish" => "pubsub",
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "script" => "scripting",
        "exec" | "watch" => "transaction",
        n if n.starts_with("acl.") => "dangerous",
        "flushall" | "flushdb" | "debug" | "keys" | "config.set" | "config.get" => "dangerous",
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "park" | "block.wait" => "blocking",
        n if n.starts_with('h') && n != "hello" => "hash",
        n if n.starts_with('z') => "sortedset",
        n if n.starts_with('s')
            && !matches!(
                n,
                "set" | "setnx" | "setex" | "setrange" | "strlen" | "scan" | "setbit"
            ) =>
        {
            "set"
        }
        n if n.starts_with('l')
            || n.starts_with("rpop")
            || n.starts_with("rpush")
            || n == "rpoplpush" =>
        {
            "list"
        }
        "del" | "unlink" | "exists" | "touch" | "type" | "expire" | "pexpire" | "expireat"
        | "pexpireat" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "persist" | "scan"
        | "dbsize" | "rename" | "renamenx" | "copy" | "object" | "fence" => "keyspace",
        _ => "string",
    };
    cats.push(family);
    if matches!(family, "dangerous") {
        cats.push("admin");
    }
    if matches!(family, "lock" | "election" | "barrier") && name.contains("acquire")
        || matches!(
            name,
            "elect.campaign"
                | "elect.observe"
                | "barrier.wait"
                | "barrier.enter"
                | "barrier.leave"
                | "lock.acquire"
        )
    {
        cats.push("blocking");
    }
    cats.push(
        if matches!(family, "dangerous" | "scripting" | "keyspace") {
            "slow"
        } else {
            "fast"
        },
    );
    cats
}

/// The keys a command names (for `~pattern` checks).
pub fn command_keys(argv: &[Bytes]) -> Vec<Bytes> {
    let Some(name) = argv.first() else {
        return Vec::new();
    };
    let Some(spec) = spec::lookup(name) else {
        return Vec::new();
    };
    if matches!(spec.name, "eval" | "evalsha" | "eval_ro" | "evalsha_ro") {
        let count = argv
            .get(2)
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        return argv.iter().skip(3).take(count).cloned().collect();
    }
    if spec.first_key <= 0 || spec.step <= 0 {
        return Vec::new();
    }
    let last = if spec.last_key < 0 {
        argv.len() as i64 + spec.last_key as i64
    } else {
        spec.last_key as i64
    };
    let mut keys = Vec::new();
    let mut at = spec.first_key as i64;
    while at <= last && (at as usize) < argv.len() {
        keys.push(argv[at as usize].clone());
        at += spec.step as i64;
    }
    keys
}

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: Bytes,
    pub enabled: bool,
    pub nopass: bool,
    /// SHA-256 hex of each password.
    pub passwords: Vec<String>,
    /// Command rules in order (`+@all`, `-flushall`, `+config|get`).
    pub rules: Vec<String>,
    pub keys: Vec<Bytes>,
    pub channels: Vec<Bytes>,
}

impl User {
    /// A new user as ACL SETUSER makes one: off, no password, nothing allowed.
    pub fn new(name: Bytes) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            rules: Vec::new(),
            keys: Vec::new(),
            channels: Vec::new(),
        }
    }

    /// The default user while no record exists: everything, no password.
    pub fn unrestricted_default() -> User {
        User {
            name: Bytes::from_static(b"default"),
            enabled: true,
            nopass: true,
            passwords: Vec::new(),
            rules: vec!["+@all".into()],
            keys: vec![Bytes::from_static(b"*")],
            channels: vec![Bytes::from_static(b"*")],
        }
    }

    /// May run everything on every key and channel (the checks can be
    /// skipped).
    pub fn unrestricted(&self) -> bool {
        self.rules.len() == 1
            && self.rules[0] == "+@all"
            && self.keys.iter().any(|k| k.as_ref() == b"*")
            && self.channels.iter().any(|c| c.as_ref() == b"*")
    }

    pub fn allows_command(&self, name: &str, sub: Option<&[u8]>) -> bool {
        let cats = categories(name);
        let mut allowed = false;
        for rule in &self.rules {
            let (plus, body) = rule.split_at(1);
            let plus = plus == "+";
            if body == "@all" {
                allowed = plus;
            } else if let Some(cat) = body.strip_prefix('@') {
                if cats.contains(&cat) {
                    allowed = plus;
                }
            } else if let Some((command, subcommand)) = body.split_once('|') {
                if command == name
                    && sub.is_some_and(|s| s.eq_ignore_ascii_case(subcommand.as_bytes()))
                {
                    allowed = plus;
                }
            } else if body == name {
                allowed = plus;
            }
        }
        allowed
    }

    pub fn allows_key(&self, key: &[u8]) -> bool {
        self.keys
            .iter()
            .any(|pattern| crate::glob_match(pattern, key))
    }

    pub fn allows_channel(&self, channel: &[u8]) -> bool {
        self.channels
            .iter()
            .any(|pattern| crate::glob_match(pattern, channel))
    }

    /// A PSUBSCRIBE pattern is allowed only as one of the user's own.
    pub fn allows_channel_pattern(&self, pattern: &[u8]) -> bool {
        self.channels
            .iter()
            .any(|own| own.as_ref() == b"*" || own.as_ref() == pattern)
    }

    /// Whether `password`'s SHA-256 hex is one of the user's.
    pub fn accepts(&self, password_sha256_hex: &str) -> bool {
        self.enabled && (self.nopass || self.passwords.iter().any(|p| p == password_sha256_hex))
    }

    /// Applies one ACL SETUSER rule.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), String> {
        let syntax = || "Syntax error".to_string();
        if rule.len() > MAX_RULE_BYTES {
            return Err(format!("a rule may have at most {MAX_RULE_BYTES} bytes"));
        }
        let text = std::str::from_utf8(rule).ok();
        let lower = text.map(str::to_ascii_lowercase);
        match lower.as_deref() {
            Some("on") => self.enabled = true,
            Some("off") => self.enabled = false,
            Some("nopass") => {
                self.passwords.clear();
                self.nopass = true;
            }
            Some("resetpass") => {
                self.passwords.clear();
                self.nopass = false;
            }
            Some("allkeys") => self.keys = vec![Bytes::from_static(b"*")],
            Some("resetkeys") => self.keys.clear(),
            Some("allchannels") => self.channels = vec![Bytes::from_static(b"*")],
            Some("resetchannels") => self.channels.clear(),
            Some("allcommands") => self.rules = vec!["+@all".into()],
            Some("nocommands") => self.rules.clear(),
            Some("reset") => {
                *self = User::new(self.name.clone());
            }
            _ => match rule.first() {
                Some(b'~') => push_pattern(&mut self.keys, &rule[1..])?,
                Some(b'&') => push_pattern(&mut self.channels, &rule[1..])?,
                Some(b'#') | Some(b'!') => {
                    let hash = text
                        .map(|t| t[1..].to_ascii_lowercase())
                        .ok_or_else(syntax)?;
                    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters".into());
                    }
                    if rule[0] == b'#' {
                        if !self.passwords.contains(&hash) {
                            self.passwords.push(hash);
                        }
                        self.nopass = false;
                    } else {
                        let before = self.passwords.len();
                        self.passwords.retain(|p| *p != hash);
                        if self.passwords.len() == before {
                            return Err(
                                "The password you are trying to remove from the user does not exist"
                                    .into(),
                            );
                        }
                    }
                }
                Some(b'>') | Some(b'<') => {
                    return Err("passwords reach the log only hashed ('#<sha256>')".into())
                }
                Some(b'+') | Some(b'-') => {
                    let lower = lower.ok_or_else(syntax)?;
                    let body = &lower[1..];
                    if let Some(cat) = body.strip_prefix('@') {
                        if cat != "all" && !CATEGORIES.contains(&cat) {
                            return Err("Unknown command or category name in ACL".into());
                        }
                        if cat == "all" {
                            self.rules.clear();
                        }
                    } else {
                        let command = body.split('|').next().unwrap_or("");
                        if !known_command(command) {
                            return Err("Unknown command or category name in ACL".into());
                        }
                    }
                    if self.rules.len() >= MAX_RULES {
                        return Err(format!("a user may have at most {MAX_RULES} command rules"));
                    }
                    self.rules.retain(|existing| existing[1..] != *body);
                    self.rules.push(lower);
                }
                _ => return Err(syntax()),
            },
        }
        Ok(())
    }

    /// The command rules as ACL GETUSER / LIST show them.
    pub fn rules_text(&self) -> String {
        if self.rules.is_empty() {
            "-@all".into()
        } else {
            self.rules.join(" ")
        }
    }

    fn patterns_text(prefix: char, patterns: &[Bytes]) -> String {
        patterns
            .iter()
            .map(|p| format!("{prefix}{}", String::from_utf8_lossy(p)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One line of ACL LIST.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("user {}", String::from_utf8_lossy(&self.name)),
            if self.enabled { "on" } else { "off" }.to_string(),
        ];
        if self.nopass {
            parts.push("nopass".into());
        }
        parts.extend(self.passwords.iter().map(|p| format!("#{p}")));
        if self.keys.is_empty() {
            parts.push("resetkeys".into());
        } else {
            parts.push(Self::patterns_text('~', &self.keys));
        }
        if self.channels.is_empty() {
            parts.push("resetchannels".into());
        } else {
            parts.push(Self::patterns_text('&', &self.channels));
        }
        parts.push(self.rules_text());
        parts.join(" ")
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8, u8::from(self.enabled), u8::from(self.nopass)];
        let mut list = |items: Vec<&[u8]>| {
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                out.extend_from_slice(&(item.len() as u32).to_be_bytes());
                out.extend_from_slice(item);
            }
        };
        list(self.passwords.iter().map(|p| p.as_bytes()).collect());
        list(self.rules.iter().map(|r| r.as_bytes()).collect());
        list(self.keys.iter().map(|k| k.as_ref()).collect());
        list(self.channels.iter().map(|c| c.as_ref()).collect());
        out
    }

    pub fn decode(name: Bytes, data: &[u8]) -> Result<User, StoreError> {
        let corrupt = || StoreError::corrupt("keyspace", "bad user record");
        if data.len() < 3 || data[0] != 1 {
            return Err(corrupt());
        }
        let mut rest = &data[3..];
        let take = |rest: &mut &[u8]| -> Result<Vec<Vec<u8>>, StoreError> {
            let count = read_u32(rest).ok_or_else(corrupt)? as usize;
            let mut items = Vec::with_capacity(count.min(MAX_PATTERNS));
            for _ in 0..count {
                let len = read_u32(rest).ok_or_else(corrupt)? as usize;
                if rest.len() < len {
                    return Err(corrupt());
                }
                items.push(rest[..len].to_vec());
                *rest = &rest[len..];
            }
            Ok(items)
        };
        let text = |items: Vec<Vec<u8>>| -> Result<Vec<String>, StoreError> {
            items
                .into_iter()
                .map(|item| String::from_utf8(item).map_err(|_| corrupt()))
                .collect()
        };
        let passwords = text(take(&mut rest)?)?;
        let rules = text(take(&mut rest)?)?;
        let keys = take(&mut rest)?.into_iter().map(Bytes::from).collect();
        let channels = take(&mut rest)?.into_iter().map(Bytes::from).collect();
        Ok(User {
            name,
            enabled: data[1] == 1,
            nopass: data[2] == 1,
            passwords,
            rules,
            keys,
            channels,
        })
    }
}

fn read_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_at_checked(4)?;
    *rest = tail;
    Some(u32::from_be_bytes(head.try_into().ok()?))
}

fn push_pattern(patterns: &mut Vec<Bytes>, pattern: &[u8]) -> Result<(), String> {
    if patterns.len() >= MAX_PATTERNS {
        return Err(format!(
            "a user may have at most {MAX_PATTERNS} patterns of a kind"
        ));
    }
    if !patterns.iter().any(|p| p.as_ref() == pattern) {
        patterns.push(Bytes::copy_from_slice(pattern));
    }
    Ok(())
}

pub fn user_key(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    out.push(USER);
    out.extend_from_slice(name);
    out
}

/// Reads user `name` (the default user is unrestricted while it has no
/// record).
pub fn load(ctx: &Context<'_>, name: &[u8]) -> Result<Option<User>, StoreError> {
    match ctx.raw_get(&user_key(name))? {
        Some(data) => Ok(Some(User::decode(Bytes::copy_from_slice(name), &data)?)),
        None if name == b"default" => Ok(Some(User::unrestricted_default())),
        None => Ok(None),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum AclCommand {
    SetUser(Bytes, Vec<Bytes>),
    DelUser(Vec<Bytes>),
    GetUser(Bytes),
    List,
    Users,
    /// The encoded record (for the server's cache), nil if none.
    Record(Bytes),
    /// Runs the inner command as this user (scripts check their calls).
    As(Bytes, Box<crate::commands::Command>),
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<AclCommand, Reply> {
    Ok(match name {
        "acl.setuser" => {
            if args[0].is_empty()
                || args[0]
                    .iter()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(Reply::error(
                    "ERR Usernames can't contain spaces or null characters",
                ));
            }
            if args.len() - 1 > MAX_RULES + 2 * MAX_PATTERNS + 16 {
                return Err(Reply::error("ERR too many rules in one ACL SETUSER"));
            }
            // Every rule is checked before anything is written.
            let mut probe = User::new(args[0].clone());
            for rule in &args[1..] {
                probe.apply(rule).map_err(|why| setuser_error(rule, &why))?;
            }
            AclCommand::SetUser(args[0].clone(), args[1..].to_vec())
        }
        "acl.deluser" => AclCommand::DelUser(args.to_vec()),
        "acl.getuser" => AclCommand::GetUser(args[0].clone()),
        "acl.list" => AclCommand::List,
        "acl.users" => AclCommand::Users,
        "acl.record" => AclCommand::Record(args[0].clone()),
        "acl.as" => {
            let (inner, _) = crate::commands::parse(&args[1..])?;
            AclCommand::As(args[0].clone(), Box::new(inner))
        }
        other => unreachable!("{other} is not an ACL command"),
    })
}

fn setuser_error(rule: &[u8], why: &str) -> Reply {
    Reply::error(format!(
        "ERR Error in ACL SETUSER modifier '{}': {why}",
        String::from_utf8_lossy(rule)
    ))
}

fn all_users(ctx: &Context<'_>) -> Result<Vec<User>, StoreError> {
    let mut users = Vec::new();
    let mut failed = None;
    ctx.raw_scan(&[USER], &[USER + 1], &mut |key, value| {
        match User::decode(Bytes::copy_from_slice(&key[1..]), value) {
            Ok(user) => users.push(user),
            Err(err) => failed = Some(err),
        }
        true
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    if !users.iter().any(|user| user.name.as_ref() == b"default") {
        users.push(User::unrestricted_default());
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}

pub fn execute(ctx: &mut Context<'_>, command: AclCommand) -> Result<Reply, StoreError> {
    Ok(match command {
        AclCommand::SetUser(name, rules) => {
            let existing = ctx.raw_get(&user_key(&name))?;
            let mut user = match existing {
                Some(data) => User::decode(name.clone(), &data)?,
                None if name.as_ref() == b"default" => User::unrestricted_default(),
                None => {
                    let mut count = 0;
                    ctx.raw_scan(&[USER], &[USER + 1], &mut |_, _| {
                        count += 1;
                        count <= MAX_USERS
                    })?;
                    if count >= MAX_USERS {
                        return Ok(Reply::error(format!(
                            "ERR at most {MAX_USERS} users; delete one first"
                        )));
                    }
                    User::new(name.clone())
                }
            };
            for rule in &rules {
                if let Err(why) = user.apply(rule) {
                    return Ok(setuser_error(rule, &why));
                }
            }
            ctx.raw_put(user_key(&name), user.encode());
            ctx.push_event(Event::AclChanged { user: name });
            Reply::ok()
        }
        AclCommand::DelUser(names) => {
            if names.iter().any(|name| name.as_ref() == b"default") {
                return Ok(Reply::error("ERR The 'default' user cannot be removed"));
            }
            let mut deleted = 0;
            for name in names {
                if ctx.raw_get(&user_key(&name))?.is_some() {
                    ctx.raw_delete(user_key(&name));
                    ctx.push_event(Event::AclChanged { user: name });
                    deleted += 1;
                }
            }
            Reply::Integer(deleted)
        }
        AclCommand::GetUser(name) => match load(ctx, &name)? {
            None => Reply::Nil,
            Some(user) => {
                let mut flags = vec![Reply::bulk(if user.enabled { "on" } else { "off" })];
                if user.nopass {
                    flags.push(Reply::bulk("nopass"));
                }
                let patterns =
                    |prefix: char, list: &[Bytes]| Reply::bulk(User::patterns_text(prefix, list));
                Reply::Map(vec![
                    (Reply::bulk("flags"), Reply::Array(flags)),
                    (
                        Reply::bulk("passwords"),
                        Reply::Array(
                            user.passwords
                                .iter()
                                .map(|p| Reply::bulk(p.clone()))
                                .collect(),
                        ),
                    ),
                    (Reply::bulk("commands"), Reply::bulk(user.rules_text())),
                    (Reply::bulk("keys"), patterns('~', &user.keys)),
                    (Reply::bulk("channels"), patterns('&', &user.channels)),
                    (Reply::bulk("selectors"), Reply::Array(Vec::new())),
                ])
            }
        },
        AclCommand::List => Reply::Array(
            all_users(ctx)?
                .iter()
                .map(|user| Reply::bulk(user.describe()))
                .collect(),
        ),
        AclCommand::Users => Reply::Array(
            all_users(ctx)?
                .into_iter()
                .map(|user| Reply::Bulk(user.name))
                .collect(),
        ),
        AclCommand::Record(name) => match ctx.raw_get(&user_key(&name))? {
            Some(data) => Reply::Bulk(Bytes::from(data)),
            None => Reply::Nil,
        },
        AclCommand::As(name, inner) => {
            let user = load(ctx, &name)?.filter(|user| user.enabled);
            let Some(user) = user else {
                return Ok(Reply::error(
                    "NOPERM the user executing this command is disabled or no longer exists",
                ));
            };
            let previous = ctx.acl_user.replace(user);
            let reply = crate::commands::execute(ctx, *inner);
            ctx.acl_user = previous;
            reply?
        }
    })
}

/// Checks a script's `redis.call` against the user running the script:
/// the error its call returns, if it may not.
pub fn check_call(user: &User, argv: &[Bytes]) -> Option<Reply> {
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    if !user.allows_command(&name, argv.get(1).map(|a| a.as_ref())) {
        return Some(Reply::error(format!(
            "NOPERM User {} has no permissions to run the '{name}' command",
            String::from_utf8_lossy(&user.name)
        )));
    }
    for key in command_keys(argv) {
        if !user.allows_key(&key) {
            return Some(Reply::error("NOPERM No permissions to access a key"));
        }
    }
    if matches!(name.as_str(), "publish" | "spublish") {
        if let Some(channel) = argv.get(1) {
            if !user.allows_channel(channel) {
                return Some(Reply::error("NOPERM No permissions to access a channel"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut user = User::new(Bytes::from_static(b"u"));
        for rule in rules {
            user.apply(rule.as_bytes()).unwrap();
        }
        user
    }

    #[test]
    fn rules_apply_in_order() {
        let u = user(&["on", "+@all", "-flushall", "~app:*", "&news"]);
        assert!(u.allows_command("get", None));
        assert!(!u.allows_command("flushall", None));
        assert!(u.allows_key(b"app:1") && !u.allows_key(b"other"));
        assert!(u.allows_channel(b"news") && !u.allows_channel(b"x"));
        let r = user(&["+@read", "+config|get"]);
        assert!(r.allows_command("get", None));
        assert!(!r.allows_command("set", None));
        assert!(r.allows_command("config", Some(b"GET")));
        assert!(!r.allows_command("config", Some(b"set")));
        let n = user(&["+@all", "nocommands"]);
        assert!(!n.allows_command("get", None));
        assert_eq!(n.rules_text(), "-@all");
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut u = User::new(Bytes::from_static(b"u"));
        for bad in [
            "+nosuchcmd",
            "+@nosuchcat",
            ">plain",
            "#abc",
            "bogus",
            "!00",
        ] {
            assert!(u.apply(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(u.apply(&vec![b'~'; MAX_RULE_BYTES + 1]).is_err());
    }

    #[test]
    fn records_round_trip() {
        let u = user(&["on", &format!("#{}", "a".repeat(64)), "+@all", "~k*", "&c"]);
        let back = User::decode(u.name.clone(), &u.encode()).unwrap();
        assert_eq!(back, u);
        assert!(User::decode(u.name.clone(), &u.encode()[..5]).is_err());
    }

    #[test]
    fn keys_come_from_the_command_table() {
        let argv = |items: &[&str]| -> Vec<Bytes> {
            items
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        assert_eq!(
            command_keys(&argv(&["MSET", "a", "1", "b", "2"])),
            argv(&["a", "b"])
        );
        assert_eq!(
            command_keys(&argv(&["EVAL", "s", "2", "x", "y", "z"])),
            argv(&["x", "y"])
        );
        assert_eq!(command_keys(&argv(&["GET", "k"])), argv(&["k"]));
    }
}
