#![deny(clippy::undocumented_unsafe_blocks)]
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, path] if flag == "--status" => match mproc_bridge::ring_status(path.as_ref()) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pytest-mproc-bridge: {e}");
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!("usage: pytest-mproc-bridge --status RING_PATH");
            ExitCode::from(2)
        }
    }
}
