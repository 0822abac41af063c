//! The `Tenant` custom resource (`dingbind.dev/v1alpha1`): the types, their
//! schema with its admission rules, and CRD generation.
//!
//! Everything a person can get wrong in a manifest is refused by the API server
//! through the schema and the CEL rules declared here; `dingbind validate`
//! evaluates the very same schema offline.

mod crd;
mod status;
mod unbind_record;

pub use crd::{crd, crd_yaml, crds};
pub use status::*;
pub use unbind_record::{BREAK_GLASS_GROUP, UnbindRecord, UnbindRecordSpec, record_name};

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::Time, util::intstr::IntOrString};
use kube::{CustomResource, KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

/// API group of every dingbind resource.
pub const GROUP: &str = "dingbind.dev";
/// Served and stored version of `Tenant`.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that applies `spec.deletionPolicy` before a Tenant goes away.
pub const FINALIZER: &str = "dingbind.dev/directory";
/// Annotation whose new value requests a directory sync now.
pub const SYNC_REQUESTED_AT: &str = "dingbind.dev/sync-requested-at";
/// Annotation approving deletions held back by the accidental-delete guard.
pub const APPROVE_DELETIONS: &str = "dingbind.dev/approve-deletions";

/// Annotation confirming that the bound app was disabled and deleted in
/// DingTalk (停用并删除), as `<corpId>/<agentId>`: the proof a requested unbind
/// needs when DingTalk can no longer show the app.
pub const CONFIRM_APP_REMOVED: &str = "dingbind.dev/confirm-app-removed";

/// Message of the admission rule that keeps the binding identity while bound.
pub const BINDING_IDENTITY_MESSAGE: &str =
    "spec.dingtalk.corpId and agentId cannot change while the tenant is bound";

/// Message of the admission rule on trials.
pub const TRIAL_RULE_MESSAGE: &str = "a trial can be removed or moved later, never added to a tenant that had none nor moved earlier";

/// Message of the admission rule that keeps an unbound tenant out of DingTalk mode.
pub const REBIND_FORBIDDEN_MESSAGE: &str =
    "a tenant that left DingTalk integration mode cannot return to it";

/// A tenant of the low-code platform and how its account is bound to DingTalk.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dingbind.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "tnt",
    namespaced,
    status = "TenantStatus",
    derive = "PartialEq",
    doc = "A tenant (one enterprise) of the low-code platform and its DingTalk binding.",
    printcolumn(name = "Mode", type_ = "string", description = "Actual account mode", json_path = ".status.mode"),
    printcolumn(name = "Corp", type_ = "string", description = "DingTalk organization", json_path = ".spec.dingtalk.corpId"),
    printcolumn(name = "Members", type_ = "integer", description = "Members in the directory", json_path = ".status.directory.members"),
    printcolumn(name = "Ready", type_ = "string", description = "Ready condition", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Last Sync", type_ = "date", description = "Last finished directory sync", json_path = ".status.directory.lastSyncTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "self.spec.mode == oldSelf.spec.mode || self.spec.mode != 'DingTalk' || !has(oldSelf.status) || !has(oldSelf.status.mode) || oldSelf.status.mode != 'Public'"
    ).message("a tenant that left DingTalk integration mode cannot return to it").field_path(".spec.mode"),
    validation = Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.boundCorpId) || !has(oldSelf.spec.dingtalk) || (has(self.spec.dingtalk) && self.spec.dingtalk.corpId == oldSelf.spec.dingtalk.corpId && has(self.spec.dingtalk.agentId) == has(oldSelf.spec.dingtalk.agentId) && (!has(self.spec.dingtalk.agentId) || self.spec.dingtalk.agentId == oldSelf.spec.dingtalk.agentId))"
    ).message("spec.dingtalk.corpId and agentId cannot change while the tenant is bound").field_path(".spec.dingtalk"),
    validation = Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.boundCorpId) || !has(oldSelf.spec.dingtalk) || !has(self.spec.dingtalk) || self.spec.dingtalk.app == oldSelf.spec.dingtalk.app"
    ).message("spec.dingtalk.app cannot change while the tenant is bound").field_path(".spec.dingtalk.app"),
)]
#[x_kube(
    validation = Rule::new("self.mode != 'DingTalk' || has(self.dingtalk)")
        .message("spec.dingtalk is required when mode is DingTalk")
        .field_path(".dingtalk"),
    validation = Rule::new("!has(self.trial) || (has(oldSelf.trial) && timestamp(self.trial.expiresAt) >= timestamp(oldSelf.trial.expiresAt))")
        .message("a trial can be removed or moved later, never added to a tenant that had none nor moved earlier")
        .field_path(".trial"),
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Desired account mode. `DingTalk`: the directory is synced from the DingTalk
    /// organization. `Public`: accounts are managed by the tenant itself. Moving a
    /// bound tenant to `Public` unbinds it once the preconditions hold, and that
    /// step can never be undone.
    pub mode: Mode,

    /// The DingTalk organization and app the tenant is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dingtalk: Option<DingTalkSpec>,

    /// The tenant's owner account. It is never listed in the directory; to unbind,
    /// it needs an email or phone and a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<CreatorSpec>,

    /// Trial settings: when the trial expires the tenant is unbound automatically,
    /// even while suspended. The trial can be removed (the tenant paid) or moved
    /// later; it cannot be added to a Tenant that had none, nor moved earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<TrialSpec>,

    /// Directory sync settings.
    #[serde(default)]
    pub sync: SyncSpec,

    /// What happens to the tenant's directory data when the Tenant is deleted.
    /// The binding ledger is always kept.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Stop reconciling this tenant, without deleting anything.
    #[serde(default)]
    pub suspend: bool,
}

/// Account mode of a tenant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Mode {
    /// DingTalk integration mode: the directory mirrors the app's visible scope.
    DingTalk,
    /// Public mode: accounts with phone or email and password.
    Public,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DingTalk => "DingTalk",
            Mode::Public => "Public",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The DingTalk organization, the app installed in it, and the app's visible scope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.app == 'Marketplace' || (has(self.agentId) && has(self.credentialsSecretRef) && has(self.visibleScope))")
        .message("an internal app needs agentId, credentialsSecretRef and visibleScope"),
    validation = Rule::new("self.app != 'Marketplace' || !has(self.credentialsSecretRef)")
        .message("a marketplace app has no credentials of its own: the suite's are configured once, with the controller's --suite-secret")
        .field_path(".credentialsSecretRef"),
    validation = Rule::new("self.app != 'Marketplace' || !has(self.events) || self.events.mode != 'HTTP'")
        .message("a marketplace app receives events in Stream mode only")
        .field_path(".events.mode"),
)]
#[serde(rename_all = "camelCase")]
pub struct DingTalkSpec {
    /// The kind of app: `Internal` (企业内部应用, the default: the enterprise
    /// created it and its key and secret are in `credentialsSecretRef`) or
    /// `Marketplace` (the platform's app, installed from DingTalk's app
    /// market; its visible scope is set in DingTalk's console). Fixed while
    /// the tenant is bound.
    #[serde(default)]
    pub app: AppKind,

    /// DingTalk organization id (corpId), e.g. `ding9f50b15bxxxx16741`. Fixed
    /// while the tenant is bound, with `agentId`: the binding identity.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub corp_id: String,

    /// The app's agentId in that organization. Fixed while the tenant is
    /// bound. Required for an internal app; a marketplace app's is learned
    /// from the install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub agent_id: Option<i64>,

    /// Secret in the Tenant's namespace holding the app's credentials
    /// (internal apps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,

    /// Who can see the app, and so who is in the tenant's directory. An
    /// internal app's is made so in DingTalk. A marketplace app's is set by
    /// the enterprise's admin in DingTalk's console: this field is then the
    /// scope the platform expects, and `ScopeInSync` says what differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_scope: Option<VisibleScope>,

    /// How events from DingTalk reach dingbind (docs/events.md). Without
    /// it, Stream mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsSpec>,
}

/// The kind of DingTalk app a tenant is bound through.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, schemars::JsonSchema,
)]
pub enum AppKind {
    /// An internal app (企业内部应用), with its own key and secret.
    #[default]
    Internal,
    /// The platform's marketplace app (a suite), installed from DingTalk's app market.
    Marketplace,
}

/// How events from DingTalk reach dingbind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsSpec {
    /// `Stream` (the default: outbound connections, no Ingress) or `HTTP`
    /// (DingTalk posts each event to dingbind's receiver, `--events-addr`;
    /// the credentials Secret then holds `token` and `aesKey`).
    #[serde(default)]
    pub mode: EventDelivery,
}

impl DingTalkSpec {
    pub fn is_marketplace(&self) -> bool {
        self.app == AppKind::Marketplace
    }

    /// The way events arrive: `spec.dingtalk.events.mode`, Stream by default.
    pub fn event_delivery(&self) -> EventDelivery {
        self.events.as_ref().map(|e| e.mode).unwrap_or_default()
    }
}

/// Reference to the Secret with the app's appKey and appSecret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the Tenant's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the appKey (Client ID).
    #[serde(default = "default_app_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub app_key_key: String,
    /// Key holding the appSecret (Client Secret).
    #[serde(default = "default_app_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub app_secret_key: String,
    /// Key holding HTTP push's signature token (read with `events.mode: HTTP`).
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub token_key: String,
    /// Key holding HTTP push's aes_key, 43 letters and digits (read with
    /// `events.mode: HTTP`).
    #[serde(default = "default_aes_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub aes_key_key: String,
}

fn default_token_key() -> String {
    "token".into()
}

fn default_aes_key_key() -> String {
    "aesKey".into()
}

fn default_app_key_key() -> String {
    "appKey".into()
}

fn default_app_secret_key() -> String {
    "appSecret".into()
}

/// The app's visible scope: either all employees, or chosen departments (with
/// their sub-departments) and members. Never both, never empty.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("!(has(self.allEmployees) && self.allEmployees) || ((!has(self.departments) || size(self.departments) == 0) && (!has(self.users) || size(self.users) == 0))")
        .message("visibleScope cannot combine allEmployees with departments or users"),
    validation = Rule::new("(has(self.allEmployees) && self.allEmployees) || (has(self.departments) && size(self.departments) > 0) || (has(self.users) && size(self.users) > 0)")
        .message("visibleScope must not be empty: set allEmployees: true, or list departments and/or users")
)]
#[serde(rename_all = "camelCase")]
pub struct VisibleScope {
    /// Every employee of the organization can see the app.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_employees: bool,
    /// DingTalk department ids; each covers its sub-departments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000), inner(range(min = 1)))]
    pub departments: Vec<i64>,
    /// DingTalk userids of individual members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000), inner(length(min = 1, max = 64)))]
    pub users: Vec<String>,
}

/// The tenant's owner account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorSpec {
    /// Email address of the creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: Option<String>,
    /// Phone number of the creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^\+?[0-9][0-9 -]{3,30}$"))]
    pub phone: Option<String>,
    /// Secret key holding the creator's password (never copied anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// A key in a Secret of the Tenant's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// Trial settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialSpec {
    /// When the trial ends (RFC 3339). The tenant is unbound automatically at that
    /// instant, without preconditions.
    #[schemars(schema_with = "status::date_time_schema")]
    pub expires_at: Time,
}

/// Directory sync settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// Time between periodic syncs, as a duration such as `10m` or `1h30m`. At least `1m`.
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("sync.interval must be at least 1m"))]
    pub interval: Duration,
    /// Accidental-delete guard: the most members one sync may remove without
    /// approval, as a count (`50`) or a share of the directory (`10%`).
    #[serde(default = "default_max_deletions")]
    #[schemars(schema_with = "status::max_deletions_schema")]
    pub max_deletions: IntOrString,
}

fn default_interval() -> Duration {
    std::time::Duration::from_secs(600).into()
}

fn default_max_deletions() -> IntOrString {
    IntOrString::String("10%".into())
}

impl Default for SyncSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            max_deletions: default_max_deletions(),
        }
    }
}

impl SyncSpec {
    /// The removal limit for a directory of `current` members. A percentage is
    /// rounded up, so that one departure from a small directory needs no approval.
    pub fn max_deletions_for(&self, current: u64) -> u64 {
        match &self.max_deletions {
            IntOrString::Int(n) => u64::try_from(*n).unwrap_or(0),
            IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<u64>) {
                Some(Ok(pct)) => (current * pct.min(100)).div_ceil(100),
                _ => s.parse().unwrap_or(0),
            },
        }
    }
}

/// What happens to the directory when the Tenant is deleted.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Keep the directory data.
    #[default]
    Retain,
    /// Delete the directory data. The binding ledger is kept.
    Delete,
}

impl Tenant {
    /// `namespace/name`, the key of the tenant everywhere outside Kubernetes.
    pub fn key(&self) -> TenantKey {
        TenantKey {
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// Identity of a tenant: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for TenantKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: ns.into(),
                    name: name.into(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_deletions_count_and_percentage() {
        let mut s = SyncSpec::default();
        assert_eq!(s.max_deletions_for(1000), 100);
        assert_eq!(s.max_deletions_for(3), 1, "rounded up");
        s.max_deletions = IntOrString::Int(7);
        assert_eq!(s.max_deletions_for(1000), 7);
        s.max_deletions = IntOrString::String("0%".into());
        assert_eq!(s.max_deletions_for(1000), 0);
    }

    #[test]
    fn tenant_key_parses_namespace_and_name() {
        let k: TenantKey = "acme/main".parse().unwrap();
        assert_eq!(k.to_string(), "acme/main");
        assert!("acme".parse::<TenantKey>().is_err());
        assert!("a/b/c".parse::<TenantKey>().is_err());
    }
}
