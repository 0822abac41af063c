//! What the store keeps besides the directory itself (which is
//! [`crate::core::directory::Directory`]): the account, the binding ledger and
//! sync runs. Plain data, plus the conversions both backends share.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use crate::api::{Mode, UnbindReason};
use crate::core::directory::DirectoryDiff;

/// The tenant's account on the platform. The creator's password itself is never
/// stored here: only whether one is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The current account mode.
    pub mode: Mode,
    /// The DingTalk organization the tenant is (or was last) bound to.
    pub corp_id: Option<String>,
    /// The creator's email, if set.
    pub creator_email: Option<String>,
    /// The creator's phone number, if set.
    pub creator_phone: Option<String>,
    /// Whether the creator has set a password.
    pub password_set: bool,
}

/// One entry of the binding ledger. The ledger is append-only: no store API
/// rewrites or deletes an entry, and the database refuses it too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all_fields = "camelCase")]
pub enum LedgerEntry {
    /// The tenant was bound to app `agent_id` of the DingTalk organization
    /// `corp_id`: the binding identity, fixed until the tenant is unbound.
    Bound {
        at: Timestamp,
        corp_id: String,
        /// `None` only in entries written before the app was recorded.
        agent_id: Option<i64>,
        /// The trial end the spec declared when the tenant was bound (`None`: no trial).
        trial_ends_at: Option<Timestamp>,
    },
    /// The tenant was unbound from `corp_id`, for good.
    Unbound {
        at: Timestamp,
        corp_id: String,
        agent_id: Option<i64>,
        reason: UnbindReason,
        /// The `dingbind.dev/confirm-app-removed` value that proved the app
        /// gone, when DingTalk could no longer show it.
        confirmation: Option<String>,
    },
}

impl LedgerEntry {
    /// When it happened.
    pub fn at(&self) -> Timestamp {
        match self {
            LedgerEntry::Bound { at, .. } | LedgerEntry::Unbound { at, .. } => *at,
        }
    }

    /// The DingTalk organization concerned.
    pub fn corp_id(&self) -> &str {
        match self {
            LedgerEntry::Bound { corp_id, .. } | LedgerEntry::Unbound { corp_id, .. } => corp_id,
        }
    }
}

/// How a sync run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyncOutcome {
    /// The directory now mirrors DingTalk.
    Succeeded,
    /// The sync failed; the directory is unchanged.
    Failed,
    /// The delete guard held the sync back; the directory is unchanged.
    Held,
}

impl SyncOutcome {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Succeeded => "Succeeded",
            SyncOutcome::Failed => "Failed",
            SyncOutcome::Held => "Held",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "Succeeded" => Ok(SyncOutcome::Succeeded),
            "Failed" => Ok(SyncOutcome::Failed),
            "Held" => Ok(SyncOutcome::Held),
            other => Err(corrupt(
                "reading sync runs",
                format!("unknown outcome {other:?}"),
            )),
        }
    }
}

/// What the caller records about one sync run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunRecord {
    /// When the run started.
    pub started: Timestamp,
    /// When it finished.
    pub finished: Timestamp,
    /// How it ended.
    pub outcome: SyncOutcome,
    /// Members added (departments are not counted, as in the Tenant's status).
    pub added: u64,
    /// Members updated.
    pub updated: u64,
    /// Members removed.
    pub removed: u64,
    /// DingTalk API calls made.
    pub calls: u64,
    /// Deletions the delete guard held back.
    pub held_deletions: u64,
    /// Why the run failed or was held, if it did.
    pub message: Option<String>,
}

impl SyncRunRecord {
    /// A successful run that applied `diff`, with its member counts.
    pub fn succeeded(started: Timestamp, finished: Timestamp, diff: &DirectoryDiff) -> Self {
        SyncRunRecord {
            started,
            finished,
            outcome: SyncOutcome::Succeeded,
            added: count(diff.add_members.len()),
            updated: count(diff.update_members.len()),
            removed: count(diff.remove_members.len()),
            calls: 0,
            held_deletions: 0,
            message: None,
        }
    }

    /// A run that changed nothing in the directory (`Failed` or `Held`).
    pub fn unapplied(
        started: Timestamp,
        finished: Timestamp,
        outcome: SyncOutcome,
        message: impl Into<String>,
    ) -> Self {
        SyncRunRecord {
            started,
            finished,
            outcome,
            added: 0,
            updated: 0,
            removed: 0,
            calls: 0,
            held_deletions: 0,
            message: Some(message.into()),
        }
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The id the store gave a sync run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyncRunId(pub i64);

impl std::fmt::Display for SyncRunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A recorded sync run, as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRun {
    pub id: SyncRunId,
    #[serde(flatten)]
    pub record: SyncRunRecord,
    /// Directory rows the store actually wrote for this run (inserted, changed
    /// or deleted; unchanged rows are never rewritten, so an unchanged sync
    /// writes 0). Always 0 for runs recorded with `record_sync_run`.
    pub rows_written: u64,
}

// ---- conversions shared by both backends ----

pub(crate) fn corrupt(context: &str, reason: String) -> Error {
    Error::Corrupt {
        context: context.to_string(),
        reason,
    }
}

/// A `u64` count as the `BIGINT` both backends store.
pub(crate) fn to_db_count(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidInput {
        context: format!("recording {what}"),
        reason: format!("{n} is above {}", i64::MAX),
    })
}

/// A stored count back to `u64`.
pub(crate) fn from_db_count(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt("reading sync runs", format!("negative {what}: {n}")))
}

/// Timestamps are stored with microsecond precision (what PostgreSQL keeps).
pub(crate) fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn from_micros(us: i64, context: &str) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| corrupt(context, format!("timestamp {us}us: {e}")))
}

pub(crate) fn mode_from_str(s: &str) -> Result<Mode> {
    match s {
        "DingTalk" => Ok(Mode::DingTalk),
        "Public" => Ok(Mode::Public),
        other => Err(corrupt(
            "reading the account",
            format!("unknown mode {other:?}"),
        )),
    }
}

pub(crate) fn reason_from_str(s: &str) -> Result<UnbindReason> {
    match s {
        "Requested" => Ok(UnbindReason::Requested),
        "TrialExpired" => Ok(UnbindReason::TrialExpired),
        other => Err(corrupt(
            "reading the ledger",
            format!("unknown unbind reason {other:?}"),
        )),
    }
}

/// The columns of a ledger row, as both backends read and write them.
pub(crate) struct LedgerColumns<'a> {
    pub event: &'a str,
    pub at: Timestamp,
    pub corp_id: &'a str,
    pub reason: Option<&'a str>,
    pub agent_id: Option<i64>,
    pub trial_ends_at: Option<Timestamp>,
    pub confirmation: Option<&'a str>,
}

/// A ledger row back into an entry.
pub(crate) fn ledger_entry(c: LedgerColumns<'_>) -> Result<LedgerEntry> {
    let corp_id = c.corp_id.to_owned();
    match (c.event, c.reason) {
        ("Bound", None) => Ok(LedgerEntry::Bound {
            at: c.at,
            corp_id,
            agent_id: c.agent_id,
            trial_ends_at: c.trial_ends_at,
        }),
        ("Unbound", Some(reason)) => Ok(LedgerEntry::Unbound {
            at: c.at,
            corp_id,
            agent_id: c.agent_id,
            reason: reason_from_str(reason)?,
            confirmation: c.confirmation.map(str::to_owned),
        }),
        (event, reason) => Err(corrupt(
            "reading the ledger",
            format!("event {event:?} with reason {reason:?}"),
        )),
    }
}

/// The columns of a ledger entry.
pub(crate) fn ledger_columns(entry: &LedgerEntry) -> LedgerColumns<'_> {
    match entry {
        LedgerEntry::Bound {
            at,
            corp_id,
            agent_id,
            trial_ends_at,
        } => LedgerColumns {
            event: "Bound",
            at: *at,
            corp_id,
            reason: None,
            agent_id: *agent_id,
            trial_ends_at: *trial_ends_at,
            confirmation: None,
        },
        LedgerEntry::Unbound {
            at,
            corp_id,
            agent_id,
            reason,
            confirmation,
        } => LedgerColumns {
            event: "Unbound",
            at: *at,
            corp_id,
            reason: Some(reason.as_str()),
            agent_id: *agent_id,
            trial_ends_at: None,
            confirmation: confirmation.as_deref(),
        },
    }
}

/// What a login decision reads of a tenant ([`super::Store::login_facts`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoginFacts {
    /// The account's mode (`None`: no account yet).
    pub mode: Option<Mode>,
    /// The ledger records an unbind.
    pub unbound: bool,
    /// The two documents asked for, as stored.
    pub documents: [Option<serde_json::Value>; 2],
}
