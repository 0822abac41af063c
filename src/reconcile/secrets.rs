//! The Secrets a Tenant references, resolved by the caller (the API server,
//! or a folder in local mode) and handed to the reconciler.

use std::collections::BTreeMap;

use crate::{
    api::{EventDelivery, Tenant},
    dingtalk,
};

/// The app credentials read from the Tenant's Secret.
#[derive(Clone)]
pub struct Credentials {
    pub app_key: String,
    pub app_secret: dingtalk::Secret,
}

/// HTTP push's keys, read from the credentials Secret (`events.mode: HTTP`).
#[derive(Clone)]
pub struct CallbackKeys {
    pub token: dingtalk::Secret,
    pub aes_key: dingtalk::Secret,
}

/// The keys of the suite Secret (`--suite-secret`).
pub const SUITE_KEY_KEY: &str = "suiteKey";
pub const SUITE_SECRET_KEY: &str = "suiteSecret";

/// The marketplace suite of the Secret `name` holding `data`: its
/// `suiteKey` and `suiteSecret`.
pub fn suite_of(name: &str, data: &BTreeMap<String, String>) -> Result<dingtalk::Suite, String> {
    match (data.get(SUITE_KEY_KEY), data.get(SUITE_SECRET_KEY)) {
        (Some(key), Some(secret)) if !key.is_empty() && !secret.is_empty() => {
            Ok(dingtalk::Suite::new(key.as_str(), secret.as_str()))
        }
        _ => Err(format!(
            "the suite Secret {name} lacks the keys {SUITE_KEY_KEY} and {SUITE_SECRET_KEY}"
        )),
    }
}

/// What the caller found about the Secrets a Tenant references.
#[derive(Clone)]
pub struct Secrets {
    /// `None` when the spec names no credentials (a marketplace app names
    /// none); `Err(message)` when they cannot be read.
    pub credentials: Option<Result<Credentials, String>>,
    /// The creator's password Secret exists and holds a non-empty password.
    pub creator_password_set: bool,
    /// HTTP push's keys: `None` unless `events.mode` is `HTTP`; `Err(message)`
    /// when the Secret lacks them.
    pub callback: Option<Result<CallbackKeys, String>>,
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
        let credentials_ref = tenant
            .spec
            .dingtalk
            .as_ref()
            .and_then(|d| d.credentials_secret_ref.as_ref());
        let credentials = credentials_ref.map(|r| match lookup(&r.name) {
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
        });
        let callback = tenant
            .spec
            .dingtalk
            .as_ref()
            .filter(|d| d.event_delivery() == EventDelivery::Http)
            .and_then(|d| d.credentials_secret_ref.as_ref())
            .map(|r| {
                let data = lookup(&r.name).unwrap_or_default();
                match (data.get(&r.token_key), data.get(&r.aes_key_key)) {
                    (Some(t), Some(k)) if !t.is_empty() && !k.is_empty() => Ok(CallbackKeys {
                        token: dingtalk::Secret::new(t.as_str()),
                        aes_key: dingtalk::Secret::new(k.as_str()),
                    }),
                    _ => Err(format!(
                        "Secret {ns}/{} lacks the keys {} and {} (HTTP push's token and aes_key, events.mode: HTTP).",
                        r.name, r.token_key, r.aes_key_key
                    )),
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
            callback,
        }
    }

    /// Names of the Secrets `tenant` references.
    pub fn referenced(tenant: &Tenant) -> Vec<String> {
        let creds = tenant
            .spec
            .dingtalk
            .as_ref()
            .and_then(|d| d.credentials_secret_ref.as_ref())
            .map(|r| r.name.clone());
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
