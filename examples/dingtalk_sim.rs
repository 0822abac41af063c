//! Temporary runner for the simulator until `dingbind dingtalk-sim` is wired
//! into the CLI: `cargo run --example dingtalk_sim -- --org org.yaml`.

use clap::Parser;
use dingbind::cli::dingtalk_sim::{SimArgs, run};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

#[tokio::main]
async fn main() -> Result<(), dingbind::sim::Error> {
    run(Cli::parse().sim).await
}
