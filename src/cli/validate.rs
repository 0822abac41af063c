//! `dingbind validate`: Tenant manifests checked offline, as the API server would.

use std::{path::PathBuf, process::ExitCode};

use super::CliResult;
use crate::validate;

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// A manifest file, or a folder of them.
    #[arg(short = 'f', long = "filename")]
    pub path: PathBuf,
    /// The previous version of the same Tenants (file or folder), to check transition rules.
    #[arg(long)]
    pub previous: Option<PathBuf>,
}

pub fn run(args: &ValidateArgs) -> CliResult {
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
