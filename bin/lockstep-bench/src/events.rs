//! The watch benchmarks, which are not closed loops of one request:
//!
//! - fan-out: many subscribers (spread over the endpoints) each follow the
//!   keyspace events of their own keys while writers set random ones; it
//!   reports events delivered per second and the time from a write's
//!   acknowledgement to its event arriving at a subscriber on another node;
//! - catch-up: a watcher that is N changes behind reads the change feed
//!   page by page until it has caught up; it reports changes per second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use hdrhistogram::Histogram;
use redis::Value;

use crate::workload::connect;

pub struct FanoutReport {
    pub subscribers: usize,
    pub writers: usize,
    pub seconds: f64,
    pub writes: u64,
    pub delivered: u64,
    /// Acknowledgement to delivery on another node, microseconds.
    pub latency: Histogram<u64>,
    /// Events that arrived before their write's acknowledgement.
    pub before_ack: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Runs the fan-out benchmark for `seconds` (after a second of warm-up).
pub async fn fanout(
    endpoints: &[String],
    subscribers: usize,
    writers: usize,
    seconds: f64,
) -> Result<FanoutReport> {
    let mut setup = connect(&endpoints[0]).await?;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("K$")
        .query_async(&mut setup)
        .await?;
    // When each write was acknowledged, and by which endpoint.
    let acked: Arc<Mutex<HashMap<String, (Instant, usize)>>> = Arc::default();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut listeners = Vec::with_capacity(subscribers);
    for s in 0..subscribers {
        let endpoint = s % endpoints.len();
        let client = redis::Client::open(format!("redis://{}/", endpoints[endpoint]))?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .with_context(|| format!("subscriber {s}"))?;
        pubsub
            .psubscribe(format!("__keyspace@0__:fan:{s}:*"))
            .await?;
        let (acked, measuring, stop, delivered) = (
            acked.clone(),
            measuring.clone(),
            stop.clone(),
            delivered.clone(),
        );
        listeners.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut before_ack = 0u64;
            let mut messages = pubsub.on_message();
            while !stop.load(Ordering::Relaxed) {
                let next = tokio::time::timeout(Duration::from_millis(200), messages.next()).await;
                let Ok(Some(message)) = next else {
                    continue;
                };
                let arrived = Instant::now();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                delivered.fetch_add(1, Ordering::Relaxed);
                let channel = message.get_channel_name();
                let key = channel.trim_start_matches("__keyspace@0__:").to_string();
                let ack = acked.lock().expect("acked").get(&key).copied();
                match ack {
                    Some((at, writer_endpoint)) if writer_endpoint != endpoint => {
                        let us = arrived.saturating_duration_since(at).as_micros() as u64;
                        let _ = latency.record(us.max(1));
                    }
                    Some(_) => {}
                    None => before_ack += 1,
                }
            }
            (latency, before_ack)
        }));
    }
    let writes = Arc::new(AtomicU64::new(0));
    let mut writer_tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let endpoint = w % endpoints.len();
        let mut con = connect(&endpoints[endpoint]).await?;
        let (acked, measuring, stop, writes) = (
            acked.clone(),
            measuring.clone(),
            stop.clone(),
            writes.clone(),
        );
        writer_tasks.push(tokio::spawn(async move {
            let mut state = 0x2545_f491_4f6c_dd1du64 ^ (w as u64 + 1);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                n += 1;
                let key = format!("fan:{}:{w}-{n}", state % subscribers as u64);
                let result: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg("v")
                    .query_async(&mut con)
                    .await;
                let at = Instant::now();
                if result.is_ok() && measuring.load(Ordering::Relaxed) {
                    acked.lock().expect("acked").insert(key, (at, endpoint));
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    measuring.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    // Late events of the last writes still count for latency.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in writer_tasks {
        task.await?;
    }
    let mut latency = histogram();
    let mut before_ack = 0;
    for listener in listeners {
        let (own, early) = listener.await?;
        latency.add(&own).expect("same bounds");
        before_ack += early;
    }
    Ok(FanoutReport {
        subscribers,
        writers,
        seconds: elapsed,
        writes: writes.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        latency,
        before_ack,
    })
}

pub struct CatchupReport {
    pub behind: u64,
    pub read: u64,
    pub pages: u64,
    pub seconds: f64,
}

fn field<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Map(fields) => fields.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        _ => return None,
    };
    pairs.into_iter().find_map(|(k, v)| match k {
        Value::BulkString(k) if k.as_slice() == name.as_bytes() => Some(v),
        _ => None,
    })
}

/// Writes `behind` changes, then reads them back from the feed on the
/// last endpoint, `page` at a time.
pub async fn catchup(endpoints: &[String], behind: u64, page: u64) -> Result<CatchupReport> {
    let mut writer = connect(&endpoints[0]).await?;
    let info: Value = redis::cmd("CHANGES.INFO").query_async(&mut writer).await?;
    let Some(Value::Int(applied)) = field(&info, "applied") else {
        return Err(anyhow!("CHANGES.INFO: {info:?}"));
    };
    let from = *applied as u64 + 1;
    let run = from;
    for chunk in (0..behind).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for n in chunk {
            pipe.cmd("SET")
                .arg(format!("catchup:{run}:{n}"))
                .arg("v")
                .ignore();
        }
        pipe.query_async::<()>(&mut writer).await?;
    }
    let mut reader = connect(endpoints.last().expect("an endpoint")).await?;
    let prefix = format!("catchup:{run}:");
    let started = Instant::now();
    let (mut next, mut read, mut pages) = (from, 0u64, 0u64);
    while read < behind {
        let reply: Value = redis::cmd("CHANGES.READ")
            .arg(&prefix)
            .arg("FROM")
            .arg(next)
            .arg("COUNT")
            .arg(page)
            .query_async(&mut reader)
            .await?;
        let (Some(Value::Int(n)), Some(Value::Array(changes))) =
            (field(&reply, "next"), field(&reply, "changes"))
        else {
            return Err(anyhow!("CHANGES.READ: {reply:?}"));
        };
        pages += 1;
        read += changes.len() as u64;
        if changes.is_empty() && *n as u64 == next {
            // This node has not applied the rest yet.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        next = *n as u64;
    }
    Ok(CatchupReport {
        behind,
        read,
        pages,
        seconds: started.elapsed().as_secs_f64(),
    })
}
