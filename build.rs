//! Fails the build when the functional core (`src/core`) names an I/O crate,
//! the clock or a module of the shell: see `build/core_purity.rs`.

#[path = "build/core_purity.rs"]
mod core_purity;

use std::{fs, path::Path};

fn main() {
    println!("cargo::rerun-if-changed=src/core");
    println!("cargo::rerun-if-changed=build/core_purity.rs");
    let dir = Path::new("src/core");
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            println!("cargo::error=cannot read {}: {e}", dir.display());
            return;
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    paths.sort();
    for path in paths {
        let code = match fs::read_to_string(&path) {
            Ok(code) => code,
            Err(e) => {
                println!("cargo::error=cannot read {}: {e}", path.display());
                continue;
            }
        };
        for v in core_purity::violations(&code) {
            println!(
                "cargo::error={}:{v} (the functional core stays pure: observe in the shell, pass the facts in)",
                path.display()
            );
        }
    }
}
