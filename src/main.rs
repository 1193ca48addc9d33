fn main() -> std::process::ExitCode {
    hissaback::cli::run()
}
