//! Server CPU time from /proc: user + system clock ticks of a process.

use anyhow::{bail, Context, Result};

pub struct Process {
    pub name: String,
    pub pid: u32,
}

/// Clock ticks per second of /proc's counters (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

pub fn ticks_to_us(ticks: u64) -> f64 {
    ticks as f64 * 1e6 / TICKS_PER_SECOND
}

impl Process {
    /// `name=pid` or `pid`.
    pub fn parse(spec: &str) -> Result<Process> {
        let (name, pid) = match spec.split_once('=') {
            Some((name, pid)) => (name.to_string(), pid),
            None => (format!("pid {spec}"), spec),
        };
        let pid: u32 = pid
            .trim()
            .parse()
            .with_context(|| format!("bad pid in {spec:?}"))?;
        if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
            bail!("no process {pid}");
        }
        Ok(Process { name, pid })
    }

    /// utime + stime so far (0 once the process is gone).
    pub fn ticks(&self) -> u64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return 0;
        };
        // The command name is in parentheses and may hold spaces.
        let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
            return 0;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of the whole line; 3 is the first after the name.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        field(14).unwrap_or(0) + field(15).unwrap_or(0)
    }
}
