//! The imperative shell: observe (DingTalk, the store), let `core` decide, act,
//! and report the status to write. Shared by `dingbind controller` (Tenants
//! from the API server) and `dingbind dev` (Tenants from files): the caller
//! resolves the referenced Secrets and writes the outcome where it belongs.

pub mod budget;
pub mod read;

mod incremental;
mod marketplace;
mod operate;
mod outcome;
mod secrets;
mod sync;
mod unbind;

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use jiff::Timestamp;

use crate::{
    api::{Mode, SyncProgress, Tenant, TenantKey, TenantStatus, UnbindReason, UnbindRecordSpec},
    core::{
        binding::{self, Binding, Proofs, RecordedTrial, Step, Unbind},
        channel::ChannelFacts,
        dirty::Dirty,
        status::StatusBuilder,
    },
    dingtalk::{self, AppClient, Secret, TokenSource},
    store::{LedgerEntry, Store},
};

use budget::SyncMemory;
pub use operate::{APP_DOCUMENT, AppRunning};
use outcome::Run;
pub use outcome::{Event, Outcome, SyncReport};
pub use secrets::{CallbackKeys, Credentials, SUITE_KEY_KEY, SUITE_SECRET_KEY, Secrets, suite_of};
pub use sync::{Plan, SyncPlan};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("directory store: {0}")]
    Store(#[from] crate::store::Error),
}

/// What events from DingTalk told the runner about a tenant since its last
/// reconciliation: what they marked, and the channel they arrive by (`None`:
/// the runner does not listen for it).
#[derive(Clone, Debug, Default)]
pub struct EventsSeen {
    pub dirty: Dirty,
    pub channel: Option<ChannelFacts>,
}

/// Store document holding each tenant's latest status (also read by `dingbind status`).
pub const STATUS_DOCUMENT: &str = "status";

/// The reconciler: a store, a DingTalk client, and one app handle per app
/// (so tokens and pacing survive across reconciliations).
pub struct Reconciler {
    store: Store,
    dingtalk: dingtalk::Client,
    /// One client per app key, with the secret it was made for: a new secret
    /// replaces the entry (its token cache goes with it).
    apps: Mutex<HashMap<String, (Secret, AppClient)>>,
    /// (appKey, corpId) pairs already found to belong together: checked once per process.
    corps: Mutex<HashSet<(String, String)>>,
    /// Whether the runner keeps `UnbindRecord`s (a cluster does; `dev` does not).
    keeps_records: bool,
    /// The memory budget concurrent syncs share (`--sync-memory`).
    sync_memory: SyncMemory,
    /// The marketplace suite (`--suite-secret`) and its clients.
    suite: Option<marketplace::SuiteClients>,
}

impl Reconciler {
    pub fn new(store: Store, dingtalk: dingtalk::Client) -> Self {
        Self {
            store,
            dingtalk,
            apps: Mutex::new(HashMap::new()),
            corps: Mutex::new(HashSet::new()),
            keeps_records: false,
            sync_memory: SyncMemory::default(),
            suite: None,
        }
    }

    /// A reconciler for marketplace tenants too: `suite` is the platform's
    /// marketplace app, whose ticket the runner keeps fresh.
    pub fn with_suite(mut self, suite: dingtalk::Suite) -> Self {
        self.suite = Some(marketplace::SuiteClients::new(&self.dingtalk, suite));
        self
    }

    /// The marketplace suite, if one is configured.
    pub fn suite(&self) -> Option<&dingtalk::Suite> {
        self.suite.as_ref().map(marketplace::SuiteClients::suite)
    }

    /// A reconciler whose syncs share `mib` MiB (`--sync-memory`; default
    /// [`budget::DEFAULT_SYNC_MEMORY_MIB`]): a sync waits for its share.
    pub fn with_sync_memory(mut self, mib: u32) -> Self {
        self.sync_memory = SyncMemory::new(mib);
        self
    }

    /// A reconciler whose runner keeps an `UnbindRecord` for every unbind
    /// (the controller): each [`Outcome`] then names the record that must exist.
    pub fn keeping_unbind_records(mut self) -> Self {
        self.keeps_records = true;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn dingtalk(&self) -> &dingtalk::Client {
        &self.dingtalk
    }

    fn corp_checked(&self, c: &Credentials, corp_id: &str) -> bool {
        let corps = self.corps.lock().unwrap_or_else(|p| p.into_inner());
        corps.contains(&(c.app_key.clone(), corp_id.to_string()))
    }

    fn remember_corp(&self, c: &Credentials, corp_id: &str) {
        let mut corps = self.corps.lock().unwrap_or_else(|p| p.into_inner());
        corps.insert((c.app_key.clone(), corp_id.to_string()));
    }

    fn app(&self, c: &Credentials) -> AppClient {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        match apps.get(&c.app_key) {
            Some((secret, app)) if *secret == c.app_secret => app.clone(),
            _ => {
                let app = self.dingtalk.app(TokenSource::internal_app(
                    c.app_key.clone(),
                    c.app_secret.clone(),
                ));
                apps.insert(c.app_key.clone(), (c.app_secret.clone(), app.clone()));
                app
            }
        }
    }

    /// One reconciliation of `tenant` at `now`. `record` is the cluster's
    /// `UnbindRecord` of the tenant, if one exists; `progress` is told how a
    /// long sync advances.
    pub async fn reconcile(
        &self,
        tenant: &Tenant,
        secrets: &Secrets,
        record: Option<&UnbindRecordSpec>,
        now: Timestamp,
        progress: &(dyn Fn(&SyncProgress) + Send + Sync),
    ) -> Result<Outcome, Error> {
        self.reconcile_with_events(
            tenant,
            secrets,
            record,
            &EventsSeen::default(),
            now,
            progress,
        )
        .await
    }

    /// [`Reconciler::reconcile`], with what events from DingTalk told since
    /// the last one (`events`): users and departments to read again (an
    /// incremental sync, unless a full one is due anyway), a full sync, the
    /// scope changed in DingTalk; and the channel, for `EventsConnected`. One span per reconciliation, naming the
    /// tenant: every log line of it carries the name.
    #[tracing::instrument(name = "reconcile", skip_all, fields(tenant = %tenant.key()))]
    pub async fn reconcile_with_events(
        &self,
        tenant: &Tenant,
        secrets: &Secrets,
        record: Option<&UnbindRecordSpec>,
        events: &EventsSeen,
        now: Timestamp,
        progress: &(dyn Fn(&SyncProgress) + Send + Sync),
    ) -> Result<Outcome, Error> {
        let key = tenant.key();
        if let Some(state) = events.dirty.install {
            self.keep_install_state(&key, state, now).await?;
        }
        let ledger = self.ledger_facts(&key).await?;
        let previous = self.previous_status(&key, tenant).await?;
        let proofs = Proofs {
            ledger: ledger.unbind.clone(),
            record: record.map(unbind_of_record),
            status: status_unbind(&previous)
                .or_else(|| tenant.status.as_ref().and_then(status_unbind)),
        };
        let mut run = Run::new(
            tenant,
            &events.dirty,
            StatusBuilder::new(tenant.metadata.generation, previous, now),
        );
        let binding = ledger.binding.as_ref();
        let trial_end = binding::trial_end(&tenant.spec, binding);
        match binding::next_step(&tenant.spec, binding, proofs.unbind().as_ref(), now) {
            Step::Suspended => run.status.suspended(trial_end),
            Step::Public => run.status.public(),
            Step::Unbound {
                unbind,
                rebind_requested,
            } => {
                self.unbound(&key, &mut run, secrets, &proofs, unbind, rebind_requested)
                    .await?
            }
            Step::TrialEndedBeforeBinding { ended } => run.status.never_bound(ended),
            Step::UnbindTrialExpired { bound } => {
                self.unbind(
                    &key,
                    &mut run,
                    secrets,
                    &bound,
                    UnbindReason::TrialExpired,
                    None,
                )
                .await?
            }
            Step::BindingChanged { bound, declared } => {
                run.status
                    .binding_changed(&bound, declared.as_ref(), trial_end)
            }
            Step::RequestedUnbind { bound } => {
                self.requested_unbind(&key, tenant, secrets, &mut run, &bound)
                    .await?
            }
            Step::Operate => {
                self.operate(&key, tenant, secrets, &mut run, binding, progress)
                    .await?
            }
        }
        run.status.events_channel(events.channel.as_ref());
        let outcome = run.finish();
        self.store
            .put_document(
                &key,
                STATUS_DOCUMENT,
                &serde_json::to_value(&outcome.status).unwrap_or_default(),
            )
            .await?;
        Ok(outcome)
    }

    /// Applies `deletionPolicy` when a Tenant is deleted. The ledger is kept either way.
    pub async fn cleanup(&self, tenant: &Tenant) -> Result<(), Error> {
        if tenant.spec.deletion_policy == crate::api::DeletionPolicy::Delete {
            self.store.delete_tenant_data(&tenant.key()).await?;
        }
        Ok(())
    }

    /// The freshest status of `tenant`: the one this reconciler last wrote to the
    /// store, which the API server's copy in a watch cache may lag behind (a
    /// stale copy would, say, run a handled sync request again). A Tenant
    /// without status is a new object: nothing from an earlier one carries over.
    async fn previous_status(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
    ) -> Result<TenantStatus, Error> {
        let Some(cached) = &tenant.status else {
            return Ok(TenantStatus::default());
        };
        let stored = self.store.typed_document(key, STATUS_DOCUMENT).await?;
        Ok(stored.unwrap_or_else(|| cached.clone()))
    }

    /// The latest binding and the unbind (if any) in the tenant's ledger.
    async fn ledger_facts(&self, key: &TenantKey) -> Result<LedgerFacts, Error> {
        let mut facts = LedgerFacts::default();
        for entry in self.store.ledger(key).await? {
            match entry {
                LedgerEntry::Bound {
                    at,
                    corp_id,
                    agent_id,
                    trial_ends_at,
                } => {
                    let trial = match (agent_id, trial_ends_at) {
                        (None, _) => RecordedTrial::Unrecorded,
                        (Some(_), None) => RecordedTrial::None,
                        (Some(_), Some(end)) => RecordedTrial::EndsAt(end),
                    };
                    facts.binding = Some(Binding {
                        at,
                        corp_id,
                        agent_id,
                        trial,
                    });
                }
                LedgerEntry::Unbound {
                    at,
                    corp_id,
                    agent_id,
                    reason,
                    ..
                } => {
                    facts.unbind.get_or_insert(Unbind {
                        at,
                        reason,
                        corp_id,
                        agent_id,
                    });
                }
            }
        }
        Ok(facts)
    }
}

/// What the ledger says about a tenant.
#[derive(Default)]
struct LedgerFacts {
    binding: Option<Binding>,
    unbind: Option<Unbind>,
}

/// The unbind a Tenant's status proves: `mode: Public` with `unboundAt`.
fn status_unbind(s: &TenantStatus) -> Option<Unbind> {
    match (s.mode, &s.unbound_at) {
        (Some(Mode::Public), Some(at)) => Some(Unbind {
            at: at.0,
            reason: s.unbind_reason.unwrap_or(UnbindReason::Requested),
            corp_id: String::new(),
            agent_id: None,
        }),
        _ => None,
    }
}

/// The unbind an `UnbindRecord` proves.
fn unbind_of_record(r: &UnbindRecordSpec) -> Unbind {
    Unbind {
        at: r.unbound_at.0,
        reason: r.reason,
        corp_id: r.corp_id.clone(),
        agent_id: r.agent_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_app_secret_replaces_the_client_instead_of_adding_one() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&url).await.unwrap();
        let client =
            dingtalk::Client::new(dingtalk::Config::with_base_url("http://127.0.0.1:1")).unwrap();
        let r = Reconciler::new(store, client);
        let creds = |secret: &str| Credentials {
            app_key: "key".into(),
            app_secret: Secret::new(secret),
        };
        for i in 0..10 {
            r.app(&creds(&format!("secret-{i}")));
        }
        r.app(&creds("secret-9"));
        let apps = r.apps.lock().unwrap();
        assert_eq!(apps.len(), 1, "one entry per app key");
        assert_eq!(apps["key"].0, Secret::new("secret-9"));
    }
}
