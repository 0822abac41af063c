//! Admission outside a cluster (`dingbind dev`, `dingbind plan`): the same
//! checks the API server makes, against the last accepted version of each
//! Tenant (kept in the store), so a refused edit leaves the previous version
//! in force, as on a cluster.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    api::{Tenant, TenantStatus},
    validate::{Document, Finding, Severity, TenantValidator},
};

/// Store document kind of the last accepted version.
pub const ACCEPTED: &str = "accepted-spec";

/// The last accepted version of a Tenant, as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Accepted {
    /// The manifest as accepted (apiVersion, kind, metadata, spec).
    pub manifest: Value,
    /// Bumped each time the spec changes, like `metadata.generation`.
    pub generation: i64,
}

/// What admission decided for one manifest.
#[derive(Debug)]
pub enum Admission {
    /// Unchanged since the last accepted version.
    Unchanged,
    /// Accepted: the new version, and the warnings to show.
    Accepted(Accepted, Vec<Finding>),
    /// Refused: the findings, naming file, object and field.
    Refused(Vec<Finding>),
}

/// Admits `doc` given the previous accepted version and the tenant's status.
pub fn admit(
    validator: &TenantValidator,
    doc: &Document,
    previous: Option<&Accepted>,
    status: Option<&TenantStatus>,
) -> Admission {
    // Compared and kept as the API server stores it (nulls pruned, defaults
    // applied), so that what is accepted always loads as a Tenant.
    let stored = validator.as_stored(&doc.value);
    if previous.is_some_and(|p| same_object(&p.manifest, &stored)) {
        return Admission::Unchanged;
    }
    let old = previous.map(|p| {
        let mut v = p.manifest.clone();
        if let Some(s) = status {
            v["status"] = serde_json::to_value(s).unwrap_or(Value::Null);
        }
        Document {
            file: doc.file.clone(),
            index: doc.index,
            value: v,
        }
    });
    let findings = validator.validate(doc, old.as_ref());
    if findings.iter().any(|f| f.severity == Severity::Error) {
        return Admission::Refused(findings);
    }
    let spec_changed = previous.is_none_or(|p| p.manifest.get("spec") != stored.get("spec"));
    let generation = previous.map_or(1, |p| p.generation + i64::from(spec_changed));
    Admission::Accepted(
        Accepted {
            manifest: strip(&stored),
            generation,
        },
        findings,
    )
}

/// The accepted manifest as a `Tenant` object, with its generation and status.
pub fn tenant(
    accepted: &Accepted,
    status: Option<TenantStatus>,
) -> Result<Tenant, serde_json::Error> {
    let mut t: Tenant = serde_json::from_value(accepted.manifest.clone())?;
    if t.metadata.namespace.is_none() {
        t.metadata.namespace = Some("default".into());
    }
    t.metadata.generation = Some(accepted.generation);
    t.status = status;
    Ok(t)
}

fn same_object(a: &Value, b: &Value) -> bool {
    strip(a) == strip(b)
}

/// The parts of a manifest that admission keeps: no status, no server fields.
fn strip(v: &Value) -> Value {
    json!({
        "apiVersion": v.get("apiVersion"),
        "kind": v.get("kind"),
        "metadata": {
            "name": v.pointer("/metadata/name"),
            "namespace": v.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
            "annotations": v.pointer("/metadata/annotations"),
        },
        "spec": v.get("spec"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Mode;
    use std::path::Path;

    fn doc(yaml: &str) -> Document {
        crate::validate::parse_documents(Path::new("t.yaml"), yaml)
            .unwrap()
            .remove(0)
    }

    const DINGTALK: &str = "apiVersion: dingbind.dev/v1alpha1\nkind: Tenant\nmetadata: {name: a, namespace: t}\nspec:\n  mode: DingTalk\n  dingtalk: {corpId: c, agentId: 1, credentialsSecretRef: {name: s}, visibleScope: {allEmployees: true}}\n";

    #[test]
    fn first_version_is_generation_one_and_unchanged_after() {
        let v = TenantValidator::new();
        let Admission::Accepted(acc, _) = admit(&v, &doc(DINGTALK), None, None) else {
            panic!("refused")
        };
        assert_eq!(acc.generation, 1);
        assert!(matches!(
            admit(&v, &doc(DINGTALK), Some(&acc), None),
            Admission::Unchanged
        ));
        let t = tenant(&acc, None).unwrap();
        assert_eq!(t.metadata.generation, Some(1));
        assert_eq!(t.spec.mode, Mode::DingTalk);
    }

    #[test]
    fn a_spec_edit_bumps_the_generation_an_annotation_does_not() {
        let v = TenantValidator::new();
        let Admission::Accepted(acc, _) = admit(&v, &doc(DINGTALK), None, None) else {
            panic!()
        };
        let annotated = DINGTALK.replace(
            "namespace: t}",
            "namespace: t, annotations: {dingbind.dev/sync-requested-at: now}}",
        );
        let Admission::Accepted(acc2, _) = admit(&v, &doc(&annotated), Some(&acc), None) else {
            panic!()
        };
        assert_eq!(acc2.generation, 1);
        let edited = DINGTALK.replace("agentId: 1", "agentId: 2");
        let Admission::Accepted(acc3, _) = admit(&v, &doc(&edited), Some(&acc2), None) else {
            panic!()
        };
        assert_eq!(acc3.generation, 2);
    }

    #[test]
    fn an_accepted_version_with_nulls_loads_as_a_tenant() {
        let v = TenantValidator::new();
        let with_nulls = DINGTALK.replace(
            "visibleScope: {allEmployees: true}",
            "visibleScope: {allEmployees: true, departments: null, users: null}",
        ) + "  sync: {interval: null}\n  suspend: null\n";
        let Admission::Accepted(acc, _) = admit(&v, &doc(&with_nulls), None, None) else {
            panic!("refused")
        };
        let t = tenant(&acc, None).expect("loads");
        assert!(
            t.spec
                .dingtalk
                .unwrap()
                .visible_scope
                .unwrap()
                .departments
                .is_empty()
        );
        assert!(matches!(
            admit(&v, &doc(&with_nulls), Some(&acc), None),
            Admission::Unchanged
        ));
    }

    #[test]
    fn return_to_dingtalk_after_the_unbind_is_refused() {
        let v = TenantValidator::new();
        let public = DINGTALK.replace("mode: DingTalk", "mode: Public");
        let Admission::Accepted(acc, _) = admit(&v, &doc(&public), None, None) else {
            panic!()
        };
        let unbound = TenantStatus {
            mode: Some(Mode::Public),
            ..Default::default()
        };
        match admit(&v, &doc(DINGTALK), Some(&acc), Some(&unbound)) {
            Admission::Refused(f) => assert!(f.iter().any(|f| f.message.contains("cannot return"))),
            other => panic!("{other:?}"),
        }
        // While the unbind is only requested, going back is allowed.
        let pending = TenantStatus {
            mode: Some(Mode::DingTalk),
            ..Default::default()
        };
        assert!(matches!(
            admit(&v, &doc(DINGTALK), Some(&acc), Some(&pending)),
            Admission::Accepted(..)
        ));
    }
}
