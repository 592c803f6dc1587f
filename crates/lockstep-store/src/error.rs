use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[cfg(feature = "rocksdb")]
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("protobuf: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl StoreError {
    pub fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for raft::Error {
    fn from(err: StoreError) -> Self {
        raft::Error::Store(raft::StorageError::Other(Box::new(err)))
    }
}
