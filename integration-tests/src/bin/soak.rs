//! Runs the fault scenarios against real `lockstep` processes and prints a
//! verdict table: `soak --seconds 600 --nemesis kill,pause,partition`.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use integration_tests::faults::{self, Nemesis, Scenario};

#[derive(Parser)]
struct Args {
    /// Seconds of workload per nemesis.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Comma-separated nemeses: kill, pause, partition, none.
    #[arg(long, default_value = "kill,pause,partition", value_delimiter = ',')]
    nemesis: Vec<Nemesis>,
    /// Cluster size (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seed for the nemesis and client choices (default: from the time).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(1)
    });
    let mut rows = Vec::new();
    for (round, nemesis) in args.nemesis.iter().enumerate() {
        let mut scenario = Scenario::new(
            *nemesis,
            Duration::from_secs(args.seconds),
            seed + round as u64,
        );
        scenario.nodes = args.nodes;
        let report = faults::run(&scenario)?;
        println!("{report}\n");
        rows.push(report);
    }
    println!(
        "{:<10} {:>7} {:>9} {:>8} {:>7} {:>10} {:>8} {:>14} {:>16} {:>16}  verdict",
        "nemesis",
        "faults",
        "fault s",
        "ok ops",
        "unknown",
        "lin",
        "tokens",
        "queue lost/dup",
        "election med",
        "recovery med"
    );
    let mut all_passed = true;
    for (nemesis, report) in args.nemesis.iter().zip(&rows) {
        all_passed &= report.passed();
        let median = |durations: &[Duration]| {
            faults::median(durations)
                .map(|median| format!("{}ms", median.as_millis()))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<10} {:>7} {:>9.1} {:>8} {:>7} {:>10} {:>8} {:>14} {:>16} {:>16}  {}",
            nemesis.to_string(),
            report.nemesis.faults.len(),
            report.nemesis.fault_time.as_secs_f64(),
            report.operations.0,
            report.operations.2,
            if report.linearizability.is_linearizable() {
                "ok"
            } else {
                "VIOLATION"
            },
            report.token_violations,
            format!("{}/{}", report.queue_lost, report.queue_duplicated),
            median(&report.nemesis.elections),
            median(&report.nemesis.recoveries),
            if report.passed() { "PASS" } else { "FAIL" }
        );
    }
    if !all_passed {
        std::process::exit(1);
    }
    Ok(())
}
