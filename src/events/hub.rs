//! Events routed to tenants: one Stream connection per app, shared by every
//! Tenant of that app (DingTalk pushes each event to one of an app's
//! connections at random, so only the controller's leader connects, once per
//! app); what each event marks dirty per tenant (`core::dirty::Pending`); and
//! the tenants to reconcile, sent to the runner (the controller, or `dingbind
//! dev`). What an event asks for is `core::dirty`'s to decide; this file only
//! routes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{StreamApp, StreamConfig, StreamEvent, StreamHandle, StreamItem, StreamStatus};
use crate::api::{Mode, Tenant, TenantKey};
use crate::core::{
    channel::ChannelFacts,
    dirty::{self, Dirty, Pending},
};
use crate::reconcile::{Credentials, EventsSeen, Outcome, Secrets};

/// Events waiting to be routed, at most (a full channel makes the
/// connections wait: DingTalk redelivers what is not acked in time).
const CHANNEL: usize = 1024;

/// Told of everything the connections observe, at arrival (metrics).
pub type Observer = Box<dyn Fn(&StreamItem) + Send + Sync>;

/// The Stream connections of a runner and what they marked.
pub struct EventsHub {
    config: StreamConfig,
    observer: Option<Observer>,
    state: Mutex<State>,
    events: mpsc::Sender<StreamEvent>,
}

#[derive(Default)]
struct State {
    /// By appKey: the connection and the tenants it serves (with their corpId).
    apps: HashMap<String, App>,
    /// What events marked, per tenant.
    pending: HashMap<TenantKey, Pending>,
    /// Where a marked tenant is sent to be reconciled: the runner of its
    /// namespace (`None`: of every namespace), for this leader term.
    triggers: Vec<(Option<String>, mpsc::UnboundedSender<TenantKey>)>,
}

struct App {
    secret: crate::dingtalk::Secret,
    handle: StreamHandle,
    tenants: BTreeMap<TenantKey, String>,
}

impl EventsHub {
    /// A hub whose connections use `config`; it routes what they receive
    /// until it is dropped.
    pub fn new(config: StreamConfig) -> Arc<Self> {
        Self::observed(config, None)
    }

    /// [`EventsHub::new`], telling `observer` of each item first.
    pub fn observed(config: StreamConfig, observer: Option<Observer>) -> Arc<Self> {
        let (events, mut received) = mpsc::channel(CHANNEL);
        let hub = Arc::new(Self {
            config,
            observer,
            state: Mutex::new(State::default()),
            events,
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                let Some(hub) = weak.upgrade() else { return };
                hub.route(event);
            }
        });
        hub
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts routing (a leader term) for the tenants of `namespace`
    /// (`None`: every namespace): the keys of marked tenants go to
    /// `trigger`. Until a runner leads, [`EventsHub::serve`] connects
    /// nothing.
    pub fn lead(&self, namespace: Option<&str>, trigger: mpsc::UnboundedSender<TenantKey>) {
        self.state()
            .triggers
            .push((namespace.map(str::to_string), trigger));
    }

    /// Ends a leader term: every connection closes, what was marked is
    /// forgotten (the next leader connects anew, and a new connection after
    /// a gap asks for a full sync).
    pub async fn step_down(&self) {
        let apps: Vec<App> = {
            let mut state = self.state();
            state.triggers.clear();
            state.pending.clear();
            state.apps.drain().map(|(_, app)| app).collect()
        };
        for app in apps {
            app.handle.stop().await;
        }
    }

    /// `key` is a bound tenant of `corp_id` whose app has `credentials`: its
    /// app holds a connection (opened now if it has none; opened again when
    /// the secret changed).
    pub fn serve(&self, key: &TenantKey, corp_id: &str, credentials: &Credentials) {
        let mut state = self.state();
        if state.triggers.is_empty() {
            return;
        }
        // A tenant serves one app: another app it served before lets it go.
        forget_in(&mut state, key, Some(&credentials.app_key));
        let fresh = state
            .apps
            .get(&credentials.app_key)
            .is_none_or(|app| app.secret != credentials.app_secret);
        if fresh {
            let app = StreamApp::new(credentials.app_key.clone(), credentials.app_secret.clone());
            match super::spawn(self.config.clone(), app, self.events.clone()) {
                Ok(handle) => {
                    let tenants = state
                        .apps
                        .remove(&credentials.app_key)
                        .map(|old| old.tenants)
                        .unwrap_or_default();
                    state.apps.insert(
                        credentials.app_key.clone(),
                        App {
                            secret: credentials.app_secret.clone(),
                            handle,
                            tenants,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(tenant = %key, error = %e, "cannot start the Stream connection");
                    return;
                }
            }
        }
        if let Some(app) = state.apps.get_mut(&credentials.app_key) {
            app.tenants.insert(key.clone(), corp_id.to_string());
        }
    }

    /// Serves or forgets `tenant` as it stands after a reconciliation
    /// (`outcome`; `None`: it failed, and what it had stays): a bound tenant
    /// in DingTalk mode, not suspended, with credentials, is served by its
    /// app's connection; any other is forgotten.
    pub fn follow(&self, tenant: &Tenant, secrets: &Secrets, outcome: Option<&Outcome>) {
        let Some(outcome) = outcome else { return };
        let key = tenant.key();
        let s = &outcome.status;
        let corp = (s.mode == Some(Mode::DingTalk) && !tenant.spec.suspend)
            .then_some(s.bound_corp_id.as_deref())
            .flatten();
        match (corp, &secrets.credentials) {
            (Some(corp), Some(Ok(credentials))) => self.serve(&key, corp, credentials),
            _ => self.forget(&key),
        }
    }

    /// `key` no longer needs events (public, suspended, deleted, no
    /// credentials): its app's connection closes when no tenant needs it.
    pub fn forget(&self, key: &TenantKey) {
        let mut state = self.state();
        forget_in(&mut state, key, None);
        state.pending.remove(key);
    }

    /// What events told of `key` since its last batch, to reconcile with
    /// now: what they marked (nothing when nothing waits or a batch still
    /// runs; hand it back with [`EventsHub::finish`]) and the channel that
    /// serves it.
    pub fn start(&self, key: &TenantKey) -> EventsSeen {
        let mut state = self.state();
        let dirty = state
            .pending
            .get_mut(key)
            .and_then(Pending::start)
            .unwrap_or_default();
        let channel = state
            .apps
            .values()
            .find(|app| app.tenants.contains_key(key))
            .map(|app| facts(app.handle.stats().snapshot()));
        EventsSeen { dirty, channel }
    }

    /// The batch from [`EventsHub::start`] is done; a failed one waits again.
    pub fn finish(&self, key: &TenantKey, batch: Dirty, succeeded: bool) {
        let mut state = self.state();
        let Some(pending) = state.pending.get_mut(key) else {
            return;
        };
        pending.finish(batch, succeeded);
        // What arrived meanwhile needs a reconciliation of its own.
        if !pending.waiting().is_empty() {
            trigger(&state, key);
        }
    }

    /// What the connection of `app_key` observed, if it has one.
    pub fn status(&self, app_key: &str) -> Option<StreamStatus> {
        self.state()
            .apps
            .get(app_key)
            .map(|app| app.handle.stats().snapshot())
    }

    /// Marks what `event` asks of each tenant of its app, and has them
    /// reconciled.
    fn route(&self, event: StreamEvent) {
        if let Some(observe) = &self.observer {
            observe(&event.item);
        }
        let mut state = self.state();
        let Some(app) = state.apps.get(&event.app_key) else {
            return;
        };
        let tenants: Vec<TenantKey> = match &event.item {
            StreamItem::Connected { .. } | StreamItem::Disconnected => {
                app.tenants.keys().cloned().collect()
            }
            // An event names its organization; an app serves one.
            StreamItem::Event(e) => app
                .tenants
                .iter()
                .filter(|(_, corp)| e.corp_id.as_deref().is_none_or(|c| c == corp.as_str()))
                .map(|(key, _)| key.clone())
                .collect(),
        };
        for key in tenants {
            let pending = state.pending.entry(key.clone()).or_default();
            match &event.item {
                // Reconciled either way: `EventsConnected` follows the connection.
                StreamItem::Connected {
                    needs_full_sync, ..
                } => {
                    if *needs_full_sync {
                        pending.mark_full_sync();
                    }
                }
                StreamItem::Disconnected => {}
                StreamItem::Event(e) => {
                    let change =
                        dirty::change(e.event_type.as_deref().unwrap_or_default(), &e.data);
                    if change == dirty::Change::Ignored {
                        continue;
                    }
                    pending.mark(&change);
                }
            }
            trigger(&state, &key);
        }
    }
}

fn facts(s: super::StreamStatus) -> ChannelFacts {
    ChannelFacts {
        connected_since: s.connected_since,
        last_event_at: s.last_event_at,
        events_received: s.events_received,
        duplicates_dropped: s.duplicates_dropped,
        reconnects: s.reconnects,
        open_failures: s.open_failures,
        last_error: s.last_error,
    }
}

/// Drops `key` from every app but `keep`, closing connections no tenant needs.
fn forget_in(state: &mut State, key: &TenantKey, keep: Option<&str>) {
    let mut idle = Vec::new();
    for (app_key, app) in &mut state.apps {
        if Some(app_key.as_str()) != keep
            && app.tenants.remove(key).is_some()
            && app.tenants.is_empty()
        {
            idle.push(app_key.clone());
        }
    }
    for app_key in idle {
        // Dropping the handle stops its task.
        state.apps.remove(&app_key);
    }
}

fn trigger(state: &State, key: &TenantKey) {
    for (namespace, tx) in &state.triggers {
        if namespace.as_deref().is_none_or(|ns| ns == key.namespace) {
            let _ = tx.send(key.clone());
        }
    }
}
