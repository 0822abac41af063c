//! Logins: who may log in to a tenant, and how (docs/login.md). The decision
//! is `core::login`'s; this module holds what it needs from the outside: the
//! creator's password check.

pub mod password;
