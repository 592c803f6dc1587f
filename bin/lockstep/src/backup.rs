//! `lockstep backup` and `lockstep restore`: a consistent copy of a running
//! cluster's keyspace in one checked file, and the data dirs of a new
//! cluster made from it (as `etcdutl snapshot restore` does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lockstep_raft::backup::{decode_backup, restore_backup};
use lockstep_raft::{MemberAddrs, Members};
use lockstep_store::RocksStore;

use crate::config::parse_addr_map;

/// Take a backup of a running cluster through any node's client port.
#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    /// Any member's client address.
    #[arg(long, default_value = "127.0.0.1:6379", value_name = "HOST:PORT")]
    pub from: String,
    /// The file to write; an existing file is replaced only by a complete,
    /// checked backup.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// AUTH as this user (with --password).
    #[arg(long, default_value = "default")]
    pub user: String,
    /// AUTH with this password (or the LOCKSTEP_PASSWORD environment variable).
    #[arg(long)]
    pub password: Option<String>,
}

/// Prepare a data dir of a new cluster from a backup.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup file (from `lockstep backup`).
    pub file: PathBuf,
    /// The new node's data dir (must not hold a node yet).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id.
    #[arg(long)]
    pub id: u64,
    /// The new cluster's voters and their peer addresses: 1=host:port,...
    #[arg(long)]
    pub peers: String,
    /// Their client addresses (for ROLE, INFO, CLUSTER.MEMBERS): 1=host:port,...
    #[arg(long)]
    pub client_addrs: Option<String>,
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let file: Vec<u8> = runtime.block_on(async {
        let client = redis::Client::open(format!("redis://{}/", args.from))?;
        let mut connection = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(anyhow::Error::from)
        .and_then(|connected| connected.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to {}", args.from))?;
        let password = args
            .password
            .clone()
            .or_else(|| std::env::var("LOCKSTEP_PASSWORD").ok());
        if let Some(password) = &password {
            redis::cmd("AUTH")
                .arg(&args.user)
                .arg(password)
                .query_async::<()>(&mut connection)
                .await
                .context("AUTH")?;
        }
        let reply = tokio::time::timeout(
            Duration::from_secs(args.timeout_secs),
            redis::cmd("CLUSTER.BACKUP").query_async::<Vec<u8>>(&mut connection),
        )
        .await
        .context("timed out waiting for the backup")?;
        anyhow::Ok(reply.with_context(|| format!("CLUSTER.BACKUP on {}", args.from))?)
    })?;
    // Check what arrived before it replaces anything.
    let checked = decode_backup(&file).map_err(anyhow::Error::msg)?;
    let dir = args
        .out
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = args.out.with_extension("partial");
    {
        let mut out = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        out.write_all(&file)?;
        out.sync_all()?;
    }
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    sync_dir(dir)?;
    let info = &checked.info;
    println!(
        "backup of index {} (term {}, cluster time {} ms, voters {:?}) written to {}: {} bytes, {} records",
        info.index,
        info.term,
        info.cluster_time_ms,
        info.voters,
        args.out.display(),
        file.len(),
        checked.pairs.len()
    );
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let backup = decode_backup(&bytes)
        .map_err(|err| anyhow::anyhow!("{}: {err}; nothing was written", args.file.display()))?;
    let peers = parse_addr_map(&args.peers, "--peers")?;
    if !peers.contains_key(&args.id) {
        bail!("--peers must include this node's id {}", args.id);
    }
    let clients = match &args.client_addrs {
        Some(text) => parse_addr_map(text, "--client-addrs")?,
        None => Default::default(),
    };
    let mut members = Members::default();
    for (&id, peer) in &peers {
        members.addrs.insert(
            id,
            MemberAddrs {
                peer: peer.to_string(),
                client: clients
                    .get(&id)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            },
        );
    }
    let target = args.data_dir.join("store");
    if target.exists() {
        bail!(
            "{} already holds a node's store; restore into an empty data dir",
            target.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // Built aside and moved into place whole: a failed restore leaves no
    // store behind.
    let staging = args.data_dir.join("store.restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let result = (|| -> Result<()> {
        let store = RocksStore::open(&staging)?;
        restore_backup(&backup, &bytes, &store, args.id, &members)?;
        Ok(())
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err.context("restoring"));
    }
    std::fs::rename(&staging, &target)?;
    sync_dir(&args.data_dir)?;
    println!(
        "node {} of a new cluster (voters {:?}) prepared in {} from the backup of index {} \
         (term {}, cluster time {} ms); start it with the same --id and --peers",
        args.id,
        peers.keys().collect::<Vec<_>>(),
        args.data_dir.display(),
        backup.info.index,
        backup.info.term,
        backup.info.cluster_time_ms
    );
    Ok(())
}
