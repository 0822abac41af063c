//! `dingbind dev`: the whole loop on one machine, no cluster. Tenants and
//! Secrets come from a folder of manifests (watched), DingTalk from an
//! embedded simulator (or any base URL), the directory and every tenant's
//! status go to the store. The reconciler is the controller's own.

pub mod accept;
pub mod source;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use jiff::Timestamp;

use crate::{
    api::{SyncProgress, TenantKey, TenantStatus},
    dingtalk,
    reconcile::{Reconciler, Secrets},
    sim::{OrgFile, Simulator, World},
    store::Store,
    telemetry::LogFormat,
    validate::{Severity, TenantValidator},
};
use accept::{ACCEPTED, Accepted, Admission};
use source::Manifests;

/// Flags of `dingbind dev`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Folder of Tenant and Secret manifests, watched for changes.
    #[arg(long, short = 'f', default_value = "examples/tenants")]
    pub dir: PathBuf,
    /// Organizations for the embedded DingTalk simulator.
    #[arg(long, default_value = "examples/org.yaml")]
    pub org: PathBuf,
    /// Where the embedded simulator listens (its admin API is under /_sim/).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub sim_listen: SocketAddr,
    /// Use this DingTalk instead of the embedded simulator (both API families' base URL).
    #[arg(long)]
    pub dingtalk_url: Option<String>,
    /// Directory store: `sqlite://PATH` or `postgres://...`.
    #[arg(long, env = "DINGBIND_STORE", default_value = crate::store::DEFAULT_URL)]
    pub store: String,
    /// DingTalk calls per second, per app and API.
    #[arg(long, default_value_t = 20)]
    pub qps: u32,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Reconcile(#[from] crate::reconcile::Error),
    #[error("{0}")]
    DingTalk(#[from] dingtalk::Error),
    #[error("reading the organizations {path}: {reason}")]
    Org { path: PathBuf, reason: String },
    #[error("starting the simulator: {0}")]
    Sim(#[from] crate::sim::Error),
    #[error("{0}: not a folder")]
    NotAFolder(PathBuf),
}

/// How often the folder is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Runs local mode until Ctrl-C.
pub async fn run(args: DevArgs) -> Result<(), Error> {
    if !args.dir.is_dir() {
        return Err(Error::NotAFolder(args.dir.clone()));
    }
    let store = Store::connect(&args.store).await?;
    let (_sim, url) = match &args.dingtalk_url {
        Some(url) => (None, url.trim_end_matches('/').to_string()),
        None => {
            let text = std::fs::read_to_string(&args.org).map_err(|e| Error::Org {
                path: args.org.clone(),
                reason: e.to_string(),
            })?;
            let org = OrgFile::parse(&text).map_err(|e| Error::Org {
                path: args.org.clone(),
                reason: e.to_string(),
            })?;
            let world = World::from_file(org).map_err(|e| Error::Org {
                path: args.org.clone(),
                reason: e.to_string(),
            })?;
            let sim = Simulator::start(world, args.sim_listen).await?;
            let url = sim.url();
            tracing::info!(
                "DingTalk simulator at {url} (admin API: {url}/_sim/, see docs/simulator.md)"
            );
            (Some(sim), url)
        }
    };
    let mut config = dingtalk::Config::with_base_url(&url);
    config.rate_limit.per_second = args.qps;
    let reconciler = Reconciler::new(store.clone(), dingtalk::Client::new(config)?);
    tracing::info!(dir = %args.dir.display(), store = store.url(), "watching Tenants; edit a file to reconcile it, Ctrl-C to stop");

    let mut dev = Dev {
        validator: TenantValidator::new(),
        store,
        reconciler,
        manifests: Manifests::default(),
        due: HashMap::new(),
        files: BTreeMap::new(),
    };
    let mut last = None;
    loop {
        let fingerprint = source::fingerprint(&args.dir);
        if last.as_ref() != Some(&fingerprint) {
            dev.load(&args.dir).await?;
            last = Some(fingerprint);
        }
        dev.reconcile_due().await?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(POLL) => {}
        }
    }
    tracing::info!("stopped");
    Ok(())
}

struct Dev {
    validator: TenantValidator,
    store: Store,
    reconciler: Reconciler,
    manifests: Manifests,
    /// When each tenant is next reconciled.
    due: HashMap<TenantKey, Instant>,
    /// The file each tenant was last read from.
    files: BTreeMap<TenantKey, PathBuf>,
}

impl Dev {
    /// Reads the folder again: admits changed Tenants, notices removed ones.
    async fn load(&mut self, dir: &std::path::Path) -> Result<(), Error> {
        self.manifests = source::read(dir);
        for e in &self.manifests.errors {
            tracing::error!("{e}");
        }
        let mut seen = BTreeMap::new();
        for doc in &self.manifests.tenants {
            let key: TenantKey = match doc.object_name().parse() {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(file = %doc.file.display(), "{e}");
                    continue;
                }
            };
            seen.insert(key.clone(), doc.file.clone());
            let previous: Option<Accepted> = self
                .store
                .document(&key, ACCEPTED)
                .await?
                .and_then(|v| serde_json::from_value(v).ok());
            let status = self.status(&key).await?;
            match accept::admit(&self.validator, doc, previous.as_ref(), status.as_ref()) {
                Admission::Unchanged => {}
                Admission::Accepted(accepted, warnings) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    tracing::info!(tenant = %key, generation = accepted.generation, file = %doc.file.display(), "accepted");
                    self.store
                        .put_document(
                            &key,
                            ACCEPTED,
                            &serde_json::to_value(&accepted).unwrap_or_default(),
                        )
                        .await?;
                    self.due.insert(key, Instant::now());
                }
                Admission::Refused(findings) => {
                    for f in findings.iter().filter(|f| f.severity == Severity::Error) {
                        tracing::error!("refused: {f}");
                    }
                    tracing::error!(tenant = %key, "the edit is refused; the last accepted version stays in force");
                }
            }
        }
        let gone: Vec<(TenantKey, PathBuf)> = self
            .files
            .iter()
            .filter(|(k, _)| !seen.contains_key(*k))
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for (key, file) in gone {
            self.removed(&key, &file).await?;
        }
        // Secrets may have changed: look at every tenant again.
        for key in seen.keys() {
            self.due.entry(key.clone()).or_insert_with(Instant::now);
        }
        self.files = seen;
        Ok(())
    }

    async fn removed(&mut self, key: &TenantKey, file: &std::path::Path) -> Result<(), Error> {
        self.due.remove(key);
        let Some(accepted) = self
            .store
            .document(key, ACCEPTED)
            .await?
            .and_then(|v| serde_json::from_value::<Accepted>(v).ok())
        else {
            return Ok(());
        };
        if let Ok(t) = accept::tenant(&accepted, None) {
            self.reconciler.cleanup(&t).await?;
            tracing::info!(tenant = %key, file = %file.display(), policy = ?t.spec.deletion_policy, "tenant removed; the binding ledger is kept");
        }
        Ok(())
    }

    async fn status(&self, key: &TenantKey) -> Result<Option<TenantStatus>, Error> {
        Ok(self
            .store
            .document(key, "status")
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    async fn reconcile_due(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let due: Vec<TenantKey> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let next = self.reconcile(&key).await?;
            match next {
                Some(after) => self.due.insert(key, Instant::now() + after),
                None => self
                    .due
                    .insert(key, Instant::now() + Duration::from_secs(3600)),
            };
        }
        Ok(())
    }

    async fn reconcile(&self, key: &TenantKey) -> Result<Option<Duration>, Error> {
        let Some(accepted) = self
            .store
            .document(key, ACCEPTED)
            .await?
            .and_then(|v| serde_json::from_value::<Accepted>(v).ok())
        else {
            return Ok(None);
        };
        let status = self.status(key).await?;
        let tenant = match accept::tenant(&accepted, status) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(tenant = %key, "cannot read the accepted Tenant: {e}");
                return Ok(None);
            }
        };
        let secrets = self.secrets(&tenant);
        let tenant_key = key.clone();
        let progress = move |p: &SyncProgress| {
            tracing::info!(tenant = %tenant_key, departments = p.departments, members = p.members, "sync in progress");
        };
        let outcome = self
            .reconciler
            .reconcile(&tenant, &secrets, Timestamp::now(), &progress)
            .await?;
        for e in &outcome.events {
            if e.warning {
                tracing::warn!(tenant = %key, reason = e.reason, "{}", e.note);
            } else {
                tracing::info!(tenant = %key, reason = e.reason, "{}", e.note);
            }
        }
        let ready =
            crate::core::conditions::get(&outcome.status.conditions, crate::api::condition::READY);
        if let Some(c) = ready {
            tracing::debug!(tenant = %key, ready = c.status, reason = c.reason, "{}", c.message);
        }
        Ok(outcome.requeue_after)
    }

    fn secrets(&self, tenant: &crate::api::Tenant) -> Secrets {
        let ns = tenant
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        Secrets::resolve(tenant, |name| {
            self.manifests
                .secrets
                .get(&TenantKey {
                    namespace: ns.clone(),
                    name: name.to_string(),
                })
                .map(|s| s.0.clone())
        })
    }
}
