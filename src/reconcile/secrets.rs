//! The Secrets a Tenant references, resolved by the caller (the API server,
//! or a folder in local mode) and handed to the reconciler.

use std::collections::BTreeMap;

use crate::{api::Tenant, dingtalk};

/// The app credentials read from the Tenant's Secret.
#[derive(Clone)]
pub struct Credentials {
    pub app_key: String,
    pub app_secret: dingtalk::Secret,
}

/// What the caller found about the Secrets a Tenant references.
#[derive(Clone)]
pub struct Secrets {
    /// `None` when the spec names no credentials; `Err(message)` when they cannot be read.
    pub credentials: Option<Result<Credentials, String>>,
    /// The creator's password Secret exists and holds a non-empty password.
    pub creator_password_set: bool,
}

impl Secrets {
    /// Resolves the Secrets `tenant` references, given a lookup of a Secret's
    /// data by name in the Tenant's namespace. Values never leave this function
    /// except as the credentials for the DingTalk client.
    pub fn resolve(
        tenant: &Tenant,
        lookup: impl Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Self {
        let ns = tenant.metadata.namespace.as_deref().unwrap_or("default");
        let credentials = tenant.spec.dingtalk.as_ref().map(|d| {
            let r = &d.credentials_secret_ref;
            match lookup(&r.name) {
                None => Err(format!(
                    "Secret {ns}/{} (app credentials) does not exist.",
                    r.name
                )),
                Some(data) => match (data.get(&r.app_key_key), data.get(&r.app_secret_key)) {
                    (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => Ok(Credentials {
                        app_key: k.clone(),
                        app_secret: dingtalk::Secret::new(v.as_str()),
                    }),
                    _ => Err(format!(
                        "Secret {ns}/{} lacks the keys {} and {}.",
                        r.name, r.app_key_key, r.app_secret_key
                    )),
                },
            }
        });
        let creator_password_set = tenant
            .spec
            .creator
            .as_ref()
            .and_then(|c| c.password_secret_ref.as_ref())
            .and_then(|r| lookup(&r.name).and_then(|data| data.get(&r.key).cloned()))
            .is_some_and(|p| !p.is_empty());
        Secrets {
            credentials,
            creator_password_set,
        }
    }

    /// Names of the Secrets `tenant` references.
    pub fn referenced(tenant: &Tenant) -> Vec<String> {
        let creds = tenant
            .spec
            .dingtalk
            .as_ref()
            .map(|d| d.credentials_secret_ref.name.clone());
        let password = tenant
            .spec
            .creator
            .as_ref()
            .and_then(|c| c.password_secret_ref.as_ref())
            .map(|r| r.name.clone());
        let mut names: Vec<String> = creds.into_iter().chain(password).collect();
        names.dedup();
        names
    }
}
