//! Tenants and Secrets from a folder of YAML manifests, as local mode reads them.

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::{
    api::TenantKey,
    validate::{self, Document},
};

/// What changes when a file is saved: the manifest files and a hash of their
/// contents (not their times, which some file systems keep to the second, so
/// an edit that keeps the size would go unnoticed).
pub type Fingerprint = Vec<(PathBuf, u64)>;

/// The manifest files of `dir` (sorted) and a hash of each one's contents.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    files(dir)
        .into_iter()
        .map(|path| {
            let mut h = DefaultHasher::new();
            // A file too large to be read as a manifest is not read here
            // either: its size and time stand for its contents.
            match std::fs::metadata(&path) {
                Ok(m) if m.len() > validate::limits::MAX_FILE_BYTES => {
                    (m.len(), m.modified().ok()).hash(&mut h)
                }
                _ => std::fs::read(&path).ok().hash(&mut h),
            }
            (path, h.finish())
        })
        .collect()
}

/// The manifest files under `dir` (see [`validate::manifest_files`]); none
/// when it cannot be read (the folder is looked at again on the next tick).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    validate::manifest_files(dir).unwrap_or_default()
}

/// A Secret as written in a manifest: `data` (base64) and `stringData`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData(pub BTreeMap<String, String>);

impl SecretData {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Everything read from the folder.
#[derive(Debug, Default)]
pub struct Manifests {
    pub tenants: Vec<Document>,
    pub secrets: BTreeMap<TenantKey, SecretData>,
    /// The file each Secret was read from.
    pub secret_files: BTreeMap<TenantKey, PathBuf>,
    /// Files that could not be read or parsed, with the reason.
    pub errors: Vec<String>,
    /// The files behind `errors`: what they held is unknown, not gone.
    pub broken: BTreeSet<PathBuf>,
}

/// Reads every Tenant and Secret under `dir` (a folder or one file). A file that cannot be parsed is
/// reported and skipped; the others still count.
pub fn read(dir: &Path) -> Manifests {
    let mut m = Manifests::default();
    for path in files(dir) {
        let text = match validate::limits::read_manifest(&path) {
            Ok(t) => t,
            Err(e) => {
                m.errors.push(e.to_string());
                m.broken.insert(path);
                continue;
            }
        };
        let docs = match validate::parse_documents(&path, &text) {
            Ok(d) => d,
            Err(e) => {
                m.errors.push(e.to_string());
                m.broken.insert(path);
                continue;
            }
        };
        for doc in docs {
            match doc.value.get("kind").and_then(Value::as_str) {
                Some("Tenant") if validate::is_tenant(&doc.value) => m.tenants.push(doc),
                Some("Secret") => {
                    if let Some((key, data)) = secret(&doc.value) {
                        m.secret_files.insert(key.clone(), path.clone());
                        m.secrets.insert(key, data);
                    }
                }
                _ => {}
            }
        }
    }
    m
}

/// The name of the marketplace suite's Secret when none is named: `dingbind
/// dev` and `dingbind plan` take the folder's Secret of that name.
pub const DEFAULT_SUITE_SECRET: &str = "dingbind-suite";

/// The marketplace suite of the folder's Secrets: the one `named`, else the
/// one named [`DEFAULT_SUITE_SECRET`] (in any namespace) when the folder
/// holds it (`Ok(None)`: neither).
pub fn suite(
    secrets: &BTreeMap<TenantKey, SecretData>,
    named: Option<&TenantKey>,
) -> Result<Option<crate::dingtalk::Suite>, String> {
    let found = match named {
        Some(name) => match secrets.get_key_value(name) {
            Some(found) => found,
            None => return Err(format!("no Secret {name} in the folder")),
        },
        None => match secrets.iter().find(|(k, _)| k.name == DEFAULT_SUITE_SECRET) {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    crate::reconcile::suite_of(&found.0.to_string(), &found.1.0).map(Some)
}

fn secret(v: &Value) -> Option<(TenantKey, SecretData)> {
    use base64::Engine;
    let meta = v.get("metadata")?;
    let key = TenantKey {
        namespace: meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        name: meta.get("name").and_then(Value::as_str)?.to_string(),
    };
    let mut data = BTreeMap::new();
    for (k, val) in v
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(bytes) = val
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        {
            data.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for (k, val) in v
        .get("stringData")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(s) = val.as_str() {
            data.insert(k.clone(), s.to_string());
        }
    }
    Some((key, SecretData(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_merge_data_and_string_data() {
        let v: Value = serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: t}\ndata: {appKey: a2V5}\nstringData: {appSecret: shh}\n",
        )
        .unwrap();
        let (key, data) = secret(&v).unwrap();
        assert_eq!(key.to_string(), "t/s");
        assert_eq!(data.get("appKey"), Some("key"));
        assert_eq!(data.get("appSecret"), Some("shh"));
    }

    #[test]
    fn reads_tenants_and_secrets_from_the_examples() {
        let m = read(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/tenants"
        )));
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        assert_eq!(m.tenants.len(), 5);
        assert!(m.secrets.contains_key(&TenantKey {
            namespace: "tenants".into(),
            name: "acme-dingtalk".into()
        }));
        // The marketplace suite's Secret, taken without being named.
        let suite = suite(&m.secrets, None)
            .unwrap()
            .expect("the examples' suite");
        assert_eq!(suite.key(), "dingbind-suite");
    }

    #[test]
    fn a_named_suite_secret_must_exist_and_hold_both_keys() {
        let key = |name: &str| TenantKey {
            namespace: "ns".into(),
            name: name.into(),
        };
        let mut secrets = BTreeMap::new();
        assert!(
            suite(&secrets, None).unwrap().is_none(),
            "none named, none found"
        );
        assert!(
            suite(&secrets, Some(&key("s"))).is_err(),
            "named but missing"
        );
        secrets.insert(
            key("s"),
            SecretData([("suiteKey".to_string(), "k".to_string())].into()),
        );
        let err = suite(&secrets, Some(&key("s"))).unwrap_err();
        assert!(err.contains("suiteSecret"), "{err}");
    }

    #[test]
    fn a_tenant_of_another_api_group_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tenants.yaml"),
            "apiVersion: dingbind.dev/v1alpha1\nkind: Tenant\nmetadata: {name: ours, namespace: t}\nspec: {mode: Public}\n---\napiVersion: other.example/v1\nkind: Tenant\nmetadata: {name: theirs, namespace: t}\nspec: {}\n",
        )
        .unwrap();
        let m = read(dir.path());
        let names: Vec<_> = m.tenants.iter().map(|d| d.object_name()).collect();
        assert_eq!(
            names,
            ["t/ours"],
            "validate and dev agree on what a Tenant is"
        );
    }
}
