fn main() -> std::process::ExitCode {
    ords_guard::cli::main()
}
