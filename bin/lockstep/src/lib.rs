//! The lockstep server: parses configuration, opens the store, starts the
//! replication core and the RESP server, and shuts down on SIGTERM/SIGINT.
//! The `lockstep` binary is [`main`]; so is `lockstep-unsafe`, built with
//! the test switches (see `switches`).

mod backup;
mod config;
mod join;
#[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
mod switches;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use lockstep_raft::Node;
use lockstep_server::{
    password_hash, serve, serve_http, serve_tls, AclCache, Events, ServerContext,
};
use lockstep_store::RocksStore;
use slog::{info, o, Drain, Logger};

use config::{Cli, Settings};

fn logger(settings: &Settings) -> Logger {
    let decorator = slog_term::PlainDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog_async::Async::new(drain)
        .chan_size(65_536)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build()
        .fuse();
    let drain = slog::LevelFilter::new(drain, settings.log_level).fuse();
    Logger::root(drain, o!("node" => settings.id))
}

/// Runs a node with the command line's configuration until a signal.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command.clone() {
        Some(config::Command::Backup(args)) => return backup::backup(args),
        Some(config::Command::Restore(args)) => return backup::restore(args),
        None => {}
    }
    // The test build compiles the switches into every binary of this
    // package; only lockstep-unsafe may use them.
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    if cli.switches.any() {
        anyhow::bail!("the --unsafe-* switches are available only in lockstep-unsafe");
    }
    run_node(cli)
}

/// `lockstep-unsafe`: [`main`] with the negative-control switches allowed.
#[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
pub fn main_unsafe() -> Result<()> {
    run_node(Cli::parse())
}

fn run_node(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(cli)?;
    let log = logger(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.io_threads)
        .enable_all()
        .thread_name("lockstep-io")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(settings, log.clone()));
    if let Err(err) = &result {
        slog::crit!(log, "lockstep stopped with an error"; "error" => format!("{err:#}"));
    }
    drop(log);
    // Give the async logger a moment to drain before the process exits.
    std::thread::sleep(std::time::Duration::from_millis(50));
    result
}

async fn run(mut settings: Settings, log: Logger) -> Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let store = Arc::new(
        open_store(&settings)
            .with_context(|| format!("opening store in {}", settings.data_dir.display()))?,
    );
    let peer_listener = tokio::net::TcpListener::bind(settings.peer_listen)
        .await
        .with_context(|| format!("binding peer address {}", settings.peer_listen))?;
    let client_listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding client address {}", settings.listen))?;
    let tls_listener = match &settings.tls {
        Some((addr, _)) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding TLS address {addr}"))?,
        ),
        None => None,
    };
    let zk_listener = match &settings.zk {
        Some((addr, _)) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding ZooKeeper address {addr}"))?,
        ),
        None => None,
    };
    let zk_tls_listener = match &settings.zk_tls {
        Some((addr, files)) => Some((
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding ZooKeeper TLS address {addr}"))?,
            files.clone(),
        )),
        None => None,
    };
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics address {addr}"))?,
        ),
        None => None,
    };
    if let Some(contact) = settings.join.clone() {
        use lockstep_store::NodeStore;
        // Empty: new, or restarted before the leader's snapshot came.
        let empty = store.conf_state().voters.is_empty() && store.applied().index == 0;
        if empty {
            settings.node.peers = join::join(
                &contact,
                settings.id,
                settings.peer_listen,
                settings.listen,
                settings.requirepass.clone(),
                &log,
            )
            .await?;
        }
    }
    info!(log, "starting";
        "listen" => %settings.listen,
        "peer_listen" => %settings.peer_listen,
        "data_dir" => %settings.data_dir.display(),
        "voters" => ?settings.node.peers.keys().collect::<Vec<_>>());
    let events = Arc::new(Events {
        acl: Arc::new(AclCache::with_requirepass(settings.requirepass.as_deref())),
        ..Events::default()
    });
    let sink = events.clone();
    let (node, raft_thread) = Node::start(
        settings.node.clone(),
        store.clone(),
        peer_listener,
        &tokio::runtime::Handle::current(),
        Arc::new(move |index, event| sink.deliver(index, event)),
        &log,
    )
    .context("starting the replication core")?;
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    let node = settings.switches.apply(node);
    let sizes = store.clone();
    let mut context = ServerContext::new(
        node.clone(),
        settings.limits.clone(),
        settings.client_addrs.clone(),
        &events,
        log.new(o!("component" => "server")),
    )
    .with_store_stats(Arc::new(move || sizes.backend().sizes()));
    context.protected_mode = settings.protected_mode;
    let context = Arc::new(context);
    if let Some(password) = settings.requirepass.clone() {
        tokio::spawn(replicate_requirepass(node.clone(), password, log.clone()));
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    if let Some(listener) = metrics_listener {
        tokio::spawn(serve_http(listener, context.clone(), shutdown_rx.clone()));
    }
    if let (Some(listener), Some((_, files))) = (tls_listener, settings.tls.clone()) {
        let context = context.clone();
        let shutdown = shutdown_rx.clone();
        let log = log.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_tls(listener, files, context, shutdown).await {
                slog::error!(log, "TLS listener stopped"; "error" => err);
            }
        });
    }
    if let (Some(listener), Some((_, config))) = (zk_listener, settings.zk.clone()) {
        tokio::spawn(lockstep_zk::serve(
            listener,
            zk_tls_listener,
            context.clone(),
            config,
            shutdown_rx.clone(),
        ));
    }
    let server = tokio::spawn(serve(client_listener, context, shutdown_rx));

    wait_for_signal().await?;
    info!(log, "shutting down");
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    node.stop();
    tokio::task::spawn_blocking(move || raft_thread.join())
        .await
        .ok();
    info!(log, "stopped");
    Ok(())
}

/// With --requirepass and no replicated default user yet, makes the
/// password the replicated default user's (so every node agrees), once a
/// leader is there.
async fn replicate_requirepass(node: lockstep_raft::NodeHandle, password: String, log: Logger) {
    use bytes::Bytes;
    for _ in 0..600 {
        let record = node
            .read(&[
                Bytes::from_static(b"ACL.RECORD"),
                Bytes::from_static(b"default"),
            ])
            .await;
        match record {
            Ok(lockstep_engine::Reply::Nil) => {
                let rule = Bytes::from(format!("#{}", password_hash(password.as_bytes())));
                let set = node
                    .propose(&[
                        Bytes::from_static(b"ACL.SETUSER"),
                        Bytes::from_static(b"default"),
                        Bytes::from_static(b"resetpass"),
                        rule,
                    ])
                    .await;
                if set.is_ok() {
                    info!(
                        log,
                        "the default user's password is now replicated (--requirepass)"
                    );
                    return;
                }
            }
            // A replicated default user exists: it decides.
            Ok(_) => return,
            Err(_) => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(not(all(feature = "unsafe-test-switches", debug_assertions)))]
fn open_store(settings: &Settings) -> Result<RocksStore> {
    Ok(RocksStore::open(&settings.data_dir.join("store"))?)
}

#[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
fn open_store(settings: &Settings) -> Result<RocksStore> {
    settings
        .switches
        .open_store(&settings.data_dir.join("store"))
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
