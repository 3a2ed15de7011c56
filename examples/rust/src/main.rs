fn main() {
    println!(
        "hello from Rust, built for {}-{}",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
}
