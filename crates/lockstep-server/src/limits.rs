/// Bounds on what one client may make the server hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest bulk string in a request (Redis: proto-max-bulk-len, 512 MiB).
    /// lockstep defaults lower: every value is replicated and kept in a raft
    /// entry, and coordination data is small.
    pub max_bulk_bytes: usize,
    /// Most arguments in one command (Redis allows 1024*1024 as well).
    pub max_args: usize,
    /// Largest inline (telnet-style) command line (Redis: 64 KiB).
    pub max_inline_bytes: usize,
    /// Most unparsed bytes buffered for one client (Redis:
    /// client-query-buffer-limit, 1 GiB).
    pub max_query_buffer_bytes: usize,
    /// Most client connections at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 64 << 20,
            max_args: 1 << 20,
            max_inline_bytes: 64 << 10,
            max_query_buffer_bytes: 256 << 20,
            max_connections: 10_000,
        }
    }
}
