//! MULTI / EXEC / WATCH: a transaction is one log entry, applied atomically
//! on every node; WATCH compares each key's modification index at apply, so
//! it holds across nodes and failovers.
//!
//! The server keeps the MULTI queue and the watched versions per connection
//! and proposes the whole transaction as one internal `EXEC` command:
//! `EXEC nwatch [key version]... ncommands [argc arg...]...`.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::parse_i64;
use crate::commands::{self, Command};
use crate::context::Context;
use crate::Reply;

#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    /// Watched keys and the modification index each had (0: absent).
    pub watches: Vec<(Bytes, u64)>,
    pub commands: Vec<Vec<Bytes>>,
}

/// The argument vector of the internal EXEC command for a transaction.
pub fn encode_exec(watches: &[(Bytes, u64)], commands: &[Vec<Bytes>]) -> Vec<Bytes> {
    let mut argv = vec![Bytes::from_static(b"EXEC")];
    argv.push(Bytes::from(watches.len().to_string()));
    for (key, version) in watches {
        argv.push(key.clone());
        argv.push(Bytes::from(version.to_string()));
    }
    argv.push(Bytes::from(commands.len().to_string()));
    for command in commands {
        argv.push(Bytes::from(command.len().to_string()));
        argv.extend(command.iter().cloned());
    }
    argv
}

pub fn parse_exec(args: &[Bytes]) -> Result<Transaction, Reply> {
    let malformed = || Reply::error("ERR EXEC without MULTI");
    let mut rest = args.iter();
    let count = |rest: &mut std::slice::Iter<'_, Bytes>| -> Result<usize, Reply> {
        rest.next()
            .and_then(|n| parse_i64(n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(malformed)
    };
    let watch_count = count(&mut rest)?;
    let mut watches = Vec::with_capacity(watch_count.min(1024));
    for _ in 0..watch_count {
        let key = rest.next().ok_or_else(malformed)?.clone();
        let version = rest
            .next()
            .and_then(|v| parse_i64(v))
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(malformed)?;
        watches.push((key, version));
    }
    let command_count = count(&mut rest)?;
    let mut commands = Vec::with_capacity(command_count.min(1024));
    for _ in 0..command_count {
        let argc = count(&mut rest)?;
        let mut argv = Vec::with_capacity(argc.min(1024));
        for _ in 0..argc {
            argv.push(rest.next().ok_or_else(malformed)?.clone());
        }
        commands.push(argv);
    }
    if rest.next().is_some() {
        return Err(malformed());
    }
    Ok(Transaction { watches, commands })
}

/// The version WATCH records for a key: its modification index, 0 if absent.
pub fn version(ctx: &Context<'_>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(ctx.record(key)?.map_or(0, |record| record.modified))
}

pub fn execute(ctx: &mut Context<'_>, transaction: Transaction) -> Result<Reply, StoreError> {
    ctx.forbid_parking();
    for (key, watched) in &transaction.watches {
        if version(ctx, key)? != *watched {
            return Ok(Reply::NilArray);
        }
    }
    let mut replies = Vec::with_capacity(transaction.commands.len());
    for argv in transaction.commands {
        replies.push(match commands::parse(&argv) {
            Ok((Command::Exec(_), _)) | Ok((Command::Watch(_), _)) => {
                Reply::error("ERR Command not allowed inside a transaction")
            }
            Ok((command, _)) => commands::execute(ctx, command)?,
            Err(reply) => reply,
        });
    }
    Ok(Reply::Array(replies))
}
