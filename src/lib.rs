//! sre-mini: a std-only HTTP/1.1 reference workload.
pub mod http;

pub fn main_entry() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
