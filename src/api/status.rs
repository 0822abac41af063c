//! `Tenant.status`: what the controller observed and did, following the
//! Kubernetes API conventions (conditions with `observedGeneration`, reasons in
//! CamelCase). The controller writes only this part of the object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

use super::Mode;

/// Observed state of a Tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The actual account mode. Once `Public` after an unbind, it never goes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The DingTalk organization the tenant is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_corp_id: Option<String>,
    /// When the tenant was unbound from DingTalk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbound_at: Option<Time>,
    /// Why the tenant was unbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbind_reason: Option<UnbindReason>,
    /// The app's visible scope as last read from DingTalk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_scope: Option<ObservedScope>,
    /// The tenant's directory, as synced from DingTalk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryStatus>,
    /// The last value of the `dingbind.dev/sync-requested-at` annotation handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_sync_request: Option<String>,
    /// The last value of the `dingbind.dev/approve-deletions` annotation used to
    /// let held removals through. An approval is used once; remove the
    /// annotation and set it again to approve a later hold of the same count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_approval: Option<String>,
    /// The channel events from DingTalk arrive by, while the tenant is bound
    /// and the runner listens (`--events stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsStatus>,
    /// Conditions: `Ready`, `Bound`, `ScopeInSync`, `DirectorySynced`,
    /// `EventsConnected`, and kstatus's `Reconciling` and `Stalled` (each present only while `True`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Why a tenant was unbound.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum UnbindReason {
    /// `spec.mode` was set to `Public` and the preconditions held.
    Requested,
    /// The trial expired.
    TrialExpired,
}

impl UnbindReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnbindReason::Requested => "Requested",
            UnbindReason::TrialExpired => "TrialExpired",
        }
    }
}

/// The app's visible scope as DingTalk reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedScope {
    /// Department ids (`1` is the whole organization).
    #[serde(default)]
    pub dept_ids: Vec<i64>,
    /// Userids of individual members.
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// Only administrators can see the app.
    #[serde(default)]
    pub only_admin_visible: bool,
}

/// How events from DingTalk reach dingbind.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum EventDelivery {
    /// Stream mode: an outbound WebSocket per app, held by the leader.
    #[default]
    Stream,
    /// HTTP push: DingTalk posts each event, signed and encrypted, to
    /// dingbind's receiver.
    #[serde(rename = "HTTP")]
    Http,
}

/// The events channel of a tenant, as of its last reconciliation. One
/// connection serves every Tenant of an app: the counts are the app's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsStatus {
    pub mode: EventDelivery,
    /// Since when the current connection is open (absent: not connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<Time>,
    /// When the last new event arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<Time>,
    /// New events received since the connection's runner started.
    #[serde(default)]
    pub events_received: u64,
    /// Redeliveries of events already received: acknowledged and dropped.
    #[serde(default)]
    pub duplicates_dropped: u64,
    /// Connections opened again after a drop or a disconnect from DingTalk.
    #[serde(default)]
    pub reconnects: u64,
}

/// Counts and timing of the tenant's directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryStatus {
    /// Departments in the directory.
    #[serde(default)]
    pub departments: u64,
    /// Members in the directory.
    #[serde(default)]
    pub members: u64,
    /// When the last sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// How long the last sync took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration_ms: Option<u64>,
    /// Members added by the last sync.
    #[serde(default)]
    pub added: u64,
    /// Members updated by the last sync.
    #[serde(default)]
    pub updated: u64,
    /// Members removed by the last sync.
    #[serde(default)]
    pub removed: u64,
    /// Removals held back by the accidental-delete guard, waiting for approval.
    #[serde(default)]
    pub pending_deletions: u64,
    /// Members missing from the last sync whose absence DingTalk did not
    /// confirm (they still exist, in the scope): kept, and checked again at
    /// the next sync.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unconfirmed: u64,
    /// Progress of the sync under way, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<SyncProgress>,
    /// The `metadata.generation` the last sync was made for (a sync whose
    /// removals are held back included); absent after a failed sync, so that
    /// the next reconciliation syncs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_generation: Option<i64>,
}

/// Progress of a running sync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// Departments read so far.
    #[serde(default)]
    pub departments: u64,
    /// Distinct members read so far.
    #[serde(default)]
    pub members: u64,
    /// When the sync started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

/// Condition types.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const BOUND: &str = "Bound";
    pub const SCOPE_IN_SYNC: &str = "ScopeInSync";
    pub const DIRECTORY_SYNCED: &str = "DirectorySynced";
    /// Events from DingTalk arrive (present while the runner listens for the tenant).
    pub const EVENTS_CONNECTED: &str = "EventsConnected";
    /// kstatus: work the spec asked for is under way (present only while `True`).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: nothing changes until a person acts (present only while `True`).
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons (CamelCase, as Kubernetes expects).
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const BOUND: &str = "Bound";
    pub const UNBOUND: &str = "Unbound";
    pub const PUBLIC_MODE: &str = "PublicMode";
    pub const SUSPENDED: &str = "Suspended";
    pub const INVALID_CREDENTIALS: &str = "InvalidCredentials";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const CORP_MISMATCH: &str = "CorpMismatch";
    pub const APP_NOT_FOUND: &str = "AppNotFound";
    pub const DINGTALK_UNAVAILABLE: &str = "DingTalkUnavailable";
    pub const SCOPE_UPDATED: &str = "ScopeUpdated";
    pub const SCOPE_MATCHES: &str = "ScopeMatches";
    /// `ScopeInSync` of a marketplace app without an expected scope: DingTalk's is the one.
    pub const SCOPE_SET_IN_DINGTALK: &str = "ScopeSetInDingTalk";
    /// `ScopeInSync=False`: a marketplace app's scope in DingTalk is not the expected one.
    pub const SCOPE_DIFFERS: &str = "ScopeDiffers";
    /// A marketplace tenant, but the controller has no suite (`--suite-secret`).
    pub const SUITE_NOT_CONFIGURED: &str = "SuiteNotConfigured";
    /// A marketplace tenant waits for DingTalk's first suite ticket.
    pub const WAITING_FOR_SUITE_TICKET: &str = "WaitingForSuiteTicket";
    /// The enterprise has not installed the marketplace app.
    pub const NOT_INSTALLED: &str = "NotInstalled";
    /// The enterprise uninstalled the marketplace app of a bound tenant.
    pub const APP_UNINSTALLED: &str = "AppUninstalled";
    pub const SYNCED: &str = "Synced";
    /// An Event: an incremental sync (events from DingTalk) changed the directory.
    pub const DIRECTORY_UPDATED: &str = "DirectoryUpdated";
    /// An Event: someone changed the app's visible scope in DingTalk.
    pub const SCOPE_CHANGED_IN_DINGTALK: &str = "ScopeChangedInDingTalk";
    pub const SYNCING: &str = "Syncing";
    /// `EventsConnected`: the Stream connection is open.
    pub const CONNECTED: &str = "Connected";
    /// `EventsConnected`: the first connection is being opened.
    pub const CONNECTING: &str = "Connecting";
    /// `EventsConnected`: the connection was lost or cannot be opened.
    pub const DISCONNECTED: &str = "Disconnected";
    /// `EventsConnected`: HTTP push, and the receiver takes the tenant's pushes.
    pub const RECEIVING: &str = "Receiving";
    /// `EventsConnected`: HTTP push, but no receiver (`--events-addr`) or no keys.
    pub const RECEIVER_UNAVAILABLE: &str = "ReceiverUnavailable";
    pub const DELETION_THRESHOLD_EXCEEDED: &str = "DeletionThresholdExceeded";
    /// An Event: `dingbind.dev/approve-deletions` names another count than the held removals.
    pub const APPROVAL_MISMATCH: &str = "ApprovalMismatch";
    pub const CREATOR_ACCOUNT_INCOMPLETE: &str = "CreatorAccountIncomplete";
    pub const APP_STILL_ENABLED: &str = "AppStillEnabled";
    pub const REBIND_FORBIDDEN: &str = "RebindForbidden";
    pub const TRIAL_EXPIRED: &str = "TrialExpired";
    pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
    pub const APP_STATE_UNPROVED: &str = "AppStateUnproved";
    pub const BINDING_CHANGED: &str = "BindingChanged";
    pub const APP_REMOVAL_CONFIRMED: &str = "AppRemovalConfirmed";
    pub const LEDGER_REPAIRED: &str = "LedgerRepaired";
    pub const UNBIND_RECORD_REPAIRED: &str = "UnbindRecordRepaired";
    pub const REMOVALS_UNCONFIRMED: &str = "RemovalsUnconfirmed";
    pub const ORGANIZATION_BOUND_AGAIN: &str = "OrganizationBoundAgain";
    /// The stored Tenant does not load as the Tenant type (Event only).
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Schema of `spec.sync.maxDeletions`: a count or a percentage.
pub(super) fn max_deletions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Accidental-delete guard: the most members one sync may remove without approval, as a count (50) or a share of the directory (\"10%\").",
        "x-kubernetes-int-or-string": true,
        // A count lands in a 32-bit integer (`IntOrString::Int`).
        "minimum": 0,
        "maximum": i32::MAX,
        "x-kubernetes-validations": [{
            "rule": "string(self).matches('^([0-9]+|([0-9]|[1-9][0-9]|100)%)$')",
            "message": "maxDeletions must be a count (e.g. 50) or a percentage from 0% to 100%"
        }]
    })
}

/// Schema of a date-time in the spec. Not `format: date-time`: the API
/// server's type check skips a list given for a string with a format, and a
/// list does not load as a time. A pattern (RFC 3339) and a CEL rule (a real
/// instant: no 31 February) instead.
pub(super) fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "When the trial ends (RFC 3339). The tenant is unbound automatically at that instant, without preconditions.",
        "type": "string",
        "maxLength": 64,
        "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
        "x-kubernetes-validations": [{
            "rule": "timestamp(self) == timestamp(self)",
            "message": "must be an RFC 3339 date-time such as 2026-01-31T18:00:00Z"
        }]
    })
}
