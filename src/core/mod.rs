//! The functional core: everything dingbind decides, as pure functions of the
//! Tenant spec, what was observed in DingTalk, what the store holds and the
//! time. No I/O here; the `reconcile` shell carries the decisions out.

pub mod directory;
