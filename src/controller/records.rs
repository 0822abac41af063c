//! The cluster's `UnbindRecord`s: a cache the reconciler reads as proof of an
//! unbind, the creation of a missing record, and the repair at start-up that
//! makes the store's ledger and the records hold the same unbinds.

use futures::StreamExt;
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store as Cache},
        watcher,
    },
};

use crate::{
    api::{TenantKey, UnbindRecord, UnbindRecordSpec, record_name},
    store::{LedgerEntry, Store},
};

use super::Error;

/// The records, cached by a watch.
#[derive(Clone)]
pub struct Records {
    api: Api<UnbindRecord>,
    cache: Cache<UnbindRecord>,
}

impl Records {
    /// Starts the watch and waits until the cache holds every record, so that
    /// no tenant is reconciled before its record could be seen.
    pub async fn start(client: Client) -> Result<Self, Error> {
        let api: Api<UnbindRecord> = Api::all(client);
        api.list(&ListParams::default().limit(1))
            .await
            .map_err(Error::RecordsUnavailable)?;
        let (cache, writer) = reflector::store();
        let watch = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching UnbindRecords");
                }
            });
        tokio::spawn(watch);
        cache
            .wait_until_ready()
            .await
            .map_err(|_| Error::RecordsCacheStopped)?;
        Ok(Self { api, cache })
    }

    /// The record of `tenant`, if the cluster holds one.
    pub fn get(&self, tenant: &TenantKey) -> Option<UnbindRecordSpec> {
        self.cache
            .get(&ObjectRef::new(&record_name(tenant)))
            .map(|r| r.spec.clone())
    }

    /// Creates `spec`'s record unless the cache already holds it. A record
    /// created meanwhile by someone else is left as it is (records are write-once).
    pub async fn ensure(&self, spec: &UnbindRecordSpec) -> Result<(), kube::Error> {
        let tenant = spec.tenant();
        if self.get(&tenant).is_some() {
            return Ok(());
        }
        let record = UnbindRecord::new(&record_name(&tenant), spec.clone());
        match self.api.create(&PostParams::default(), &record).await {
            Ok(_) => {
                tracing::info!(tenant = %tenant, "UnbindRecord written");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// At start-up: every record's unbind is in the store's ledger, and every
    /// unbind in the ledger has its record, for the tenants in `namespaces`
    /// (all when empty). Repairs are logged.
    pub async fn repair(&self, store: &Store, namespaces: &[String]) -> Result<(), Error> {
        let watched = |t: &TenantKey| namespaces.is_empty() || namespaces.contains(&t.namespace);
        for record in self.cache.state() {
            let spec = &record.spec;
            let tenant = spec.tenant();
            if !watched(&tenant) || store.is_unbound(&tenant).await? {
                continue;
            }
            store
                .append_ledger(
                    &tenant,
                    LedgerEntry::Unbound {
                        at: spec.unbound_at.0,
                        corp_id: spec.corp_id.clone(),
                        agent_id: spec.agent_id,
                        reason: spec.reason,
                        confirmation: spec.confirmation.clone(),
                    },
                )
                .await?;
            tracing::warn!(tenant = %tenant, "the store's ledger lacked an unbind the cluster's UnbindRecord holds: written again");
        }
        for tenant in store.tenants().await? {
            if !watched(&tenant) || self.get(&tenant).is_some() {
                continue;
            }
            let unbound = store
                .ledger(&tenant)
                .await?
                .into_iter()
                .find_map(|e| match e {
                    LedgerEntry::Unbound {
                        at,
                        corp_id,
                        agent_id,
                        reason,
                        confirmation,
                    } => Some(UnbindRecordSpec {
                        tenant_namespace: tenant.namespace.clone(),
                        tenant_name: tenant.name.clone(),
                        tenant_uid: None,
                        corp_id,
                        agent_id,
                        unbound_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at),
                        reason,
                        confirmation,
                    }),
                    LedgerEntry::Bound { .. } => None,
                });
            if let Some(spec) = unbound {
                self.ensure(&spec).await?;
                tracing::warn!(tenant = %tenant, "the cluster lacked the UnbindRecord of an unbind in the store's ledger: written again");
            }
        }
        Ok(())
    }
}
