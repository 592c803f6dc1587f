fn main() -> anyhow::Result<()> {
    lockstep::main()
}
