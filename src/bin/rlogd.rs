//! rlogd: the collector (see the rlogd issue). Placeholder entry point until it lands.
fn main() {
    eprintln!("rlogd: not built yet");
    std::process::exit(2);
}
