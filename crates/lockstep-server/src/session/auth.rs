//! Who a connection is and what it may do: AUTH and HELLO ... AUTH, the
//! check every command passes before it is parsed into the log (NOAUTH,
//! NOPERM, as Redis words them), and ACL. Users are replicated records
//! (the engine's `acl`); this node caches them (`crate::acl`).

use std::sync::Arc;

use bytes::Bytes;
use lockstep_engine::acl::{self, User};
use lockstep_engine::Reply;

use super::{is, text, Session};
use crate::acl::password_hash;

/// Commands a connection may send before it authenticates.
fn allowed_unauthenticated(name: &str) -> bool {
    matches!(name, "auth" | "hello" | "quit" | "reset")
}

fn is_script(name: &str) -> bool {
    matches!(name, "eval" | "evalsha" | "eval_ro" | "evalsha_ro")
}

impl Session {
    /// The user this connection runs as now (a changed or deleted user
    /// counts at once), or None if it has not authenticated.
    pub(super) fn current_user(&self) -> Option<Arc<User>> {
        let name = self.user_name.as_ref()?;
        self.context
            .acl
            .user(&self.context.node, name)
            .filter(|user| user.enabled)
    }

    /// The user a new connection starts as: the default user, if it needs
    /// no password.
    pub(super) fn initial_user(&self) -> Option<Bytes> {
        let default = self.context.acl.user(&self.context.node, b"default")?;
        (default.enabled && default.nopass).then(|| Bytes::from_static(b"default"))
    }

    /// Checks `argv` for this connection's user; the reply that refuses it.
    pub(super) fn check_permission(
        &self,
        name: &str,
        argv: &[Bytes],
        in_multi: bool,
    ) -> Option<Reply> {
        let Some(user) = self.current_user() else {
            if allowed_unauthenticated(name) {
                return None;
            }
            return Some(Reply::error("NOAUTH Authentication required."));
        };
        if name == "acl.as" {
            // Only the server names the user a script runs as.
            return Some(lockstep_engine::unknown_command(argv));
        }
        if user.unrestricted() || matches!(name, "auth" | "hello" | "quit" | "reset") {
            return None;
        }
        let context = if in_multi { "multi" } else { "toplevel" };
        let user_name = String::from_utf8_lossy(&user.name).into_owned();
        let deny = |reason: &'static str, object: String, reply: Reply| {
            self.context.acl.log(
                reason,
                context,
                object,
                user_name.clone(),
                self.addr.clone(),
            );
            Some(reply)
        };
        let sub = argv.get(1).map(|arg| arg.as_ref());
        if !user.allows_command(name, sub) {
            return deny(
                "command",
                name.to_string(),
                Reply::error(format!(
                    "NOPERM User {user_name} has no permissions to run the '{name}' command"
                )),
            );
        }
        for key in acl::command_keys(argv) {
            if !user.allows_key(&key) {
                return deny(
                    "key",
                    String::from_utf8_lossy(&key).into_owned(),
                    Reply::error("NOPERM No permissions to access a key"),
                );
            }
        }
        let channels: &[Bytes] = match name {
            "publish" | "spublish" => &argv[1..argv.len().min(2)],
            "subscribe" | "ssubscribe" => &argv[1..],
            _ => &[],
        };
        for channel in channels {
            if !user.allows_channel(channel) {
                return deny(
                    "channel",
                    String::from_utf8_lossy(channel).into_owned(),
                    Reply::error("NOPERM No permissions to access a channel"),
                );
            }
        }
        if name == "psubscribe" {
            for pattern in &argv[1..] {
                if !user.allows_channel_pattern(pattern) {
                    return deny(
                        "channel",
                        String::from_utf8_lossy(pattern).into_owned(),
                        Reply::error("NOPERM No permissions to access a channel"),
                    );
                }
            }
        }
        None
    }

    /// A script of a restricted user runs as `ACL.AS user <script>`, so
    /// its `redis.call`s are checked at apply.
    pub(super) fn as_user(&self, name: &str, argv: &[Bytes]) -> Option<Vec<Bytes>> {
        if !is_script(name) {
            return None;
        }
        let user = self.current_user()?;
        if user.unrestricted() {
            return None;
        }
        let mut wrapped = vec![Bytes::from_static(b"ACL.AS"), user.name.clone()];
        wrapped.extend_from_slice(argv);
        Some(wrapped)
    }

    /// Checks a user name and password; the user on success.
    fn authenticate(&self, user: &[u8], password: &[u8]) -> Result<Bytes, Reply> {
        let hash = password_hash(password);
        match self.context.acl.user(&self.context.node, user) {
            Some(found) if found.accepts(&hash) => Ok(found.name.clone()),
            _ => {
                self.context.acl.log(
                    "auth",
                    "toplevel",
                    "AUTH".into(),
                    text(user),
                    self.addr.clone(),
                );
                Err(Reply::error(
                    "WRONGPASS invalid username-password pair or user is disabled.",
                ))
            }
        }
    }

    fn become_user(&mut self, name: Bytes) {
        let shown = text(&name);
        self.user_name = Some(name);
        self.context
            .clients
            .update(self.id, |client| client.user = shown);
    }

    /// AUTH password / AUTH user password.
    pub(super) fn auth(&mut self, args: &[Bytes]) -> Reply {
        let (user, password): (&[u8], &[u8]) = match args {
            [password] => (b"default", password),
            [user, password] => (user, password),
            _ => return Reply::wrong_arity("auth"),
        };
        if args.len() == 1 {
            let default = self.context.acl.user(&self.context.node, b"default");
            if default.is_some_and(|d| d.nopass) {
                return Reply::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                );
            }
        }
        match self.authenticate(user, password) {
            Ok(name) => {
                self.become_user(name);
                Reply::ok()
            }
            Err(reply) => reply,
        }
    }

    /// HELLO's AUTH option, checked before anything else HELLO does.
    pub(super) fn hello_auth(&mut self, args: &[Bytes]) -> Result<(), Reply> {
        let mut rest = args.iter().skip(1);
        while let Some(option) = rest.next() {
            if is(option, "auth") {
                let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                    return Err(Reply::syntax_error());
                };
                let name = self.authenticate(user, password)?;
                self.become_user(name);
            } else if is(option, "setname") {
                rest.next();
            }
        }
        if self.current_user().is_none() {
            return Err(Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            ));
        }
        Ok(())
    }

    /// ACL subcommands: the replicated ones go through the engine (with
    /// passwords hashed first); WHOAMI, CAT and LOG are this node's.
    pub(super) async fn acl(&mut self, args: &[Bytes]) -> Reply {
        let Some(sub) = args.first() else {
            return Reply::wrong_arity("acl");
        };
        let sub_name = text(sub).to_ascii_lowercase();
        let rest = &args[1..];
        let internal = |name: &'static str, rest: &[Bytes]| {
            let mut argv = vec![Bytes::from_static(name.as_bytes())];
            argv.extend_from_slice(rest);
            argv
        };
        match (sub_name.as_str(), rest) {
            ("setuser", [_, ..]) => {
                let mut argv = vec![Bytes::from_static(b"ACL.SETUSER"), rest[0].clone()];
                for rule in &rest[1..] {
                    argv.push(match rule.first() {
                        // Only the hash reaches the log.
                        Some(b'>') => Bytes::from(format!("#{}", password_hash(&rule[1..]))),
                        Some(b'<') => Bytes::from(format!("!{}", password_hash(&rule[1..]))),
                        _ => rule.clone(),
                    });
                }
                self.engine_command(&argv).await
            }
            ("deluser", [_, ..]) => {
                let reply = self.engine_command(&internal("ACL.DELUSER", rest)).await;
                if let Reply::Integer(n) = reply {
                    if n > 0 {
                        // Redis disconnects the deleted users' clients.
                        for client in self.context.clients.all() {
                            if rest
                                .iter()
                                .any(|name| name.as_ref() == client.user.as_bytes())
                            {
                                client.kill.notify_one();
                            }
                        }
                    }
                }
                reply
            }
            ("getuser", [_]) => self.engine_command(&internal("ACL.GETUSER", rest)).await,
            ("list", []) => self.engine_command(&internal("ACL.LIST", rest)).await,
            ("users", []) => self.engine_command(&internal("ACL.USERS", rest)).await,
            ("whoami", []) => match &self.user_name {
                Some(name) => Reply::Bulk(name.clone()),
                None => Reply::error("NOAUTH Authentication required."),
            },
            ("cat", []) => Reply::Array(
                acl::CATEGORIES
                    .iter()
                    .map(|cat| Reply::bulk(*cat))
                    .collect(),
            ),
            ("cat", [category]) => {
                let category = text(category).to_ascii_lowercase();
                if !acl::CATEGORIES.contains(&category.as_str()) {
                    return Reply::error(format!("ERR Unknown category '{category}'"));
                }
                let mut names: Vec<&str> = acl::command_names()
                    .filter(|name| acl::categories(name).contains(&category.as_str()))
                    .collect();
                names.sort_unstable();
                names.dedup();
                Reply::Array(names.into_iter().map(Reply::bulk).collect())
            }
            ("log", []) => self.context.acl.log_reply(10),
            ("log", [arg]) if is(arg, "reset") => {
                self.context.acl.reset_log();
                Reply::ok()
            }
            ("log", [count]) => match text(count).parse::<usize>() {
                Ok(n) => self.context.acl.log_reply(n),
                Err(_) => Reply::error("ERR value is out of range, must be positive"),
            },
            ("help", []) => Reply::Array(
                [
                    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "SETUSER <username> <attribute> [<attribute> ...]",
                    "DELUSER <username> [<username> ...]",
                    "GETUSER <username>",
                    "LIST",
                    "USERS",
                    "WHOAMI",
                    "CAT [<category>]",
                    "LOG [<count> | RESET]",
                ]
                .into_iter()
                .map(|line| Reply::Status(line.into()))
                .collect(),
            ),
            (
                "setuser" | "deluser" | "getuser" | "list" | "users" | "whoami" | "cat" | "log"
                | "help",
                _,
            ) => Reply::error(format!(
                "ERR wrong number of arguments for 'acl|{sub_name}' command"
            )),
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try ACL HELP.",
                text(sub)
            )),
        }
    }

    /// CONFIG SET requirepass: the default user's password, replicated.
    pub(super) async fn set_requirepass(&mut self, password: &[u8]) -> Reply {
        let rule = if password.is_empty() {
            Bytes::from_static(b"nopass")
        } else {
            Bytes::from(format!("#{}", password_hash(password)))
        };
        self.engine_command(&[
            Bytes::from_static(b"ACL.SETUSER"),
            Bytes::from_static(b"default"),
            Bytes::from_static(b"resetpass"),
            rule,
        ])
        .await
    }
}
