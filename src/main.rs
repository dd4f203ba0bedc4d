/// jemalloc, with its background thread purging freed pages: glibc's
/// malloc kept what a large request used (its arenas and its growing mmap
/// threshold), and the server's RSS never came down.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How soon freed pages go back to the system (jemalloc's default is 10 s):
/// a million-row request's columns are gone from RSS a second after it.
const DECAY_MS: isize = 1000;

fn tune_allocator() -> Result<(), tikv_jemalloc_ctl::Error> {
    use tikv_jemalloc_ctl::{Access, AsName};
    // For arenas made from now on, then for those that exist.
    b"arenas.dirty_decay_ms\0".name().write(DECAY_MS)?;
    let arenas: u32 = b"arenas.narenas\0".name().read()?;
    for i in 0..arenas {
        // An arena not yet initialised has no such setting; it takes the default above.
        let _ = format!("arena.{i}.dirty_decay_ms\0").name().write(DECAY_MS);
    }
    tikv_jemalloc_ctl::background_thread::write(true)
}

fn main() -> std::process::ExitCode {
    if let Err(e) = tune_allocator() {
        eprintln!(
            "sluice: warning: jemalloc's background purge is not set up ({e}); freed memory returns later"
        );
    }
    sluice::cli::main()
}
