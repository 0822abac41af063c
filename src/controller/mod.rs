//! `dingbind controller`: the operator on a Kubernetes cluster. kube-runtime
//! drives a reconciliation per Tenant; this module wires it to the API server,
//! the HTTP port and the shutdown signal.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, controller::Action, watcher},
};
use prometheus_client::registry::Registry;

use crate::{
    api::Tenant,
    metrics::Metrics,
    server::{self, Health},
    telemetry::LogFormat,
};

/// Flags of `dingbind controller` (each also read from the environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DINGBIND_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Watch Tenants in this namespace only (default: all namespaces).
    #[arg(long, env = "DINGBIND_NAMESPACE")]
    pub namespace: Option<String>,
    /// Tenants reconciled at once.
    #[arg(long, env = "DINGBIND_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Log format.
    #[arg(long, env = "DINGBIND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> Result<(), Error> {
    let config = kube::Config::infer().await?;
    let client = Client::try_from(config)?;
    let tenants: Api<Tenant> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    tenants
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(Error::CrdMissing)?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let health = Health::new(registry);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let health = health.clone();
        let addr = args.metrics_addr;
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            server::serve(addr, health, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|source| Error::Serve { addr, source })
        })
    };

    let ctx = Arc::new(Context { client, metrics });
    health.set_ready(true);
    tracing::info!(
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        "controller started"
    );
    Controller::new(tenants, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(args.concurrency))
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconcile failed");
            }
        })
        .await;
    tracing::info!("controller stopped");
    health.set_ready(false);
    let _ = stop_tx.send(true);
    match server.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.inc();
    tracing::debug!(tenant = %tenant.key(), generation = ?tenant.metadata.generation, name = %tenant.name_any(), "reconcile");
    Ok(Action::requeue(Duration::from_secs(600)))
}

fn error_policy(_tenant: Arc<Tenant>, _error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(5))
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
