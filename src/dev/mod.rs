//! `dingbind dev`: the whole loop on one machine, no cluster. Tenants and
//! Secrets come from a folder of manifests (watched), DingTalk from an
//! embedded simulator (or any base URL), the directory and every tenant's
//! status go to the store. The reconciler is the controller's own.

mod login;
pub mod source;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;

use crate::validate::admission::{self as accept, ACCEPTED, Accepted, Admission};
use crate::{
    api::{SyncProgress, TenantKey, TenantStatus},
    dingtalk,
    events::{EventsHub, EventsMode, StreamConfig},
    reconcile::{Reconciler, Secrets},
    sim::{OrgFile, Simulator, World},
    store::Store,
    telemetry::LogFormat,
    validate::{Severity, TenantValidator},
};
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
    #[arg(long, env = "DINGBIND_STORE", hide_env_values = true, default_value = crate::store::DEFAULT_URL)]
    pub store: String,
    /// DingTalk calls per second, per app and API.
    #[arg(long, default_value_t = 20)]
    pub qps: u32,
    /// Longest wait before a tenant is looked at again, so that a change made
    /// on the DingTalk side (an app disabled, a member gone from the scope)
    /// shows up quickly: `500ms`, `2s`, `1m`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub recheck: Duration,
    /// Memory, in MiB, that directory syncs share (as in `dingbind controller`).
    #[arg(long, env = "DINGBIND_SYNC_MEMORY", value_name = "MIB", default_value_t = crate::reconcile::budget::DEFAULT_SYNC_MEMORY_MIB)]
    pub sync_memory: u32,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Events from the (simulated) DingTalk: `stream` as the controller's
    /// leader hears them, `off` for only the periodic and requested syncs.
    #[arg(long, value_enum, default_value_t = EventsMode::Stream)]
    pub events: EventsMode,
    /// The platform's marketplace app (a suite), for tenants with
    /// `spec.dingtalk.app: Marketplace`: a Secret `NAMESPACE/NAME` in the
    /// folder holding `suiteKey` and `suiteSecret`, read at start. Without
    /// it, the folder's Secret named `dingbind-suite`.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub suite_secret: Option<TenantKey>,
    /// Where the login API listens (docs/login.md; its bearer token is
    /// written to `dingbind-login.token` in the current folder).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub login_listen: SocketAddr,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s}: not a duration like 500ms, 2s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s}: not a duration like 500ms, 2s or 1m")),
    }
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
    #[error("--suite-secret: {0}")]
    SuiteSecret(String),
    #[error("the login API on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// Where `dingbind dev` writes its login API's bearer token (the current
/// folder).
pub const LOGIN_TOKEN_FILE: &str = "dingbind-login.token";

/// Writes `token` to `path`, readable by this user only.
fn write_token(path: &str, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())
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
    let mut reconciler = Reconciler::new(store.clone(), dingtalk::Client::new(config)?)
        .with_sync_memory(args.sync_memory);
    let suite = source::suite(&source::read(&args.dir).secrets, args.suite_secret.as_ref())
        .map_err(Error::SuiteSecret)?;
    if let Some(suite) = &suite {
        reconciler = reconciler.with_suite(suite.clone());
        reconciler.restore_suite_ticket().await?;
    }
    tracing::info!(dir = %args.dir.display(), store = store.url(), "watching Tenants; edit a file to reconcile it, Ctrl-C to stop");

    // Events from DingTalk in Stream mode, as the controller's leader hears
    // them: a marked tenant is reconciled at once.
    let events = EventsHub::new(StreamConfig::with_base_url(&url));
    let (marked_tx, mut marked) = tokio::sync::mpsc::unbounded_channel();
    if args.events == EventsMode::Stream {
        events.lead(None, marked_tx);
    }
    let (tickets_tx, mut tickets) = tokio::sync::mpsc::unbounded_channel();
    if let Some(suite) = suite {
        events.set_suite(suite, tickets_tx);
    }
    // The login API: the accepted Tenants, the folder's Secrets as last
    // loaded, one bearer token in a file.
    let secrets: login::SharedSecrets = Arc::default();
    let mut logins = crate::login::Logins::new(
        store.clone(),
        dingtalk::Client::new(dingtalk::Config::with_base_url(&url))?,
        Arc::new(login::DevTenants {
            store: store.clone(),
            secrets: secrets.clone(),
        }),
    );
    if let Some(suite) = reconciler.suite().cloned() {
        logins = logins.with_suite(suite);
    }
    let token: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
    let listener = tokio::net::TcpListener::bind(args.login_listen)
        .await
        .map_err(|e| Error::Listen(args.login_listen, e))?;
    let login_addr = listener
        .local_addr()
        .map_err(|e| Error::Listen(args.login_listen, e))?;
    // In a file readable by this user only: a token never goes to the log.
    write_token(LOGIN_TOKEN_FILE, &token).map_err(|e| Error::Listen(login_addr, e))?;
    tracing::info!(
        "login API at http://{login_addr} (docs/login.md); its bearer token is in {LOGIN_TOKEN_FILE}"
    );
    let login_api = tokio::spawn(crate::login::http::serve_on(
        listener,
        Arc::new(logins),
        Arc::new(crate::login::http::StaticToken(dingtalk::Secret::new(
            token,
        ))),
        async {
            crate::signal::shutdown().await;
        },
    ));
    let mut dev = Dev {
        validator: TenantValidator::new(),
        secrets,
        store,
        reconciler,
        events: events.clone(),
        manifests: Manifests::default(),
        due: HashMap::new(),
        files: BTreeMap::new(),
        recheck: args.recheck,
    };
    let stop = crate::signal::shutdown();
    tokio::pin!(stop);
    // The folder as last loaded, and as seen at the previous poll: a change is
    // loaded once it has stayed the same for one poll, so a file caught half
    // written is not admitted.
    let mut loaded: Option<source::Fingerprint> = None;
    let mut previous_poll: Option<source::Fingerprint> = None;
    loop {
        let fingerprint = source::fingerprint(&args.dir);
        let settled = loaded.is_none() || previous_poll.as_ref() == Some(&fingerprint);
        if loaded.as_ref() != Some(&fingerprint) && settled {
            dev.load(&args.dir).await?;
            loaded = Some(fingerprint.clone());
        }
        previous_poll = Some(fingerprint);
        dev.reconcile_due().await?;
        tokio::select! {
            () = &mut stop => break,
            Some(key) = marked.recv() => {
                dev.due.insert(key, Instant::now());
            }
            Some(ticket) = tickets.recv() => dev.reconciler.keep_suite_ticket(&ticket).await,
            () = tokio::time::sleep(POLL) => {}
        }
    }
    events.step_down().await;
    login_api.abort();
    tracing::info!("stopped");
    Ok(())
}

struct Dev {
    validator: TenantValidator,
    store: Store,
    reconciler: Reconciler,
    /// Events from DingTalk, and what they marked.
    events: Arc<EventsHub>,
    manifests: Manifests,
    /// The folder's Secrets, shared with the login API.
    secrets: login::SharedSecrets,
    /// When each tenant is next reconciled.
    due: HashMap<TenantKey, Instant>,
    /// The file each tenant was last read from.
    files: BTreeMap<TenantKey, PathBuf>,
    /// Longest wait between two looks at a tenant.
    recheck: Duration,
}

impl Dev {
    /// Reads the folder again: admits changed Tenants, notices removed ones.
    async fn load(&mut self, dir: &std::path::Path) -> Result<(), Error> {
        let mut manifests = source::read(dir);
        for e in &manifests.errors {
            tracing::error!("skipped, fix the file and save it again: {e}");
        }
        // What a broken file held is unknown, not deleted: its Secrets stay as
        // last read (and its Tenants stay, below).
        for (key, file) in &self.manifests.secret_files {
            if manifests.broken.contains(file)
                && !manifests.secrets.contains_key(key)
                && let Some(data) = self.manifests.secrets.get(key)
            {
                manifests.secrets.insert(key.clone(), data.clone());
                manifests.secret_files.insert(key.clone(), file.clone());
            }
        }
        let secrets_changed = manifests.secrets != self.manifests.secrets;
        self.manifests = manifests;
        *self.secrets.write().unwrap_or_else(|p| p.into_inner()) = self.manifests.secrets.clone();
        let mut seen: BTreeMap<TenantKey, PathBuf> = BTreeMap::new();
        for doc in &self.manifests.tenants {
            let key: TenantKey = match doc.object_name().parse() {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(file = %doc.file.display(), "skipped: {e}");
                    continue;
                }
            };
            if let Some(first) = seen.get(&key) {
                tracing::error!(
                    tenant = %key,
                    file = %doc.file.display(),
                    "skipped: Tenant {key} is already defined in {}; one file per Tenant",
                    first.display()
                );
                continue;
            }
            seen.insert(key.clone(), doc.file.clone());
            let previous: Option<Accepted> = self.store.typed_document(&key, ACCEPTED).await?;
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
                    let in_force = match &previous {
                        Some(p) => format!("generation {}", p.generation),
                        None => "none yet".to_string(),
                    };
                    tracing::error!(tenant = %key, file = %doc.file.display(), "the edit is refused; the last accepted version stays in force ({in_force})");
                }
            }
        }
        // A Tenant whose file cannot be read now is not deleted: keep it.
        for (key, file) in &self.files {
            if self.manifests.broken.contains(file) && !seen.contains_key(key) {
                tracing::warn!(tenant = %key, file = %file.display(), "the file cannot be read; the last accepted version stays in force");
                seen.insert(key.clone(), file.clone());
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
        for key in seen.keys() {
            if secrets_changed {
                // A Secret changed: look at every tenant now.
                self.due.insert(key.clone(), Instant::now());
            } else {
                self.due.entry(key.clone()).or_insert_with(Instant::now);
            }
        }
        self.files = seen;
        Ok(())
    }

    async fn removed(&mut self, key: &TenantKey, file: &std::path::Path) -> Result<(), Error> {
        self.due.remove(key);
        let Some(accepted) = self.store.typed_document::<Accepted>(key, ACCEPTED).await? else {
            return Ok(());
        };
        if let Ok(t) = accept::tenant(&accepted, None) {
            self.reconciler.cleanup(&t).await?;
            self.events.forget(key);
            tracing::info!(tenant = %key, file = %file.display(), policy = ?t.spec.deletion_policy, "tenant removed; the binding ledger is kept");
        }
        Ok(())
    }

    async fn status(&self, key: &TenantKey) -> Result<Option<TenantStatus>, Error> {
        Ok(self
            .store
            .typed_document(key, crate::reconcile::STATUS_DOCUMENT)
            .await?)
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
            let after = self
                .reconcile(&key)
                .await?
                .map_or(self.recheck, |after| after.min(self.recheck));
            self.due.insert(key, Instant::now() + after);
        }
        Ok(())
    }

    async fn reconcile(&self, key: &TenantKey) -> Result<Option<Duration>, Error> {
        let Some(accepted) = self.store.typed_document::<Accepted>(key, ACCEPTED).await? else {
            return Ok(None);
        };
        let status = self.status(key).await?;
        let before = status.as_ref().map(ready_state);
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
        let seen = self.events.start(key);
        let outcome = self
            .reconciler
            .reconcile_with_events(&tenant, &secrets, None, &seen, Timestamp::now(), &progress)
            .await;
        self.events.finish(key, seen.dirty, outcome.is_ok());
        let outcome = outcome?;
        self.events.follow(&tenant, &secrets, Some(&outcome));
        for e in &outcome.events {
            if e.warning {
                tracing::warn!(tenant = %key, reason = e.reason, "{}", e.note);
            } else {
                tracing::info!(tenant = %key, reason = e.reason, "{}", e.note);
            }
        }
        // Say when the tenant's state changes (waiting on a precondition,
        // ready again, ...); stay quiet while it stays the same.
        let after = ready_state(&outcome.status);
        if before.as_ref().is_none_or(|b| !b.same_state(&after)) {
            let ReadyState {
                mode,
                ready,
                reason,
                message,
            } = &after;
            if ready == "True" {
                tracing::info!(tenant = %key, mode, reason, "ready: {message}");
            } else {
                tracing::warn!(tenant = %key, mode, reason, "not ready: {message}");
            }
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

/// Mode, and the Ready condition's status, reason and message.
/// What the log says of a tenant's state: its mode and its `Ready` condition.
struct ReadyState {
    mode: String,
    ready: String,
    reason: String,
    message: String,
}

impl ReadyState {
    /// The same state (the message may differ: counts, times).
    fn same_state(&self, other: &ReadyState) -> bool {
        (&self.mode, &self.ready, &self.reason) == (&other.mode, &other.ready, &other.reason)
    }
}

fn ready_state(s: &TenantStatus) -> ReadyState {
    let ready = crate::core::conditions::get(&s.conditions, crate::api::condition::READY);
    ReadyState {
        mode: s.mode.map_or("-", |m| m.as_str()).to_string(),
        ready: ready.map_or(String::new(), |c| c.status.clone()),
        reason: ready.map_or(String::new(), |c| c.reason.clone()),
        message: ready.map_or(String::new(), |c| c.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recheck_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
