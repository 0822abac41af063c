use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    dingbind::cli::main().await
}
