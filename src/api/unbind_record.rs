//! `UnbindRecord` (`dingbind.dev/v1alpha1`, cluster-scoped): the API server's
//! write-once copy of an unbind, beside the store's ledger. Its spec cannot
//! change once written (CEL `self == oldSelf`), and the admission policy in
//! `manifests/unbind-records.yaml` lets nobody but a break-glass group change
//! or delete one. The controller may only create, get, list and watch them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{TenantKey, UnbindReason};

/// The group whose members may change or delete an `UnbindRecord` (docs/unbind-records.md).
pub const BREAK_GLASS_GROUP: &str = "dingbind:break-glass";

/// A tenant's unbind from DingTalk, recorded for good.
// Each printcolumn(...) repeats the same keys: clippy takes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dingbind.dev",
    version = "v1alpha1",
    kind = "UnbindRecord",
    plural = "unbindrecords",
    shortname = "ubr",
    derive = "PartialEq",
    doc = "The write-once record that a tenant was unbound from DingTalk: it can never return to DingTalk mode.",
    printcolumn(
        name = "Namespace",
        type_ = "string",
        description = "Tenant namespace",
        json_path = ".spec.tenantNamespace"
    ),
    printcolumn(
        name = "Tenant",
        type_ = "string",
        description = "Tenant name",
        json_path = ".spec.tenantName"
    ),
    printcolumn(
        name = "Corp",
        type_ = "string",
        description = "DingTalk organization",
        json_path = ".spec.corpId"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        description = "Why it was unbound",
        json_path = ".spec.reason"
    ),
    printcolumn(
        name = "Unbound At",
        type_ = "date",
        description = "When it was unbound",
        json_path = ".spec.unboundAt"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an UnbindRecord is write-once"))]
#[serde(rename_all = "camelCase")]
pub struct UnbindRecordSpec {
    /// Namespace of the Tenant.
    #[schemars(length(min = 1, max = 63))]
    pub tenant_namespace: String,
    /// Name of the Tenant.
    #[schemars(length(min = 1, max = 253))]
    pub tenant_name: String,
    /// `metadata.uid` of the Tenant object that was unbound (a Tenant recreated
    /// under the same name is the same platform account, and stays unbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_uid: Option<String>,
    /// The DingTalk organization it was bound to.
    pub corp_id: String,
    /// The app it was bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
    /// When it was unbound.
    pub unbound_at: Time,
    /// Why it was unbound.
    pub reason: UnbindReason,
    /// The `dingbind.dev/confirm-app-removed` value that proved the app gone, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
}

impl UnbindRecordSpec {
    /// The tenant this record is about.
    pub fn tenant(&self) -> TenantKey {
        TenantKey {
            namespace: self.tenant_namespace.clone(),
            name: self.tenant_name.clone(),
        }
    }
}

/// The name of a tenant's record: `<namespace>.<name>` (a namespace has no
/// dots, so the name is unique), or, past the 253 characters a name may
/// have, a prefix of it and a stable hash of the whole.
pub fn record_name(tenant: &TenantKey) -> String {
    let full = format!("{}.{}", tenant.namespace, tenant.name);
    if full.len() <= 253 {
        return full;
    }
    let hash = fnv1a(full.as_bytes());
    let prefix: String = full.chars().take(253 - 17).collect();
    format!("{}-{hash:016x}", prefix.trim_end_matches(['.', '-']))
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> TenantKey {
        TenantKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn names_are_namespace_dot_name_and_stay_valid_when_long() {
        assert_eq!(record_name(&key("acme", "main")), "acme.main");
        assert_eq!(record_name(&key("a", "b.c")), "a.b.c");
        let long = key(&"n".repeat(63), &"x".repeat(253));
        let other = key(&"n".repeat(63), &format!("{}y", "x".repeat(252)));
        let (a, b) = (record_name(&long), record_name(&other));
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
        assert_eq!(a, record_name(&long), "stable");
    }
}
