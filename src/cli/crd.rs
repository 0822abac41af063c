//! `dingbind crd`: the CustomResourceDefinitions, printed or written one file each.

use std::{io::Write, path::PathBuf, process::ExitCode};

use super::CliResult;

#[derive(clap::Args, Debug)]
pub struct CrdArgs {
    /// Write each CRD into its own file in this folder (`crds`) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

pub fn run(args: &CrdArgs) -> CliResult {
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
