//! Writing `Tenant.status` through the status subresource. The controller never
//! writes `spec`: every write here goes to `/status` as a JSON merge patch.

use std::sync::Arc;

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::api::{SyncProgress, Tenant, TenantStatus};

/// Field manager of dingbind's writes.
pub const MANAGER: &str = "dingbind";

/// Replaces the Tenant's status with `status`.
pub async fn write(
    api: &Api<Tenant>,
    tenant: &Tenant,
    status: &TenantStatus,
) -> Result<(), kube::Error> {
    let old = tenant
        .status
        .as_ref()
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let new = serde_json::to_value(status).unwrap_or(Value::Null);
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({ "status": replacing(&old, &new) });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).validation_strict(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// A merge patch that turns `old` into `new`: fields of `old` missing from
/// `new` become `null` (removed), recursively through nested objects.
pub fn replacing(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, v) in n {
                out.insert(
                    k.clone(),
                    o.get(k).map_or_else(|| v.clone(), |ov| replacing(ov, v)),
                );
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

/// Writes `status.directory.progress` while a long sync runs, at most every
/// couple of seconds, without holding the sync up.
pub struct ProgressWriter {
    tx: Arc<watch::Sender<Option<SyncProgress>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWriter {
    pub fn spawn(api: Api<Tenant>, name: String) -> Self {
        let (tx, mut rx) = watch::channel(None::<SyncProgress>);
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(p) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let patch = json!({ "status": { "directory": { "progress": p } } });
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(error = %e, "cannot write sync progress");
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
        Self {
            tx: Arc::new(tx),
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

    /// Stops writing progress (the final status replaces it).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_fields_become_null_recursively() {
        let old = json!({"mode": "DingTalk", "directory": {"members": 3, "progress": {"members": 1}}, "unbindReason": null, "conditions": [1, 2]});
        let new = json!({"mode": "Public", "directory": {"members": 0}, "conditions": [3]});
        let patch = replacing(&old, &new);
        assert_eq!(
            patch,
            json!({"mode": "Public", "directory": {"members": 0, "progress": null}, "unbindReason": null, "conditions": [3]})
        );
    }

    #[test]
    fn a_first_status_is_written_as_is() {
        let new = json!({"mode": "DingTalk"});
        assert_eq!(replacing(&Value::Null, &new), new);
    }
}
