//! The purity rule of `src/core`, checked by `build.rs` on every build: no
//! file of the functional core may name an I/O crate, the clock or a module
//! of the imperative shell. Shared with the library's tests, which check the
//! checker.

/// What `src/core` must never name (outside comment lines).
pub const FORBIDDEN: &[&str] = &[
    "tokio",
    "kube::",
    "kube_",
    "reqwest",
    "sqlx",
    "axum",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "Timestamp::now",
    "Instant::now",
    "SystemTime",
    "crate::dingtalk",
    "crate::store",
    "crate::reconcile",
    "crate::controller",
    "crate::dev",
    "crate::sim",
    "crate::cli",
    "crate::validate",
];

/// Each line of `code` that names something in [`FORBIDDEN`], as
/// `line number: name: line`. Lines that are comments are skipped.
pub fn violations(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for name in FORBIDDEN {
            if line.contains(name) {
                found.push(format!("{}: {name}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_in_code_is_found_and_one_in_a_comment_line_is_not() {
        assert_eq!(violations("use tokio::fs;\n"), ["1: tokio: use tokio::fs;"]);
        assert_eq!(
            violations("fn a() {\n    let t = Timestamp::now();\n}").len(),
            1
        );
        assert!(violations("    // tokio is not used here\n//! nor sqlx\n").is_empty());
        assert_eq!(
            violations("let x = 1; // a comment after code does not hide tokio").len(),
            1
        );
    }

    #[test]
    fn the_core_of_this_crate_passes() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/core");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let code = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                violations(&code),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            files += 1;
        }
        assert!(files >= 10, "read {files} files of src/core");
    }
}
