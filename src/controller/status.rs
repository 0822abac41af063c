//! Writing `Tenant.status` through the status subresource. The controller never
//! writes `spec`: every write here is one server-side apply of the whole
//! status, field manager `dingbind`, so a field the new status leaves out is
//! removed by the API server, with no copy of the old status to diff against.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::api::{SyncProgress, Tenant, TenantStatus};
use crate::core::kstatus;

/// Field manager of dingbind's writes.
pub const MANAGER: &str = "dingbind";

/// How often the progress of a long sync is written, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Replaces the status of the Tenant `name` with `status`: one server-side
/// apply, forced (dingbind is the only writer of status).
pub async fn write(
    api: &Api<Tenant>,
    name: &str,
    status: &TenantStatus,
) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": Tenant::api_version(&()),
        "kind": Tenant::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force().validation_strict(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Earlier releases wrote status as a merge patch, which the API server
/// records as an `Update` by `dingbind`. Fields owned that way would outlive a
/// server-side apply that leaves them out, so the first reconciliation of
/// such a Tenant hands them to dingbind's `Apply` entry first, as client-go's
/// `csaupgrade` does. A no-op for a Tenant written only by apply.
pub async fn adopt_merge_patched_fields(
    api: &Api<Tenant>,
    tenant: &Tenant,
) -> Result<(), kube::Error> {
    let Some(entries) = adopted(&tenant.metadata) else {
        return Ok(());
    };
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    // The resourceVersion makes it conditional: a Tenant changed since it was
    // read is refused (409) and the reconciliation retried on the new one.
    let patch = json!({
        "metadata": {
            "resourceVersion": tenant.metadata.resource_version,
            "managedFields": entries,
        }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The managed fields with dingbind's status `Update` entry folded into its
/// status `Apply` entry, or `None` when there is no such `Update` entry.
fn adopted(meta: &ObjectMeta) -> Option<Vec<ManagedFieldsEntry>> {
    let entries = meta.managed_fields.as_deref()?;
    let is_ours = |e: &ManagedFieldsEntry, operation: &str| {
        e.manager.as_deref() == Some(MANAGER)
            && e.operation.as_deref() == Some(operation)
            && e.subresource.as_deref() == Some("status")
    };
    let update = entries.iter().position(|e| is_ours(e, "Update"))?;
    let mut out = entries.to_vec();
    let old = out.remove(update);
    let old_fields = old.fields_v1.as_ref().map_or(Value::Null, |f| f.0.clone());
    match out.iter_mut().find(|e| is_ours(e, "Apply")) {
        Some(apply) => {
            let mut fields = apply.fields_v1.take().map_or(Value::Null, |f| f.0);
            union(&mut fields, &old_fields);
            apply.fields_v1 = Some(FieldsV1(fields));
        }
        None => out.push(ManagedFieldsEntry {
            operation: Some("Apply".into()),
            ..old
        }),
    }
    Some(out)
}

/// Adds every path of the field set `from` to `into` (a `FieldsV1` tree of
/// objects).
fn union(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                union(a.entry(k.clone()).or_insert_with(|| json!({})), v);
            }
        }
        (into @ Value::Null, from) => *into = from.clone(),
        _ => {}
    }
}

/// Writes the progress of a long sync (with `Reconciling=True Syncing`,
/// `kstatus::syncing`) on top of the last written status, at most every
/// couple of seconds, without holding the sync up.
pub struct ProgressWriter {
    tx: Arc<watch::Sender<Option<SyncProgress>>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWriter {
    /// `base` is the Tenant's status as last written; `generation` its
    /// `metadata.generation`.
    pub fn spawn(
        api: Api<Tenant>,
        name: String,
        base: TenantStatus,
        generation: Option<i64>,
    ) -> Self {
        let (tx, mut rx) = watch::channel(None::<SyncProgress>);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let Some(p) = rx.borrow_and_update().clone() else {
                    continue;
                };
                // Never cut off mid-request: a write still in flight could
                // otherwise land after the final status.
                let status = kstatus::syncing(base.clone(), p, generation, Timestamp::now());
                if let Err(e) = write(&api, &name, &status).await {
                    tracing::debug!(error = %e, "cannot write sync progress");
                }
                tokio::select! {
                    biased;
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(PROGRESS_EVERY) => {}
                }
            }
        });
        Self {
            tx: Arc::new(tx),
            stop,
            task,
        }
    }

    /// A callback for the reconciler.
    pub fn reporter(&self) -> impl Fn(&SyncProgress) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |p| {
            tx.send_replace(Some(p.clone()));
        }
    }

    /// Stops writing progress once a write under way has finished, so the
    /// final status that follows replaces the last progress written.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::debug!(error = %e, "the sync progress writer ended abnormally");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(operation: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(MANAGER.into()),
            operation: Some(operation.into()),
            subresource: subresource.map(Into::into),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            api_version: Some("dingbind.dev/v1alpha1".into()),
            time: None,
        }
    }

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    #[test]
    fn a_status_written_only_by_apply_needs_no_adoption() {
        let applied = entry("Apply", Some("status"), json!({"f:status": {"f:mode": {}}}));
        // dingbind's Update of the main resource (the finalizer) is not status.
        let finalizer = entry("Update", None, json!({"f:metadata": {"f:finalizers": {}}}));
        assert_eq!(adopted(&meta(vec![applied, finalizer])), None);
        assert_eq!(adopted(&ObjectMeta::default()), None);
    }

    #[test]
    fn a_merge_patched_status_becomes_dingbinds_applied_status() {
        let update = entry(
            "Update",
            Some("status"),
            json!({"f:status": {"f:mode": {}, "f:directory": {"f:progress": {}}}}),
        );
        let other = ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            ..entry("Update", None, json!({"f:spec": {}}))
        };
        let out = adopted(&meta(vec![other.clone(), update])).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], other);
        assert_eq!(out[1].operation.as_deref(), Some("Apply"));
        assert_eq!(out[1].subresource.as_deref(), Some("status"));
        assert_eq!(
            out[1].fields_v1.as_ref().unwrap().0,
            json!({"f:status": {"f:mode": {}, "f:directory": {"f:progress": {}}}})
        );
    }

    #[test]
    fn both_entries_are_merged_into_one_apply_entry() {
        let update = entry(
            "Update",
            Some("status"),
            json!({"f:status": {"f:unbindReason": {}, "f:directory": {"f:progress": {}}}}),
        );
        let applied = entry(
            "Apply",
            Some("status"),
            json!({"f:status": {"f:mode": {}, "f:directory": {"f:members": {}}}}),
        );
        let out = adopted(&meta(vec![applied, update])).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].fields_v1.as_ref().unwrap().0,
            json!({"f:status": {
                "f:mode": {},
                "f:unbindReason": {},
                "f:directory": {"f:members": {}, "f:progress": {}}
            }})
        );
    }
}
