//! Entry point: everything lives in the library so tests and fuzz targets reach the same code.
fn main() -> std::process::ExitCode {
    sre_mini::main_entry()
}
