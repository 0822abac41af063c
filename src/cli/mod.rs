//! The `dingbind` command line.

pub mod crd;
pub mod dingtalk_sim;
pub mod directory;
mod plan;
mod status;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{controller, dev, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "dingbind",
    version,
    about = "Binds a low-code platform's tenants to their DingTalk organizations"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print dingbind's CustomResourceDefinitions (YAML), or write one file each.
    Crd(crd::CrdArgs),
    /// Check Tenant manifests offline against the CRD's schema and rules.
    Validate(validate::ValidateArgs),
    /// Run the operator against a Kubernetes cluster.
    Controller(controller::ControllerArgs),
    /// Run the whole loop on this machine: Tenants from a folder, an embedded DingTalk simulator, the local store.
    Dev(dev::DevArgs),
    /// Every tenant's status (mode, corp, members, conditions, last sync).
    Status(status::StatusArgs),
    /// What applying these manifests would do, without doing it.
    Plan(plan::PlanArgs),
    /// A tenant's directory (departments as a tree, and members) from the store.
    Directory(directory::DirectoryArgs),
    /// Serve the DingTalk simulator (both API families and the /_sim/ admin API).
    DingtalkSim(dingtalk_sim::SimArgs),
}

/// Runs the command line and returns the process exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd(args) => crd::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Controller(args) => {
            telemetry::init(args.log_format, "info,kube=warn");
            controller::run(args)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        Command::Dev(args) => {
            telemetry::init(args.log_format, "info");
            dev::run(args)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        Command::Status(args) => status::run(&args, &mut std::io::stdout().lock())
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => plan::run(&args, &mut std::io::stdout().lock())
            .await
            .map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }),
        Command::Directory(args) => directory::run(args, &mut std::io::stdout().lock())
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::DingtalkSim(args) => {
            telemetry::init(telemetry::LogFormat::Text, "info");
            dingtalk_sim::run(args)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;
