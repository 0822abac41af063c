//! Support code shared by the integration tests and benchmarks (`mod support;`).

#![allow(dead_code)]

pub mod e2e;
pub mod fixtures;
pub mod kube_env;
pub mod org;
pub mod postgres;
