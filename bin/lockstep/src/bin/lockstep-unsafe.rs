//! lockstep with the negative-control switches (`--unsafe-*`), for the fault
//! tests only. Built only in debug builds with `unsafe-test-switches`.

fn main() -> anyhow::Result<()> {
    lockstep::main_unsafe()
}
