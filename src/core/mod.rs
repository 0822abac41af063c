//! The functional core: everything dingbind decides, as pure functions of the
//! Tenant spec, what was observed in DingTalk, what the store holds and the
//! time. No I/O here; the `reconcile` shell carries the decisions out.
//!
//! The test below keeps it so: no file of `core` may name an I/O crate
//! (tokio, kube, reqwest, sqlx, axum) or a module of the shell. Data types
//! come from `api` (the Tenant and its status), `k8s_openapi`, `jiff` and
//! `serde`, which do no I/O.

pub mod absence;
pub mod binding;
pub mod conditions;
pub mod desired;
pub mod directory;
pub mod guard;
pub mod kstatus;
pub mod schedule;
pub mod scope;
pub mod status;

#[cfg(test)]
mod purity {
    /// Every file of `core`, read at compile time; a module missing here
    /// fails `every_core_module_is_checked`.
    const FILES: &[(&str, &str)] = &[
        ("absence.rs", include_str!("absence.rs")),
        ("binding.rs", include_str!("binding.rs")),
        ("conditions.rs", include_str!("conditions.rs")),
        ("desired.rs", include_str!("desired.rs")),
        ("directory.rs", include_str!("directory.rs")),
        ("guard.rs", include_str!("guard.rs")),
        ("kstatus.rs", include_str!("kstatus.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("schedule.rs", include_str!("schedule.rs")),
        ("scope.rs", include_str!("scope.rs")),
        ("status.rs", include_str!("status.rs")),
    ];

    /// What `core` must never name.
    const FORBIDDEN: &[&str] = &[
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

    #[test]
    fn core_names_no_io_crate_nor_the_shell() {
        for (file, text) in FILES {
            // This file lists the names on purpose: check only the code above the list.
            let code = if *file == "mod.rs" {
                text.split("mod purity").next().unwrap_or_default()
            } else {
                text
            };
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for name in FORBIDDEN {
                    assert!(
                        !line.contains(name),
                        "src/core/{file} names {name}: core stays pure\n{line}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_core_module_is_checked() {
        let modules: Vec<&str> = include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .map(|m| m.trim_end_matches(';'))
            .collect();
        for m in &modules {
            let file = format!("{m}.rs");
            assert!(
                FILES.iter().any(|(f, _)| *f == file),
                "src/core/{file} is not in the purity check"
            );
        }
        assert_eq!(
            FILES.len(),
            modules.len() + 1,
            "mod.rs and one file per module"
        );
    }
}
