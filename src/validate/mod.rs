//! Offline validation of Tenant manifests (`dingbind validate`): the CRD's
//! OpenAPI schema and its CEL rules, transition rules included when the
//! previous version of an object is given. It evaluates the very schema that
//! `dingbind crd` generates, so it agrees with the API server.

pub mod admission;
pub mod limits;
mod schema;

use std::path::{Path, PathBuf};

use kube_cel::Validator;
use serde_json::Value;

use crate::api::{self, Mode};

/// Something wrong with one object of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    /// `namespace/name` of the object, or `document N` when it has no name.
    pub object: String,
    /// Field path such as `spec.dingtalk.visibleScope`; empty for the object as a whole.
    pub field: String,
    pub message: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}: {level}: Tenant {}",
            self.file.display(),
            self.object
        )?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: not valid YAML: {source}")]
    Parse {
        path: PathBuf,
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("{0}: no YAML or JSON files found")]
    Empty(PathBuf),
    #[error("{path}: {size} bytes: a manifest file may hold at most 1 MiB")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: nested deeper than {max} levels; refused before parsing", max = limits::MAX_DEPTH)]
    TooDeep { path: PathBuf },
}

/// A Tenant manifest read from a file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    pub index: usize,
    pub value: Value,
}

impl Document {
    /// `namespace/name`, with the namespace `default` when none is set.
    pub fn object_name(&self) -> String {
        let meta = self.value.get("metadata");
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        match name {
            Some(name) => format!("{ns}/{name}"),
            None => format!("document {}", self.index + 1),
        }
    }
}

/// Reads every Tenant in a file, or in the `.yaml`/`.yml`/`.json` files of a
/// folder (recursively), skipping other kinds such as Secrets.
pub fn read_tenants(path: &Path) -> Result<Vec<Document>, Error> {
    let files = manifest_files(path)?;
    if files.is_empty() {
        return Err(Error::Empty(path.to_path_buf()));
    }
    let mut docs = Vec::new();
    for file in files {
        let text = limits::read_manifest(&file)?;
        docs.extend(
            parse_documents(&file, &text)?
                .into_iter()
                .filter(|d| is_tenant(&d.value)),
        );
    }
    Ok(docs)
}

/// Splits a multi-document YAML (or JSON) text into its documents.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Document>, Error> {
    limits::check(file, text)?;
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut value: Value =
            serde::Deserialize::deserialize(de).map_err(|source| Error::Parse {
                path: file.to_path_buf(),
                index: index + 1,
                source,
            })?;
        // The agentId as written: the API server's CEL rules read it as it
        // came, and a float in an integer field fails them (below).
        let agent_id = value.pointer("/spec/dingtalk/agentId").cloned();
        schema::integral_floats_to_integers(&mut value);
        if let (Some(raw), Some(slot)) = (agent_id, value.pointer_mut("/spec/dingtalk/agentId")) {
            *slot = raw;
        }
        if !value.is_null() {
            docs.push(Document {
                file: file.to_path_buf(),
                index,
                value,
            });
        }
    }
    Ok(docs)
}

/// Whether a manifest is a dingbind Tenant: kind `Tenant` of the
/// `dingbind.dev` group (another group's `Tenant` is someone else's).
pub fn is_tenant(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Tenant")
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with(api::GROUP))
}

/// The manifest files (`.yaml`, `.yml`, `.json`) under `path`, sorted, or
/// `path` itself when it is a file. Symlinked folders are not followed (they
/// may loop back); symlinked files are read. What `validate`, `plan` and
/// `dev` read.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    Ok(files)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // A symlinked folder is not followed (it may loop back); a symlinked file is read.
    let mut children: Vec<(PathBuf, bool)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    children.sort();
    for (child, is_dir) in children {
        if is_dir {
            collect_files(&child, out)?;
        } else if child.is_dir() {
            tracing::debug!(path = %child.display(), "not following a symlinked folder");
        } else if matches!(
            child.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(child);
        }
    }
    Ok(())
}

/// The CRD's schema and CEL rules, compiled once.
pub struct TenantValidator {
    schema: Value,
    cel: Validator,
}

impl Default for TenantValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl TenantValidator {
    pub fn new() -> Self {
        let crd = api::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_default();
        Self {
            schema,
            cel: Validator::new(),
        }
    }

    /// The object as the API server stores it: nulls pruned, defaults applied
    /// (what `dev` keeps as the accepted version, so that it loads).
    pub fn as_stored(&self, value: &Value) -> Value {
        let mut v = value.clone();
        schema::apply_defaults(&self.schema, &mut v);
        v
    }

    /// Validates one Tenant, as a create (`previous: None`) or as an update of `previous`.
    pub fn validate(&self, doc: &Document, previous: Option<&Document>) -> Vec<Finding> {
        let object = doc.object_name();
        let finding = |field: String, message: String, severity| Finding {
            file: doc.file.clone(),
            object: object.clone(),
            field,
            message,
            severity,
        };
        let mut findings = Vec::new();

        // The rules on spec.dingtalk read agentId, and the API server's CEL
        // cannot read an integer field written as a float (`1001.0`): it
        // refuses the object, and so does dingbind.
        if doc
            .value
            .pointer("/spec/dingtalk/agentId")
            .and_then(|v| v.is_f64().then(|| v.as_f64()).flatten())
            .is_some_and(|f| f.fract() == 0.0)
        {
            findings.push(finding(
                "spec.dingtalk".into(),
                "invalid data, expected int, got float64: write agentId as an integer (1001, not 1001.0)".into(),
                Severity::Error,
            ));
            return findings;
        }

        match doc.value.pointer("/metadata/name").and_then(Value::as_str) {
            None => findings.push(finding("metadata.name".into(), "required field is missing".into(), Severity::Error)),
            Some(name) if !is_dns_subdomain(name) => findings.push(finding(
                "metadata.name".into(),
                format!("{name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
                Severity::Error,
            )),
            Some(_) => {}
        }

        // The object the API server validates: status is dropped on create
        // and kept from the stored object on update (status subresource), so
        // only strict field validation sees the status given here; then nulls
        // are pruned and defaults applied.
        let mut violations = Vec::new();
        let mut object = doc.value.clone();
        if let Some(status) = object.as_object_mut().and_then(|o| o.remove("status"))
            && let Some(status_schema) = self.schema.pointer("/properties/status")
        {
            schema::unknown_fields(status_schema, &status, "status", &mut violations);
        }
        check_metadata(&object, &mut violations);
        schema::apply_defaults(&self.schema, &mut object);
        let old = previous.map(|p| {
            let mut old = p.value.clone();
            schema::apply_defaults(&self.schema, &mut old);
            old
        });
        if let (Some(status), Some(o)) = (
            old.as_ref().and_then(|o| o.get("status")),
            object.as_object_mut(),
        ) {
            o.insert("status".into(), status.clone());
        }
        schema::check(&self.schema, &object, "", &mut violations);
        findings.extend(
            violations
                .into_iter()
                .map(|v| finding(v.field, v.message, Severity::Error)),
        );
        // CEL rules see a well-typed object only; the API server does the same.
        // A null left in a nullable field is absent to CEL's `has()`, as on
        // the API server.
        let cel_object = without_nulls(&object);
        let cel_old = old.as_ref().map(without_nulls);
        if findings.is_empty()
            && let Err(errors) = self
                .cel
                .validate(&self.schema, &cel_object, cel_old.as_ref())
        {
            for e in errors.iter() {
                findings.push(finding(
                    e.field_path.trim_start_matches('.').to_string(),
                    e.message.clone(),
                    Severity::Error,
                ));
            }
        }
        // Last, the object must load as the controller reads it: nothing
        // validate accepts can then fail to load from the API server.
        if findings.is_empty()
            && let Err(e) = serde_json::from_value::<api::Tenant>(object)
        {
            findings.push(finding(
                String::new(),
                format!("does not load as a Tenant: {e}"),
                Severity::Error,
            ));
        }
        findings.extend(
            self.warnings(doc, previous)
                .into_iter()
                .map(|m| finding("spec.mode".into(), m, Severity::Warning)),
        );
        findings
    }

    fn warnings(&self, doc: &Document, previous: Option<&Document>) -> Vec<String> {
        let mode = |v: &Value, ptr: &str| v.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        let new_mode = mode(&doc.value, "/spec/mode");
        let old_mode = previous.and_then(|p| mode(&p.value, "/spec/mode"));
        let old_status = previous.and_then(|p| mode(&p.value, "/status/mode"));
        let mut out = Vec::new();
        let public = Mode::Public.as_str();
        let dingtalk = Mode::DingTalk.as_str();
        if new_mode.as_deref() == Some(public)
            && old_mode.as_deref() != Some(public)
            && doc.value.pointer("/spec/dingtalk").is_some()
        {
            out.push("mode Public requests an unbind from DingTalk: once carried out it can never be undone".into());
        }
        if new_mode.as_deref() == Some(dingtalk)
            && old_mode.as_deref() == Some(public)
            && old_status.is_none()
        {
            out.push(format!(
                "the previous version has no status: if the tenant was already unbound (status.mode: Public), the API server refuses this change ({})",
                api::REBIND_FORBIDDEN_MESSAGE
            ));
        }
        out
    }
}

/// `v` without the object entries whose value is null (list items are kept).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Validates every Tenant under `path`, each against its previous version under
/// `previous` (matched by namespace and name) when given.
pub fn validate_paths(path: &Path, previous: Option<&Path>) -> Result<Vec<Finding>, Error> {
    let docs = read_tenants(path)?;
    let previous_docs = previous.map(read_tenants).transpose()?.unwrap_or_default();
    let validator = TenantValidator::new();
    Ok(docs
        .iter()
        .flat_map(|doc| {
            let prev = previous_docs
                .iter()
                .find(|p| p.object_name() == doc.object_name());
            validator.validate(doc, prev)
        })
        .collect())
}

/// The fields of `metadata` (ObjectMeta): strict field validation refuses others.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn check_metadata(object: &Value, out: &mut Vec<schema::Violation>) {
    match object.get("metadata") {
        Some(Value::Object(meta)) => out.extend(
            meta.keys()
                .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
                .map(|k| schema::Violation {
                    field: format!("metadata.{k}"),
                    message: "unknown field".into(),
                }),
        ),
        Some(other) if !other.is_null() => out.push(schema::Violation {
            field: "metadata".into(),
            message: "must be an object".into(),
        }),
        _ => {}
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(yaml: &str) -> Document {
        parse_documents(Path::new("t.yaml"), yaml)
            .unwrap()
            .remove(0)
    }

    fn errors(findings: &[Finding]) -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect()
    }

    const BOUND: &str = r#"
apiVersion: dingbind.dev/v1alpha1
kind: Tenant
metadata: {name: acme, namespace: tenants}
spec:
  mode: DingTalk
  dingtalk:
    corpId: dingacme
    agentId: 1001
    credentialsSecretRef: {name: acme-dingtalk}
    visibleScope: {departments: [2, 3], users: [u1]}
"#;

    #[test]
    fn a_valid_tenant_passes() {
        let v = TenantValidator::new();
        let f = v.validate(&doc(BOUND), None);
        assert!(errors(&f).is_empty(), "{f:?}");
    }

    #[test]
    fn scope_must_not_combine_all_employees_with_lists() {
        let v = TenantValidator::new();
        let bad = BOUND.replace(
            "{departments: [2, 3], users: [u1]}",
            "{allEmployees: true, departments: [2]}",
        );
        let f = v.validate(&doc(&bad), None);
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.message.contains("cannot combine allEmployees")),
            "{f:?}"
        );
    }

    #[test]
    fn scope_must_not_be_empty() {
        let v = TenantValidator::new();
        let bad = BOUND.replace("{departments: [2, 3], users: [u1]}", "{}");
        let f = v.validate(&doc(&bad), None);
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.message.contains("must not be empty")),
            "{f:?}"
        );
    }

    #[test]
    fn dingtalk_block_required_in_dingtalk_mode() {
        let v = TenantValidator::new();
        let bad = "apiVersion: dingbind.dev/v1alpha1\nkind: Tenant\nmetadata: {name: x}\nspec: {mode: DingTalk}\n";
        let f = v.validate(&doc(bad), None);
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.message.contains("spec.dingtalk is required")),
            "{f:?}"
        );
    }

    #[test]
    fn schema_errors_name_the_field() {
        let v = TenantValidator::new();
        let bad = BOUND
            .replace("agentId: 1001", "agentId: 0")
            .replace("mode: DingTalk", "mode: Dingtalk");
        let f = v.validate(&doc(&bad), None);
        let fields: Vec<_> = errors(&f).iter().map(|f| f.field.as_str()).collect();
        assert!(fields.contains(&"spec.dingtalk.agentId"), "{f:?}");
        assert!(fields.contains(&"spec.mode"), "{f:?}");
    }

    #[test]
    fn return_to_dingtalk_after_unbind_is_refused() {
        let v = TenantValidator::new();
        let unbound = format!(
            "{}\nstatus: {{mode: Public}}\n",
            BOUND.replace("mode: DingTalk", "mode: Public")
        );
        let f = v.validate(&doc(BOUND), Some(&doc(&unbound)));
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.message == api::REBIND_FORBIDDEN_MESSAGE && f.field == "spec.mode"),
            "{f:?}"
        );
    }

    #[test]
    fn withdrawing_a_pending_unbind_is_allowed() {
        let v = TenantValidator::new();
        let pending = format!(
            "{}\nstatus: {{mode: DingTalk}}\n",
            BOUND.replace("mode: DingTalk", "mode: Public")
        );
        let f = v.validate(&doc(BOUND), Some(&doc(&pending)));
        assert!(errors(&f).is_empty(), "{f:?}");
    }

    #[test]
    fn interval_below_a_minute_is_refused() {
        let v = TenantValidator::new();
        let bad = format!("{BOUND}  sync: {{interval: 30s}}\n");
        let f = v.validate(&doc(&bad), None);
        assert!(
            errors(&f).iter().any(|f| f.message.contains("at least 1m")),
            "{f:?}"
        );
    }

    #[test]
    fn setting_public_warns_that_it_is_irreversible() {
        let v = TenantValidator::new();
        let f = v.validate(&doc(&BOUND.replace("mode: DingTalk", "mode: Public")), None);
        assert!(errors(&f).is_empty(), "{f:?}");
        assert!(
            f.iter()
                .any(|f| f.severity == Severity::Warning && f.message.contains("never be undone"))
        );
    }

    #[test]
    fn like_the_api_server_status_is_ignored_but_unknown_fields_are_not() {
        let v = TenantValidator::new();
        let with_status = format!("{BOUND}status: {{mode: Bogus, observedGeneration: x}}\n");
        let f = v.validate(&doc(&with_status), None);
        assert!(errors(&f).is_empty(), "{f:?}");
        let unknown = format!("{BOUND}status: {{bogus: 1}}\n");
        let f = v.validate(&doc(&unknown), None);
        assert!(
            errors(&f).iter().any(|f| f.field == "status.bogus"),
            "{f:?}"
        );
        let meta = BOUND.replace("metadata: {", "metadata: {labelz: {a: b}, ");
        let f = v.validate(&doc(&meta), None);
        assert!(
            errors(&f).iter().any(|f| f.field == "metadata.labelz"),
            "{f:?}"
        );
    }

    #[test]
    fn nulls_are_pruned_or_defaulted_before_validation() {
        let v = TenantValidator::new();
        let f = v.validate(
            &doc(&format!(
                "{BOUND}  sync: {{interval: null}}\n  suspend: null\n"
            )),
            None,
        );
        assert!(errors(&f).is_empty(), "{f:?}");
        // A null agentId is dropped, and an internal app without one is refused.
        let f = v.validate(&doc(&BOUND.replace("agentId: 1001", "agentId: null")), None);
        assert!(
            errors(&f).iter().any(|f| f.field == "spec.dingtalk"
                && f.message
                    == "an internal app needs agentId, credentialsSecretRef and visibleScope"),
            "{f:?}"
        );
    }

    #[test]
    fn a_count_beyond_32_bits_is_refused_by_the_schema() {
        let v = TenantValidator::new();
        let bad = format!("{BOUND}  sync: {{maxDeletions: 3000000000}}\n");
        let f = v.validate(&doc(&bad), None);
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.field == "spec.sync.maxDeletions" && f.message.contains("less than")),
            "{f:?}"
        );
        let max = format!("{BOUND}  sync: {{maxDeletions: 2147483647}}\n");
        assert!(errors(&v.validate(&doc(&max), None)).is_empty());
    }

    #[test]
    fn an_integral_float_is_read_as_the_integer_the_api_server_stores() {
        let v = TenantValidator::new();
        let d = doc(&format!("{BOUND}  sync: {{maxDeletions: 50.0}}\n"));
        assert_eq!(
            d.value.pointer("/spec/sync/maxDeletions"),
            Some(&Value::from(50))
        );
        assert!(errors(&v.validate(&d, None)).is_empty());
        // But agentId, which the rules read, cannot be a float.
        let d = doc(&BOUND.replace("agentId: 1001", "agentId: 1001.0"));
        assert!(
            errors(&v.validate(&d, None))
                .iter()
                .any(|f| f.field == "spec.dingtalk" && f.message.contains("expected int")),
        );
        let fraction = doc(&BOUND.replace("agentId: 1001", "agentId: 1001.5"));
        assert!(
            errors(&v.validate(&fraction, None))
                .iter()
                .any(|f| f.field == "spec.dingtalk.agentId"),
        );
    }

    #[test]
    fn every_object_the_schema_accepts_loads_as_a_tenant() {
        // A schema looser than the types (here: maxDeletions without its
        // maximum) is caught by the final deserialization.
        let v = TenantValidator::new();
        let mut schema_only = v.schema.clone();
        if let Some(p) =
            schema_only.pointer_mut("/properties/spec/properties/sync/properties/maxDeletions")
        {
            p.as_object_mut().unwrap().remove("maximum");
        }
        let loose = TenantValidator {
            schema: schema_only,
            cel: Validator::new(),
        };
        let bad = doc(&format!("{BOUND}  sync: {{maxDeletions: 3000000000}}\n"));
        let f = loose.validate(&bad, None);
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.message.starts_with("does not load as a Tenant")),
            "{f:?}"
        );
    }

    #[test]
    fn a_null_dingtalk_block_is_absent_to_the_rules() {
        let v = TenantValidator::new();
        let bad = "apiVersion: dingbind.dev/v1alpha1\nkind: Tenant\nmetadata: {name: x}\nspec: {mode: DingTalk, dingtalk: null}\n";
        let f = v.validate(&doc(bad), None);
        assert!(
            errors(&f)
                .iter()
                .any(|f| f.message.contains("spec.dingtalk is required")),
            "{f:?}"
        );
    }

    #[test]
    fn names_must_be_dns_subdomains() {
        assert!(is_dns_subdomain("acme.prod-1"));
        assert!(!is_dns_subdomain("Acme"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
