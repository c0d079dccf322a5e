#![deny(clippy::expect_used)]

// mimalloc: fewer bytes per small allocation and less fragmentation than
// the system allocator, which matters with a million cached tokens.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(authgate::cli::main());
}
