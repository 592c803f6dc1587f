// The write path allocates many small, short-lived buffers on two threads;
// mimalloc's thread-local free lists make that cheaper than the system malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    lockstep::main()
}
