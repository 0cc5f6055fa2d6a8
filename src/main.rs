//! The `faceattr` binary: parse, dispatch, and turn any error into one clear message.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = faceattr::cli::Cli::parse();
    match faceattr::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            use faceattr::train::trainer::TrainError;
            match e.downcast_ref::<TrainError>() {
                Some(TrainError::Interrupted { .. }) => {
                    std::process::ExitCode::from(faceattr::train::interrupt::EXIT_CODE)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
