use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = skein_node::cli::Cli::parse();
    match skein_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
