//! The functional core: everything dingbind decides, as pure functions of the
//! Tenant spec, what was observed in DingTalk, what the store holds and the
//! time. No I/O here; the `reconcile` shell carries the decisions out.

pub mod absence;
pub mod binding;
pub mod conditions;
pub mod desired;
pub mod directory;
pub mod guard;
pub mod kstatus;
pub mod schedule;
pub mod scope;
