/// jemalloc, with its background thread purging freed pages: glibc's
/// malloc kept what a large request used (its arenas and its growing mmap
/// threshold), and the server's RSS never came down.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("sluice: warning: jemalloc's background purge is off ({e}); freed memory returns later");
    }
    sluice::cli::main()
}
