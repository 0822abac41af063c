//! Test builders for Tenants and the Secrets they name, so that a test says
//! only what differs from an ordinary tenant:
//!
//! ```ignore
//! let t = Tenant::test("acme").departments(&[2]).build();
//! let spec = Tenant::test("acme").corp("dingother").public().spec();
//! ```
//!
//! The ordinary tenant is in DingTalk mode for corp `ding{name}`, app 1001,
//! credentials in Secret `{name}-dingtalk`, the whole organization visible,
//! and a creator `owner@{corp}.example` whose password is in Secret
//! `{name}-creator`, synced every 10 minutes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use dingbind::api::Tenant;
use dingbind::reconcile::Secrets;
use serde_json::{Value, json};

/// The agentId of the ordinary tenant's app.
pub const AGENT_ID: i64 = 1001;

/// `Tenant::test(name)`: the builder of an ordinary tenant.
pub trait TenantFixture {
    fn test(name: &str) -> TenantBuilder;
}

impl TenantFixture for Tenant {
    fn test(name: &str) -> TenantBuilder {
        TenantBuilder::new(name)
    }
}

/// A Tenant under construction (its spec as JSON, as `kubectl apply` sends it).
#[derive(Clone, Debug)]
pub struct TenantBuilder {
    name: String,
    namespace: String,
    spec: Value,
    annotations: BTreeMap<String, String>,
}

impl TenantBuilder {
    pub fn new(name: &str) -> Self {
        let corp = format!("ding{name}");
        Self {
            name: name.into(),
            namespace: "default".into(),
            spec: json!({
                "mode": "DingTalk",
                "dingtalk": {
                    "corpId": corp,
                    "agentId": AGENT_ID,
                    "credentialsSecretRef": {"name": format!("{name}-dingtalk")},
                    "visibleScope": {"allEmployees": true},
                },
                "creator": {
                    "email": format!("owner@{corp}.example"),
                    "passwordSecretRef": {"name": format!("{name}-creator")},
                },
                "sync": {"interval": "10m"},
            }),
            annotations: BTreeMap::new(),
        }
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The DingTalk organization (also the creator's email domain).
    pub fn corp(mut self, corp: &str) -> Self {
        self.spec["dingtalk"]["corpId"] = json!(corp);
        if self.spec["creator"]["email"].is_string() {
            self.spec["creator"]["email"] = json!(format!("owner@{corp}.example"));
        }
        self
    }

    pub fn agent_id(mut self, agent_id: i64) -> Self {
        self.spec["dingtalk"]["agentId"] = json!(agent_id);
        self
    }

    /// The visible scope, as the spec writes it (`{"departments": [2]}`).
    pub fn scope(mut self, scope: Value) -> Self {
        self.spec["dingtalk"]["visibleScope"] = scope;
        self
    }

    /// A visible scope of these departments only.
    pub fn departments(self, ids: &[i64]) -> Self {
        self.scope(json!({ "departments": ids }))
    }

    /// `spec.mode: Public` (the DingTalk part stays, as when an unbind is asked).
    pub fn public(mut self) -> Self {
        self.spec["mode"] = json!("Public");
        self
    }

    /// A public tenant that never named DingTalk.
    pub fn public_only(mut self) -> Self {
        self.spec["mode"] = json!("Public");
        if let Some(spec) = self.spec.as_object_mut() {
            spec.remove("dingtalk");
        }
        self
    }

    /// The creator's email (an organization's member may share it: the
    /// creator is never synced as a member).
    pub fn creator_email(mut self, email: &str) -> Self {
        self.spec["creator"]["email"] = json!(email);
        self
    }

    /// The app credentials Secret's name.
    pub fn credentials_secret(mut self, name: &str) -> Self {
        self.spec["dingtalk"]["credentialsSecretRef"] = json!({ "name": name });
        self
    }

    /// The creator's password Secret's name.
    pub fn password_secret(mut self, name: &str) -> Self {
        self.spec["creator"]["passwordSecretRef"] = json!({ "name": name });
        self
    }

    /// A creator with an email and no password Secret: not complete.
    pub fn without_password(mut self) -> Self {
        if let Some(creator) = self.spec["creator"].as_object_mut() {
            creator.remove("passwordSecretRef");
        }
        self
    }

    /// No creator at all.
    pub fn without_creator(mut self) -> Self {
        if let Some(spec) = self.spec.as_object_mut() {
            spec.remove("creator");
        }
        self
    }

    /// A trial ending at `expires_at` (RFC 3339).
    pub fn trial(mut self, expires_at: &str) -> Self {
        self.spec["trial"] = json!({ "expiresAt": expires_at });
        self
    }

    pub fn suspended(mut self) -> Self {
        self.spec["suspend"] = json!(true);
        self
    }

    pub fn sync_interval(mut self, interval: &str) -> Self {
        self.spec["sync"]["interval"] = json!(interval);
        self
    }

    pub fn max_deletions(mut self, max: Value) -> Self {
        self.spec["sync"]["maxDeletions"] = max;
        self
    }

    pub fn deletion_policy(mut self, policy: &str) -> Self {
        self.spec["deletionPolicy"] = json!(policy);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// A spec written out whole, for the cases the methods above do not name.
    pub fn with_spec(mut self, spec: Value) -> Self {
        self.spec = spec;
        self
    }

    /// The spec, as JSON.
    pub fn spec(&self) -> Value {
        self.spec.clone()
    }

    /// The whole object, as JSON (for `kubectl apply` or a server-side apply).
    pub fn object(&self) -> Value {
        let mut metadata = json!({"name": self.name, "namespace": self.namespace});
        if !self.annotations.is_empty() {
            metadata["annotations"] = json!(self.annotations);
        }
        json!({
            "apiVersion": "dingbind.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": metadata,
            "spec": self.spec,
        })
    }

    /// The Tenant, at generation 1 (as the API server would have it).
    pub fn build(&self) -> Tenant {
        let mut t: Tenant = serde_json::from_value(self.object())
            .unwrap_or_else(|e| panic!("the builder made an invalid Tenant: {e}"));
        t.metadata.generation = Some(1);
        t
    }
}

/// The Secrets a Tenant names, as the reconciler resolves them
/// (`Secrets::resolve`): app credentials `appKey`/`appSecret` and, unless
/// left out, the creator's password.
#[derive(Clone, Debug)]
pub struct SecretsBuilder {
    app_key: String,
    app_secret: String,
    password: Option<String>,
}

impl SecretsBuilder {
    /// Credentials `{key_prefix}-key` / `{key_prefix}-secret` (the simulator's
    /// convention for an app) and the password `s3cret`.
    pub fn new(key_prefix: &str) -> Self {
        Self {
            app_key: format!("{key_prefix}-key"),
            app_secret: format!("{key_prefix}-secret"),
            password: Some("s3cret".into()),
        }
    }

    pub fn app_secret(mut self, secret: &str) -> Self {
        self.app_secret = secret.into();
        self
    }

    /// No password Secret: the creator account is not complete.
    pub fn without_password(mut self) -> Self {
        self.password = None;
        self
    }

    /// The Secrets `tenant` references, resolved from these values.
    pub fn resolve(&self, tenant: &Tenant) -> Secrets {
        let mut data: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if let Some(r) = tenant
            .spec
            .dingtalk
            .as_ref()
            .and_then(|d| d.credentials_secret_ref.as_ref())
        {
            data.insert(
                r.name.clone(),
                credentials_data(&self.app_key, &self.app_secret),
            );
        }
        let password_ref = tenant
            .spec
            .creator
            .as_ref()
            .and_then(|c| c.password_secret_ref.as_ref());
        if let (Some(r), Some(password)) = (password_ref, &self.password) {
            data.insert(
                r.name.clone(),
                BTreeMap::from([(r.key.clone(), password.clone())]),
            );
        }
        Secrets::resolve(tenant, |name| data.get(name).cloned())
    }
}

/// The data of an app credentials Secret, as `kubectl create secret` writes it.
pub fn credentials_data(app_key: &str, app_secret: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("appKey".to_string(), app_key.to_string()),
        ("appSecret".to_string(), app_secret.to_string()),
    ])
}
