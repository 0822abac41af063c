//! The `dingbind` command line.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{controller, telemetry, validate};

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
    /// Print the Tenant CustomResourceDefinition (YAML).
    Crd,
    /// Check Tenant manifests offline against the CRD's schema and rules.
    Validate(ValidateArgs),
    /// Run the operator against a Kubernetes cluster.
    Controller(controller::ControllerArgs),
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
        Command::Crd => crd(),
        Command::Validate(args) => run_validate(&args),
        Command::Controller(args) => {
            telemetry::init(args.log_format, "info,kube=warn");
            controller::run(args)
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

fn crd() -> CliResult {
    let yaml = crate::api::crd_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
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
