//! A workload client: one connection at a time to a random node, dropped
//! and replaced after any failure, with every operation timed on the
//! history's clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

/// Nanoseconds since the scenario started: one clock for every history.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// How an operation that got no usable reply ended.
#[derive(Debug)]
pub enum Failure {
    /// No connection: the request was never sent, so it had no effect.
    NotSent,
    /// The server said it did not execute the command (`-CLUSTERDOWN`, or
    /// `-REMOVED` from a node no longer in the cluster):
    /// recorded as never happening, so the checker holds lockstep to it.
    Refused,
    /// Sent, but the reply is an error or never came: outcome unknown.
    Unknown(String),
}

pub struct Client {
    nodes: Vec<SocketAddr>,
    connection: Option<redis::Connection>,
    timeout: Duration,
    pub id: u64,
    pub rng: StdRng,
}

impl Client {
    pub fn new(id: u64, nodes: Vec<SocketAddr>, timeout: Duration, rng: StdRng) -> Client {
        Client {
            nodes,
            connection: None,
            timeout,
            id,
            rng,
        }
    }

    fn connection(&mut self) -> Option<&mut redis::Connection> {
        if self.connection.is_none() {
            let addr = self.nodes[self.rng.gen_range(0..self.nodes.len())];
            self.connection = crate::connect_with_timeout(addr, self.timeout).ok();
        }
        self.connection.as_mut()
    }

    /// Sends one command (or an atomic pipeline) and reads its reply.
    pub fn query<T: redis::FromRedisValue>(
        &mut self,
        request: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Failure> {
        let Some(connection) = self.connection() else {
            // Every node may be down: do not spin.
            std::thread::sleep(Duration::from_millis(20));
            return Err(Failure::NotSent);
        };
        match request(connection) {
            Ok(value) => Ok(value),
            Err(err) => {
                // Whatever happened, the next request starts afresh (and
                // maybe on another node).
                self.connection = None;
                // A removed node refuses everything before doing anything.
                if matches!(err.code(), Some("CLUSTERDOWN") | Some("REMOVED")) {
                    return Err(Failure::Refused);
                }
                Err(Failure::Unknown(err.to_string()))
            }
        }
    }

    /// Drops the connection: the next request goes to a random node.
    pub fn reconnect(&mut self) {
        self.connection = None;
    }

    pub fn pause(&mut self, range_ms: std::ops::Range<u64>) {
        let ms = self.rng.gen_range(range_ms);
        std::thread::sleep(Duration::from_millis(ms));
    }
}
