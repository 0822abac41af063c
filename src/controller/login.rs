//! The login API on `--login-addr` (docs/login.md): every replica serves it,
//! reading Tenants and their Secrets from the API server and the rest from
//! the store. A caller is let in by TokenReview and SubjectAccessReview
//! (`create` on `tenants/login` in the tenant's namespace).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::access_review::{AccessReview, Ask, Decision};
use crate::{
    api::{Tenant, TenantKey},
    login::{
        TenantFacts, Tenants,
        http::{Access, Authorize},
    },
    reconcile::Secrets,
};

/// Tenants and their Secrets, read from the API server on each login.
pub struct KubeTenants {
    pub client: Client,
}

impl Tenants for KubeTenants {
    fn get<'a>(&'a self, key: &'a TenantKey) -> BoxFuture<'a, Result<Option<TenantFacts>, String>> {
        Box::pin(async move {
            let tenants: Api<Tenant> = Api::namespaced(self.client.clone(), &key.namespace);
            let Some(tenant) = tenants
                .get_opt(&key.name)
                .await
                .map_err(|e| format!("reading Tenant {key}: {e}"))?
            else {
                return Ok(None);
            };
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
            let mut found: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for name in Secrets::referenced(&tenant) {
                if let Some(s) = secrets
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("reading Secret {}/{name}: {e}", key.namespace))?
                {
                    found.insert(name, super::secret_data(&s));
                }
            }
            Ok(Some(TenantFacts::resolve(tenant, |name| {
                found.get(name).cloned()
            })))
        })
    }
}

/// The API server decides who may call the login API.
pub struct ReviewedCallers(pub Arc<AccessReview>);

impl Authorize for ReviewedCallers {
    fn access<'a>(
        &'a self,
        authorization: Option<&'a str>,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Access, String>> {
        Box::pin(async move {
            let ask = Ask::TenantLogin {
                namespace: namespace.to_string(),
            };
            match self.0.check(authorization, &ask).await {
                Ok(Decision::Allowed) => Ok(Access::Allowed),
                Ok(Decision::Unauthenticated) => Ok(Access::Unauthenticated),
                Ok(Decision::Forbidden) => Ok(Access::Forbidden),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
