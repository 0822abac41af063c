//! The functional core: everything dingbind decides, as pure functions of the
//! Tenant spec, what was observed in DingTalk, what the store holds and the
//! time. No I/O here; the `reconcile` shell carries the decisions out.
//!
//! The build keeps it so: `build.rs` reads every file of `core` and fails
//! the build when one names an I/O crate (tokio, kube, reqwest, sqlx, axum),
//! the clock, or a module of the shell (`build/core_purity.rs`). Data types
//! come from `api` (the Tenant and its status), `k8s_openapi`, `jiff` and
//! `serde`, which do no I/O.

pub mod absence;
pub mod binding;
pub mod channel;
pub mod conditions;
#[cfg(test)]
mod convergence;
pub mod desired;
pub mod directory;
pub mod dirty;
pub mod events;
pub mod guard;
pub mod incremental;
pub mod kstatus;
pub mod login;
pub mod push;
pub mod schedule;
pub mod scope;
pub mod status;
