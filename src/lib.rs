//! dingbind: the control plane that binds a low-code platform's tenants to
//! their DingTalk organizations.
//!
//! `api` holds the `Tenant` resource; the rest of the crate follows the
//! observe → decide → act loop described in the README.

pub mod api;
pub mod core;
pub mod dingtalk;
pub mod sim;
pub mod validate;
