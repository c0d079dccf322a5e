fn main() {
    std::process::exit(authgate::cli::main());
}
