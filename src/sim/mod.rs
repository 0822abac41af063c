//! The DingTalk simulator: an axum server that serves the endpoints dingbind
//! uses, on the same paths as `oapi.dingtalk.com` and `api.dingtalk.com` (one
//! server, both families), with DingTalk's shapes, error codes, token life and
//! rate limits, plus an admin API under `/_sim/`. See `docs/simulator.md`.
//!
//! - `model`: the world (corps, departments, users, apps, leavers, tokens) and its rules.
//! - `org_file`: the YAML/JSON schema of `--org` and the admin API.
//! - `generate`: deterministic large organizations.
//! - `api` / `admin`: the HTTP endpoints. `faults`, `ratelimit`, `stats`: what they apply and count.
//! - `gateway`: the Stream gateway (`connections/open`, the WebSocket); `hub`
//!   its state, `frames` its frames, `changes` the events each admin change sends.
//! - `push`: HTTP push of those events to a registered URL, encrypted.
//! - `suites`: marketplace apps (suites), their tickets and installs;
//!   `suite_admin` their admin API.
//! - `authcodes`: login codes and user tokens; `login` the login endpoints
//!   (`v2/user/getuserinfo`, `userAccessToken`, `users/me`, `getbyunionid`)
//!   and the admin route that issues codes.

pub mod admin;
pub mod api;
pub mod authcodes;
pub mod changes;
pub mod faults;
pub mod frames;
pub mod gateway;
pub mod generate;
pub mod hub;
pub mod login;
pub mod model;
pub mod org_file;
pub mod push;
pub mod ratelimit;
pub mod stats;
pub mod suite_admin;
pub mod suites;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::Faults;
pub use hub::{StreamFaults, StreamStats};
pub use model::World;
pub use org_file::OrgFile;

/// Errors of the simulator's shell (files, generator, server).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("invalid organization: {0}")]
    Model(#[from] model::ModelError),
    #[error("invalid --generate spec: {0}")]
    Spec(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Mutable server state, behind one mutex (never held across an await).
pub(crate) struct Inner {
    pub world: World,
    /// What `POST /_sim/reset` goes back to.
    pub initial_world: World,
    pub faults: Faults,
    pub initial_faults: Faults,
    pub limiter: ratelimit::WindowLimiter,
    pub stats: stats::SimStats,
    pub rng: fastrand::Rng,
    /// The Stream gateway: tickets, connections, events waiting for an ack.
    pub stream: hub::Hub,
    /// What `POST /_sim/reset` returns the gateway's faults to.
    pub initial_stream_faults: StreamFaults,
    /// HTTP push: the apps with a registered URL get their events there.
    pub push: push::Pusher,
}

/// State shared by all handlers.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Origin of the 1-second rate-limit windows and of token lifetimes.
    started: std::time::Instant,
    /// The address served (the Stream endpoint when a request has no `Host`).
    addr: SocketAddr,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Serves `world` on `addr` (port 0 picks a free port) with DingTalk's
    /// default limits (20 calls/s per app per API, tokens for 7200 s).
    pub async fn start(world: World, addr: SocketAddr) -> Result<SimHandle, Error> {
        Self::start_with(world, Faults::default(), addr).await
    }

    /// Like [`Simulator::start`], with initial fault settings (kept across resets).
    pub async fn start_with(
        world: World,
        faults: Faults,
        addr: SocketAddr,
    ) -> Result<SimHandle, Error> {
        Self::start_seeded(world, faults, addr, None).await
    }

    /// Like [`Simulator::start_with`]; with `seed`, tokens, request ids and
    /// injected failures repeat from run to run. Without it they differ
    /// between simulators, as DingTalk's do (not cryptographically strong).
    pub async fn start_seeded(
        world: World,
        faults: Faults,
        addr: SocketAddr,
        seed: Option<u64>,
    ) -> Result<SimHandle, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let stats = api::fresh_stats(&world);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                initial_world: world.clone(),
                world,
                initial_faults: faults.clone(),
                faults,
                limiter: ratelimit::WindowLimiter::default(),
                stats,
                rng: seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
                stream: hub::Hub::new(StreamFaults::default()),
                initial_stream_faults: StreamFaults::default(),
                push: push::Pusher::default(),
            }),
            started: std::time::Instant::now(),
            addr: local,
        });
        let ticker = tokio::spawn(gateway::ticker(Arc::downgrade(&shared)));
        let app = api::routes()
            .merge(gateway::routes())
            .merge(admin::routes())
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                api::v1_request_id,
            ))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!(%local, "dingtalk simulator listening");
        Ok(SimHandle {
            addr: local,
            shutdown: Some(tx),
            task: Some(task),
            shared: Arc::downgrade(&shared),
            ticker,
        })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// To drop the Stream connections on shutdown (they outlive the server's
    /// graceful shutdown otherwise).
    shared: Weak<Shared>,
    ticker: JoinHandle<()>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`: the base URL of both API families and of `/_sim/`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every Stream connection and stops the gateway's ticker.
    fn stop_stream(&self) {
        self.ticker.abort();
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().stream.drop_all();
        }
    }

    /// Stops accepting, finishes the requests in flight, and returns.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.stop_stream();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(r) => r.map_err(Error::Serve),
                Err(e) => Err(Error::Serve(std::io::Error::other(e))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_stream();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
