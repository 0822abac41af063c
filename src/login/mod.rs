//! Logins: who may log in to a tenant, and how (docs/login.md). The decision
//! is `core::login`'s; this module gathers what it needs (`service.rs`),
//! checks the creator's password (`password.rs`) and serves the API
//! (`http.rs`).

pub mod http;
pub mod password;
pub mod service;

pub use service::{Answer, Error, Logins, TenantFacts, Tenants};
