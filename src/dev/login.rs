//! The login API of `dingbind dev`: the accepted Tenants from the store,
//! their Secrets from the watched folder (as last loaded), and one static
//! bearer token, printed at start.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

use super::source::SecretData;
use crate::{
    api::{TenantKey, TenantStatus},
    login::{TenantFacts, Tenants},
    reconcile::STATUS_DOCUMENT,
    store::Store,
    validate::admission::{self as accept, ACCEPTED, Accepted},
};

/// The folder's Secrets, as the dev loop last loaded them.
pub type SharedSecrets = Arc<RwLock<BTreeMap<TenantKey, SecretData>>>;

pub struct DevTenants {
    pub store: Store,
    pub secrets: SharedSecrets,
}

impl Tenants for DevTenants {
    fn get<'a>(&'a self, key: &'a TenantKey) -> BoxFuture<'a, Result<Option<TenantFacts>, String>> {
        Box::pin(async move {
            let accepted: Option<Accepted> = self
                .store
                .typed_document(key, ACCEPTED)
                .await
                .map_err(|e| e.to_string())?;
            let Some(accepted) = accepted else {
                return Ok(None);
            };
            let status: Option<TenantStatus> = self
                .store
                .typed_document(key, STATUS_DOCUMENT)
                .await
                .map_err(|e| e.to_string())?;
            let tenant = accept::tenant(&accepted, status).map_err(|e| e.to_string())?;
            let secrets = self.secrets.read().unwrap_or_else(|p| p.into_inner());
            let lookup = |name: &str| {
                secrets
                    .get(&TenantKey {
                        namespace: key.namespace.clone(),
                        name: name.to_string(),
                    })
                    .map(|s| s.0.clone())
            };
            Ok(Some(TenantFacts::resolve(tenant, lookup)))
        })
    }
}
