//! Switches that break lockstep on purpose, so the fault tests can prove
//! they would notice (negative controls). Compiled only into debug builds
//! with the `unsafe-test-switches` feature: the `lockstep-unsafe` binary.

use std::path::Path;

use anyhow::Result;
use lockstep_raft::NodeHandle;
use lockstep_store::RocksStore;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct TestSwitches {
    /// UNSAFE, tests only: write without the write-ahead log, so a crash
    /// loses acknowledged writes.
    #[arg(long)]
    pub unsafe_volatile_storage: bool,
    /// UNSAFE, tests only: serve reads from local state without ReadIndex,
    /// so reads may be stale.
    #[arg(long)]
    pub unsafe_local_reads: bool,
}

impl TestSwitches {
    pub fn any(&self) -> bool {
        self.unsafe_volatile_storage || self.unsafe_local_reads
    }

    pub fn open_store(&self, path: &Path) -> Result<RocksStore> {
        Ok(if self.unsafe_volatile_storage {
            RocksStore::open_volatile(path)?
        } else {
            RocksStore::open(path)?
        })
    }

    pub fn apply(&self, mut node: NodeHandle) -> NodeHandle {
        if self.unsafe_local_reads {
            node.serve_reads_without_read_index();
        }
        node
    }
}
