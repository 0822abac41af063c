//! The `dingbind` command line.

mod plan;
mod status;

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{controller, dev, sim, store, telemetry, validate};

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
    Crd(CrdArgs),
    /// Check Tenant manifests offline against the CRD's schema and rules.
    Validate(ValidateArgs),
    /// Run the operator against a Kubernetes cluster.
    Controller(controller::ControllerArgs),
    /// Run the whole loop on this machine: Tenants from a folder, an embedded DingTalk simulator, the local store.
    Dev(dev::DevArgs),
    /// Every tenant's status (mode, corp, members, conditions, last sync).
    Status(status::StatusArgs),
    /// What applying these manifests would do, without doing it.
    Plan(plan::PlanArgs),
    /// A tenant's directory (departments as a tree, and members) from the store.
    Directory(store::cli::DirectoryArgs),
    /// Serve the DingTalk simulator (both API families and the /_sim/ admin API).
    DingtalkSim(sim::cli::SimArgs),
}

#[derive(clap::Args, Debug)]
pub struct CrdArgs {
    /// Write each CRD into its own file in this folder (`crds`) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// A manifest file, or a folder of them.
    #[arg(short = 'f', long = "filename")]
    pub path: PathBuf,
    /// The previous version of the same Tenants (file or folder), to check transition rules.
    #[arg(long)]
    pub previous: Option<PathBuf>,
}

/// Runs the command line and returns the process exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd(args) => crd(&args),
        Command::Validate(args) => run_validate(&args),
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
        Command::Directory(args) => store::cli::run(args, &mut std::io::stdout().lock())
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::DingtalkSim(args) => {
            telemetry::init(telemetry::LogFormat::Text, "info");
            sim::cli::run(args)
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

fn crd(args: &CrdArgs) -> CliResult {
    let mut out = String::new();
    for (file, crd) in crate::api::crds() {
        let yaml = crate::api::crd_yaml(&crd)?;
        match &args.write {
            Some(dir) => {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            None => {
                if !out.is_empty() {
                    out.push_str("---\n");
                }
                out.push_str(&yaml);
            }
        }
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn run_validate(args: &ValidateArgs) -> CliResult {
    let findings = validate::validate_paths(&args.path, args.previous.as_deref())?;
    let errors = findings
        .iter()
        .filter(|f| f.severity == validate::Severity::Error)
        .count();
    for f in &findings {
        eprintln!("{f}");
    }
    if errors > 0 {
        eprintln!("{errors} error(s)");
        Ok(ExitCode::FAILURE)
    } else {
        println!("ok: {} valid", args.path.display());
        Ok(ExitCode::SUCCESS)
    }
}
