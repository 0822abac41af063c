//! dingbind: the control plane that binds a low-code platform's tenants to
//! their DingTalk organizations.
//!
//! `api` holds the `Tenant` resource; the rest of the crate follows the
//! observe → decide → act loop described in the README: `core` decides,
//! `reconcile` acts through `dingtalk` and `store`, `controller` and `dev`
//! run it on a cluster or on one machine.

pub mod api;
pub mod cli;
pub mod controller;
pub mod core;
pub mod dev;
pub mod dingtalk;
pub mod events;
pub mod login;
pub mod reconcile;
pub mod redact;
pub mod signal;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod validate;

/// The purity rule `build.rs` enforces on `core`, with its tests.
#[cfg(test)]
#[path = "../build/core_purity.rs"]
mod core_purity;
