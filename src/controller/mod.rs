//! `dingbind controller`: the operator on a Kubernetes cluster. kube-runtime
//! drives one reconciliation per Tenant (re-run when the Tenant or a Secret it
//! references changes); the shared `reconcile` shell decides and acts; this
//! module reads the Secrets, writes status and Events, holds the finalizer and
//! the leader Lease.

pub mod access_review;
mod leader;
mod login;
pub mod metrics;
mod records;
pub mod server;
pub mod status;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use prometheus_client::registry::Registry;

pub use leader::LeaseConfig;
use metrics::{ErrorLabels, Metrics};
use server::{Health, WatchHealth};

use crate::{
    api::{FINALIZER, SyncProgress, Tenant, TenantKey},
    dingtalk,
    events::{EventsHub, EventsMode, StreamConfig},
    reconcile::{Reconciler, Secrets},
    store::Store,
    telemetry::LogFormat,
};

/// Flags of `dingbind controller` (each also read from the environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Directory store: `sqlite://PATH` or `postgres://...`.
    #[arg(long, env = "DINGBIND_STORE", hide_env_values = true, default_value = crate::store::DEFAULT_URL)]
    pub store: String,
    /// Base URL of DingTalk's topapi family (oapi).
    #[arg(long, env = "DINGBIND_DINGTALK_OAPI_URL", hide_env_values = true, default_value = dingtalk::OAPI_BASE_URL)]
    pub dingtalk_oapi_url: String,
    /// Base URL of DingTalk's v1.0 family (api).
    #[arg(long, env = "DINGBIND_DINGTALK_API_URL", hide_env_values = true, default_value = dingtalk::API_BASE_URL)]
    pub dingtalk_api_url: String,
    /// DingTalk calls per second, per app and API.
    #[arg(long, env = "DINGBIND_QPS", default_value_t = 20)]
    pub qps: u32,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DINGBIND_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Watch Tenants (and their Secrets) in these namespaces only, given as
    /// `a,b` or repeated (default: all namespaces). With the namespaced
    /// install (manifests/overlays/namespaced) the controller may read nothing else.
    #[arg(long, env = "DINGBIND_NAMESPACE", value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Serve /metrics only to a bearer token the API server authenticates
    /// (TokenReview) and authorizes for `get` on `/metrics` (SubjectAccessReview).
    #[arg(long, env = "DINGBIND_METRICS_AUTH")]
    pub metrics_auth: bool,
    /// Tenants reconciled at once.
    #[arg(long, env = "DINGBIND_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Memory, in MiB, that concurrent directory syncs share: each takes a
    /// share sized from its directory, and waits while the budget is spent.
    /// The default fits the Deployment's 512 MiB limit.
    #[arg(long, env = "DINGBIND_SYNC_MEMORY", value_name = "MIB", default_value_t = crate::reconcile::budget::DEFAULT_SYNC_MEMORY_MIB)]
    pub sync_memory: u32,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "DINGBIND_LEASE_NAMESPACE",
        default_value = "dingbind-system"
    )]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "DINGBIND_LEASE_NAME",
        default_value = "dingbind-controller"
    )]
    pub lease_name: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "DINGBIND_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// This replica's identity in the Lease (default: the host name, i.e. the pod name).
    #[arg(long, env = "DINGBIND_IDENTITY")]
    pub identity: Option<String>,
    /// Seconds the Tenant watch may fail before /readyz turns false.
    #[arg(long, env = "DINGBIND_WATCH_FAILURE_GRACE", default_value_t = server::WATCH_FAILURE_GRACE.as_secs())]
    pub watch_failure_grace: u64,
    /// Log format.
    #[arg(long, env = "DINGBIND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Events from DingTalk: `stream` holds one Stream-mode connection per
    /// app on the leader (docs/events.md), `off` relies on the periodic sync.
    #[arg(long, env = "DINGBIND_EVENTS", value_enum, default_value_t = EventsMode::Stream)]
    pub events: EventsMode,
    /// Where DingTalk's HTTP pushes are received, for tenants with
    /// `events.mode: HTTP` (`POST /dingtalk/events/{namespace}/{name}`);
    /// off unless given. Every replica listens; only the leader takes them.
    #[arg(long, env = "DINGBIND_EVENTS_ADDR")]
    pub events_addr: Option<SocketAddr>,
    /// The platform's marketplace app (a suite), for tenants with
    /// `spec.dingtalk.app: Marketplace`: a Secret `NAMESPACE/NAME` holding
    /// `suiteKey` and `suiteSecret`, read at start.
    #[arg(long, env = "DINGBIND_SUITE_SECRET", value_name = "NAMESPACE/NAME")]
    pub suite_secret: Option<TenantKey>,
    /// Where the login API is served (docs/login.md); off unless given.
    /// Every replica serves it, reading the store.
    #[arg(long, env = "DINGBIND_LOGIN_ADDR")]
    pub login_addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kubernetes configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("serving {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the Tenant CRD is not installed or not readable: {0} (apply crds/tenant.yaml or `kubectl apply -k manifests/`)"
    )]
    CrdMissing(kube::Error),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    DingTalk(#[from] dingtalk::Error),
    #[error("lost the leader Lease; exiting so that another replica takes over")]
    LostLeadership,
    #[error(
        "the UnbindRecord CRD is not installed or not readable: {0} (apply crds/unbindrecord.yaml or `kubectl apply -k manifests/`)"
    )]
    RecordsUnavailable(kube::Error),
    #[error("the UnbindRecord watch stopped before it was ready")]
    RecordsCacheStopped,
    #[error("--suite-secret: {0}")]
    SuiteSecret(String),
}

/// A Tenant as watched: the object, or what is known of one that does not
/// load as the `Tenant` type (its metadata and the error).
type Watched = DeserializeGuard<Tenant>;

/// What every reconciliation shares.
pub struct Context {
    pub backoff: Backoff,
    pub client: Client,
    pub reconciler: Reconciler,
    pub records: records::Records,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Tenants skipped because they do not load, for the metric.
    pub unreadable: std::sync::Mutex<std::collections::BTreeSet<TenantKey>>,
    /// The client's DingTalk counters as last added to the metrics: each
    /// call is exported once, however many reconciliations run at a time.
    pub exported: std::sync::Mutex<dingtalk::StatsSnapshot>,
    /// Events from DingTalk (`None`: `--events off`).
    pub events: Option<Arc<EventsHub>>,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> Result<(), Error> {
    let config = kube::Config::infer().await?;
    let client = Client::try_from(config)?;
    // `None`: every namespace.
    let namespaces: Vec<Option<String>> = if args.namespace.is_empty() {
        vec![None]
    } else {
        let mut list: Vec<String> = args
            .namespace
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        list.sort();
        list.dedup();
        list.into_iter().map(Some).collect()
    };
    for ns in &namespaces {
        let tenants: Api<Tenant> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        // Metadata only: a Tenant that does not load must not stop the start.
        tenants
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
            .map_err(Error::CrdMissing)?;
    }
    let store = Store::connect(&args.store).await?;
    tracing::info!(store = store.url(), "directory store ready");
    let dingtalk = dingtalk::Client::new(dingtalk::Config {
        oapi_base_url: args.dingtalk_oapi_url.trim_end_matches('/').to_string(),
        api_base_url: args.dingtalk_api_url.trim_end_matches('/').to_string(),
        rate_limit: dingtalk::RateLimit {
            per_second: args.qps,
            ..Default::default()
        },
        ..dingtalk::Config::default()
    })?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let mut health =
        Health::new(registry).with_watch_grace(Duration::from_secs(args.watch_failure_grace));
    if args.metrics_auth {
        health = health.with_metrics_auth(access_review::AccessReview::new(client.clone()));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let (health, addr, mut rx) = (health.clone(), args.metrics_addr, stop_rx.clone());
        tokio::spawn(async move {
            server::serve(addr, health, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|source| Error::Serve { addr, source })
        })
    };

    let suite = match &args.suite_secret {
        Some(name) => Some(read_suite(&client, name).await?),
        None => None,
    };
    let events = (args.events == EventsMode::Stream).then(|| {
        let metrics = metrics.clone();
        EventsHub::observed(
            StreamConfig::with_base_url(&args.dingtalk_api_url),
            Some(Box::new(move |item| {
                metrics.observe_stream(item, Timestamp::now())
            })),
        )
    });
    let receiver = match (&events, args.events_addr) {
        (Some(hub), Some(addr)) => {
            let (hub, mut rx) = (hub.clone(), stop_rx.clone());
            Some(tokio::spawn(async move {
                crate::events::http::serve(addr, hub, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
                .map_err(|source| Error::Serve { addr, source })
            }))
        }
        (None, Some(_)) => {
            tracing::warn!("--events-addr is ignored with --events off");
            None
        }
        _ => None,
    };
    let login = args.login_addr.map(|addr| {
        let mut logins = crate::login::Logins::new(
            store.clone(),
            dingtalk.clone(),
            Arc::new(login::KubeTenants {
                client: client.clone(),
            }),
        );
        if let Some(suite) = &suite {
            logins = logins.with_suite(suite.clone());
        }
        let metrics = metrics.clone();
        let logins = Arc::new(logins.observed(Box::new(move |l| metrics.observe_login(l))));
        let authorize = Arc::new(login::ReviewedCallers(Arc::new(
            access_review::AccessReview::new(client.clone()),
        )));
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            crate::login::http::serve(addr, logins, authorize, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|source| Error::Serve { addr, source })
        })
    });
    // The suite's tickets arrive on its Stream connection and are kept in the store.
    let (tickets_tx, tickets_rx) = tokio::sync::mpsc::unbounded_channel();
    match (&events, &suite) {
        (Some(hub), Some(suite)) => hub.set_suite(suite.clone(), tickets_tx),
        (None, Some(_)) => tracing::warn!(
            "--suite-secret with --events off: no new suite ticket can arrive (DingTalk sends them on the suite's Stream connection); marketplace tenants use the stored one, and wait once DingTalk replaces it"
        ),
        _ => {}
    }

    // Serve probes while waiting for the Lease: a standby replica is healthy and ready.
    health.set_ready(true);
    let identity = args.identity.clone().unwrap_or_else(hostname);
    let lease = LeaseConfig {
        fence_floor: store.fence_token().await?,
        ..LeaseConfig::with_duration(
            args.lease_namespace.clone(),
            args.lease_name.clone(),
            identity.clone(),
            Duration::from_secs(args.lease_duration),
        )
    };
    let mut leading = leader::run(client.clone(), lease, stop_rx.clone());
    tracing::info!(
        identity,
        lease = args.lease_name,
        "waiting for the leader Lease"
    );
    let term = tokio::select! {
        () = crate::signal::shutdown() => None,
        led = leading.wait_for(Option::is_some) => led.ok().and_then(|t| *t),
    };
    let result = if let Some(term) = term {
        metrics.leader.set(1);
        // From here on, the store refuses the writes of every earlier term.
        store.advance_fence(term).await?;
        let store = store.fenced(term);
        tracing::info!(term, "leading");
        let reporter = Reporter {
            controller: "dingbind".into(),
            instance: Some(identity),
        };
        let records = records::Records::start(client.clone()).await?;
        let watched: Vec<String> = namespaces.iter().flatten().cloned().collect();
        records.repair(&store, &watched).await?;
        let mut reconciler = Reconciler::new(store, dingtalk)
            .keeping_unbind_records()
            .with_sync_memory(args.sync_memory);
        if let Some(suite) = suite {
            reconciler = reconciler.with_suite(suite);
            reconciler.restore_suite_ticket().await?;
        }
        let ctx = Arc::new(Context {
            backoff: Backoff::default(),
            recorder: Recorder::new(client.clone(), reporter),
            client: client.clone(),
            reconciler,
            records,
            metrics: metrics.clone(),
            unreadable: Default::default(),
            exported: Default::default(),
            events,
        });
        let keeper = {
            let ctx = ctx.clone();
            tokio::spawn(async move { ctx.reconciler.keep_suite_tickets(tickets_rx).await })
        };
        // One controller per watched namespace (each with its own Tenant and
        // Secret watches), sharing the reconciler.
        let runs = namespaces.iter().map(|ns| {
            let watched: Api<Watched> = match ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            run_controller(
                watched,
                health.watch().named(ns.as_deref().unwrap_or("")),
                ctx.clone(),
                ns.as_deref(),
                args.concurrency,
                leading.clone(),
            )
        });
        let result = futures::future::join_all(runs)
            .await
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(()));
        keeper.abort();
        result
    } else {
        Ok(())
    };
    metrics.leader.set(0);
    health.set_ready(false);
    let _ = stop_tx.send(true);
    if let Some(receiver) = receiver
        && let Ok(Err(e)) = receiver.await
    {
        tracing::warn!(error = %e, "HTTP push receiver");
    }
    if let Some(login) = login
        && let Ok(Err(e)) = login.await
    {
        tracing::warn!(error = %e, "login API");
    }
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "metrics server");
    }
    result
}

async fn run_controller(
    tenants: Api<Watched>,
    watch_health: WatchHealth,
    ctx: Arc<Context>,
    namespace: Option<&str>,
    concurrency: u16,
    mut leading: tokio::sync::watch::Receiver<Option<i64>>,
) -> Result<(), Error> {
    let term = *leading.borrow();
    // Watch Secrets where the Tenants are: all namespaces, or the one watched.
    let secrets: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // Tenants are watched through `DeserializeGuard`: one that does not load
    // is skipped by itself instead of failing every list. Each event or error
    // of the watch tells /readyz whether it works.
    let (store, writer) = reflector::store::<Watched>();
    let trigger = watcher(tenants, watcher::Config::default().any_semantic())
        .default_backoff()
        .map(move |event| {
            match &event {
                Ok(_) => watch_health.ok(),
                Err(e) => {
                    watch_health.failed();
                    tracing::warn!(error = %e, "the Tenant watch failed; retrying");
                }
            }
            event
        })
        .reflect(writer)
        .applied_objects();
    // Tenants that events from DingTalk marked, to reconcile now.
    let (marked_tx, marked) = tokio::sync::mpsc::unbounded_channel::<TenantKey>();
    if let Some(hub) = &ctx.events {
        hub.lead(namespace, marked_tx);
    }
    let marked = futures::stream::unfold(marked, |mut rx| async move {
        let key = rx.recv().await?;
        Some((ObjectRef::new(&key.name).within(&key.namespace), rx))
    });
    let events = ctx.events.clone();
    let controller = Controller::for_stream(trigger, store.clone()).reconcile_on(marked);
    tracing::info!("leading: reconciling Tenants");
    let reconciling = controller
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |secret: Secret| {
                let ns = secret.namespace();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|w| {
                        w.0.as_ref().is_ok_and(|t| {
                            t.namespace() == ns && Secrets::referenced(t).contains(&name)
                        })
                    })
                    .map(|w| ObjectRef::from_obj(&*w))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(crate::signal::shutdown())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile failed");
            }
        });
    // Losing the Lease (or a new term) stops at once: in-flight reconciles are
    // dropped mid-way, not finished (the store's fence refuses them anyway).
    let result = tokio::select! {
        () = reconciling => {
            tracing::info!("controller stopped");
            Ok(())
        }
        _ = leading.wait_for(|t| *t != term) => Err(Error::LostLeadership),
    };
    // Only the leader holds connections to DingTalk.
    if let Some(hub) = events {
        hub.step_down().await;
    }
    result
}

/// Errors of one reconciliation; they are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Reconcile(#[from] crate::reconcile::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ReconcileError {
    fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "KubeApi",
            ReconcileError::Reconcile(_) => "Store",
            ReconcileError::Finalizer(_) => "Finalizer",
        }
    }
}

fn key_of(object: &Watched) -> TenantKey {
    TenantKey {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}

async fn reconcile(object: Arc<Watched>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let tenant = match &object.0 {
        Ok(t) => {
            forget_unreadable(&ctx, &t.key());
            Arc::new(t.clone())
        }
        Err(invalid) => return Ok(skip_unreadable(&object, invalid, &ctx).await),
    };
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = tenant.namespace().unwrap_or_default();
    let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => {
                ctx.reconciler.cleanup(&t).await?;
                if let Some(hub) = &ctx.events {
                    hub.forget(&t.key());
                }
                tracing::info!(tenant = %t.key(), policy = ?t.spec.deletion_policy, "tenant deleted");
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn apply(tenant: &Tenant, ctx: &Context) -> Result<Action, ReconcileError> {
    let secrets = read_secrets(tenant, &ctx.client).await?;
    let api: Api<Tenant> =
        Api::namespaced(ctx.client.clone(), &tenant.namespace().unwrap_or_default());
    let name = tenant.name_any();
    status::adopt_merge_patched_fields(&api, tenant).await?;
    // A Tenant seen for the first time says at once that it is being worked on.
    let written = match &tenant.status {
        Some(s) => s.clone(),
        None => {
            let first =
                crate::core::kstatus::first_status(tenant.metadata.generation, Timestamp::now());
            status::write(&api, &name, &first).await?;
            first
        }
    };
    let progress = status::ProgressWriter::spawn(
        api.clone(),
        name.clone(),
        written,
        tenant.metadata.generation,
    );
    let report = progress.reporter();
    let record = ctx.records.get(&tenant.key());
    let key = tenant.key();
    let seen = ctx
        .events
        .as_ref()
        .map(|hub| hub.start(&key))
        .unwrap_or_default();
    let outcome = ctx
        .reconciler
        .reconcile_with_events(
            tenant,
            &secrets,
            record.as_ref(),
            &seen,
            Timestamp::now(),
            &move |p: &SyncProgress| report(p),
        )
        .await;
    progress.stop().await;
    if let Some(hub) = &ctx.events {
        hub.finish(&key, seen.dirty, outcome.is_ok());
        hub.follow(tenant, &secrets, outcome.as_ref().ok());
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) if !says_store_unavailable(&e) => return Err(e.into()),
        Err(e) => {
            // The store failed: the Tenant says so (its status is the API
            // server's, which still answers), and the reconcile is retried.
            let previous = tenant.status.clone().unwrap_or_default();
            let failed = crate::core::status::store_unavailable(
                previous,
                tenant.metadata.generation,
                &crate::redact::redact(&e.to_string(), &[]),
                Timestamp::now(),
            );
            if let Err(write) = status::write(&api, &name, &failed).await {
                tracing::warn!(error = %write, "cannot write the StoreUnavailable status");
            }
            return Err(e.into());
        }
    };
    record_dingtalk_metrics(ctx);
    record_sync_metrics(&ctx.metrics, tenant, &outcome);
    ctx.backoff.reset(&tenant.key());
    // The record before the status: each is a proof of the unbind on its own.
    if let Some(spec) = &outcome.unbind_record {
        ctx.records.ensure(spec).await?;
    }
    status::write(&api, &name, &outcome.status).await?;
    let reference = tenant.object_ref(&());
    for e in &outcome.events {
        let event = KubeEvent {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.to_string(),
            note: Some(e.note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %err, "cannot publish an Event");
        }
    }
    Ok(outcome
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// Whether a failed reconciliation writes `StoreUnavailable` to the Tenant:
/// not when the store refused a stale term's write, since this replica is no
/// longer the leader and the status is the new leader's to write.
fn says_store_unavailable(e: &crate::reconcile::Error) -> bool {
    let crate::reconcile::Error::Store(store) = e;
    !matches!(store, crate::store::Error::Fenced { .. })
}

/// Most bytes of an Event note (the API server refuses notes over 1 kB).
const NOTE_MAX: usize = 1000;

/// A Tenant that does not load as the `Tenant` type (stored before the schema
/// was as strict as the type, or written around it): one log line, one
/// Warning Event, counted in `dingbind_tenants_unreadable`; nothing else is
/// done with it until it changes. The other Tenants go on.
async fn skip_unreadable(object: &Watched, invalid: &InvalidObject, ctx: &Context) -> Action {
    let key = key_of(object);
    let count = {
        let mut set = ctx.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(key.clone());
        set.len()
    };
    ctx.metrics
        .tenants_unreadable
        .set(i64::try_from(count).unwrap_or(i64::MAX));
    tracing::warn!(tenant = %key, error = %invalid.error, "skipping a Tenant that does not load; fix its spec");
    let note = truncate(
        &format!(
            "This Tenant does not load and is not reconciled: {}",
            invalid.error
        ),
        NOTE_MAX,
    );
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: crate::api::reason::INVALID_SPEC.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(tenant = %key, error = %err, "cannot publish an Event");
    }
    Action::await_change()
}

fn forget_unreadable(ctx: &Context, key: &TenantKey) {
    let mut set = ctx.unreadable.lock().unwrap_or_else(|p| p.into_inner());
    if set.remove(key) {
        ctx.metrics
            .tenants_unreadable
            .set(i64::try_from(set.len()).unwrap_or(i64::MAX));
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Sync metrics, when this reconciliation ran a sync.
/// The held deletions of the tenant, and what its sync did when it ran one.
fn record_sync_metrics(m: &Metrics, tenant: &Tenant, outcome: &crate::reconcile::Outcome) {
    let labels = metrics::TenantLabels {
        tenant: tenant.key().to_string(),
    };
    let held = outcome
        .status
        .directory
        .as_ref()
        .map_or(0, |d| d.pending_deletions);
    m.deletions_held
        .get_or_create(&labels)
        .set(i64::try_from(held).unwrap_or(i64::MAX));
    if let Some(sync) = &outcome.sync {
        m.sync_duration.observe(sync.duration.as_secs_f64());
        m.members_added.inc_by(sync.run.added);
        m.members_updated.inc_by(sync.run.updated);
        m.members_removed.inc_by(sync.run.removed);
    }
}

/// Adds the DingTalk calls and throttles made since the last export to the
/// metrics, per endpoint.
fn record_dingtalk_metrics(ctx: &Context) {
    let mut exported = ctx.exported.lock().unwrap_or_else(|p| p.into_inner());
    let now = ctx.reconciler.dingtalk().stats();
    for (api, d) in &now.since(&exported).endpoints {
        let labels = metrics::EndpointLabels {
            endpoint: api.name().to_string(),
        };
        ctx.metrics
            .dingtalk_calls
            .get_or_create(&labels)
            .inc_by(d.calls);
        ctx.metrics
            .dingtalk_throttles
            .get_or_create(&labels)
            .inc_by(d.throttled);
    }
    *exported = now;
}

/// The marketplace suite of the Secret `name` (`--suite-secret`).
async fn read_suite(client: &Client, name: &TenantKey) -> Result<dingtalk::Suite, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
    let secret = api
        .get_opt(&name.name)
        .await
        .map_err(|e| Error::SuiteSecret(format!("reading the Secret {name}: {e}")))?
        .ok_or_else(|| Error::SuiteSecret(format!("the Secret {name} does not exist")))?;
    let suite = crate::reconcile::suite_of(&name.to_string(), &secret_data(&secret))
        .map_err(Error::SuiteSecret)?;
    tracing::info!(suite = suite.key(), "marketplace suite configured");
    Ok(suite)
}

/// Reads the Secrets a Tenant references and resolves them.
async fn read_secrets(tenant: &Tenant, client: &Client) -> Result<Secrets, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &tenant.namespace().unwrap_or_default());
    let mut found = BTreeMap::new();
    for name in Secrets::referenced(tenant) {
        if let Some(s) = api.get_opt(&name).await? {
            found.insert(name, secret_data(&s));
        }
    }
    Ok(Secrets::resolve(tenant, |name| found.get(name).cloned()))
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    let data = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()));
    let string_data = s
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()));
    data.chain(string_data).collect()
}

fn error_policy(object: Arc<Watched>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            reason: error.reason().into(),
        })
        .inc();
    let key = key_of(&object);
    let delay = ctx.backoff.next(&key);
    tracing::warn!(tenant = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Exponential backoff per Tenant after failed reconciliations: 5 s, 10 s, 20 s…
/// up to 5 minutes; a success starts again from 5 s.
#[derive(Default)]
pub struct Backoff(std::sync::Mutex<std::collections::HashMap<crate::api::TenantKey, u32>>);

impl Backoff {
    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);

    pub fn next(&self, key: &crate::api::TenantKey) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        let delay = Self::BASE.saturating_mul(1 << (*n).min(16)).min(Self::MAX);
        *n = n.saturating_add(1);
        delay
    }

    pub fn reset(&self, key: &crate::api::TenantKey) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("dingbind-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_terms_refused_write_is_not_reported_as_an_unusable_store() {
        use crate::{reconcile::Error, store};
        let fenced = Error::Store(store::Error::Fenced {
            token: 5,
            current: 6,
        });
        assert!(!says_store_unavailable(&fenced));
        let down = Error::Store(store::Error::Corrupt {
            context: "reading the ledger".into(),
            reason: "bad row".into(),
        });
        assert!(says_store_unavailable(&down));
    }

    #[test]
    fn namespace_takes_a_list_given_with_commas_or_repeated() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "dingbind",
            "controller",
            "--namespace",
            "a,b",
            "--namespace",
            "c",
        ])
        .unwrap();
        let crate::cli::Command::Controller(args) = cli.command else {
            panic!("not the controller")
        };
        assert_eq!(args.namespace, ["a", "b", "c"]);
        assert!(!args.metrics_auth);
    }

    #[test]
    fn backoff_doubles_per_tenant_up_to_a_cap_and_resets() {
        let b = Backoff::default();
        let a = crate::api::TenantKey {
            namespace: "n".into(),
            name: "a".into(),
        };
        let other = crate::api::TenantKey {
            namespace: "n".into(),
            name: "b".into(),
        };
        let delays: Vec<u64> = (0..9).map(|_| b.next(&a).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            b.next(&other).as_secs(),
            5,
            "each tenant has its own backoff"
        );
        b.reset(&a);
        assert_eq!(b.next(&a).as_secs(), 5);
    }
}
