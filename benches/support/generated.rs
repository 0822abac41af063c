//! The generated organizations the reconciler benches work on: the
//! simulator in its own process (so the figures are the operator's alone),
//! serving `orgs` copies of one generated organization (`dinggen`,
//! `dinggen2`, …), and the tenant bound to each.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use dingbind::{
    api::Tenant,
    reconcile::Secrets,
    sim::generate::{GEN_AGENT_ID, GEN_APP_KEY, GEN_APP_SECRET, GEN_CORP_ID, GenSpec},
};
use serde_json::json;

/// `dingbind dingtalk-sim` running; killed when dropped.
pub struct SimProcess {
    child: Child,
    pub url: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator with `orgs` generated organizations of `spec`.
pub fn start_sim(spec: GenSpec, orgs: usize) -> SimProcess {
    let generated = format!(
        "departments={},users={},seed={}",
        spec.departments, spec.users, spec.seed
    );
    let mut args = vec!["dingtalk-sim".to_string()];
    for _ in 0..orgs {
        args.extend(["--generate".to_string(), generated.clone()]);
    }
    args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dingbind"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulator");
    let stdout = child.stdout.take().expect("simulator stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("simulator address");
    let url = line.trim().rsplit(' ').next().expect("address").to_string();
    SimProcess { child, url }
}

/// The suffix of generated organization `i` (0-based): none, `2`, `3`, …
pub fn suffix(i: usize) -> String {
    if i == 0 {
        String::new()
    } else {
        (i + 1).to_string()
    }
}

/// Tenant `gen{i+1}` bound to generated organization `i`, visible to all,
/// synced every `interval` (the default when `None`).
pub fn tenant(i: usize, interval: Option<&str>) -> (Tenant, Secrets) {
    let s = suffix(i);
    let mut spec = json!({"mode": "DingTalk", "dingtalk": {"corpId": format!("{GEN_CORP_ID}{s}"), "agentId": GEN_AGENT_ID,
        "credentialsSecretRef": {"name": "creds"}, "visibleScope": {"allEmployees": true}}});
    if let Some(interval) = interval {
        spec["sync"] = json!({"interval": interval});
    }
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "dingbind.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": format!("gen{}", i + 1), "namespace": "bench", "generation": 1},
        "spec": spec,
    }))
    .expect("tenant");
    let creds = BTreeMap::from([
        ("appKey".to_string(), format!("{GEN_APP_KEY}{s}")),
        ("appSecret".to_string(), format!("{GEN_APP_SECRET}{s}")),
    ]);
    let secrets = Secrets::resolve(&tenant, |_| Some(creds.clone()));
    (tenant, secrets)
}
