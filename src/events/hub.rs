//! Events routed to tenants: one Stream connection per app, shared by every
//! Tenant of that app (DingTalk pushes each event to one of an app's
//! connections at random, so only the controller's leader connects, once per
//! app); what each event marks dirty per tenant (`core::dirty::Pending`); and
//! the tenants to reconcile, sent to the runner (the controller, or `dingbind
//! dev`). What an event asks for is `core::dirty`'s to decide; this file only
//! routes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;

use tokio::sync::mpsc;

use super::{StreamApp, StreamConfig, StreamEvent, StreamHandle, StreamItem, StreamStatus};
use crate::api::{EventDelivery, Mode, Tenant, TenantKey};
use crate::core::{
    channel::ChannelFacts,
    dirty::{self, Dirty, Pending},
    events::{Event, Seen},
    push::{self, Push},
};
use crate::dingtalk::callback_crypto::{CallbackCrypto, CryptoError, Reply};
use crate::dingtalk::{Secret, Suite};
use crate::reconcile::{CallbackKeys, Credentials, EventsSeen, Outcome, Secrets};

/// The event type of a suite ticket (marketplace apps).
const SUITE_TICKET: &str = "suite_ticket";

/// Events waiting to be routed, at most (a full channel makes the
/// connections wait: DingTalk redelivers what is not acked in time).
const CHANNEL: usize = 1024;

/// Told of everything the connections observe, at arrival (metrics).
pub type Observer = Box<dyn Fn(&StreamItem) + Send + Sync>;

/// The Stream connections of a runner and what they marked.
pub struct EventsHub {
    config: StreamConfig,
    observer: Option<Observer>,
    /// An HTTP receiver (`--events-addr`) takes pushes for this runner.
    receiver: AtomicBool,
    state: Mutex<State>,
    events: mpsc::Sender<StreamEvent>,
}

#[derive(Default)]
struct State {
    /// By appKey: the connection and the tenants it serves (with their corpId).
    apps: HashMap<String, App>,
    /// Tenants in HTTP push mode, by key.
    http: HashMap<TenantKey, HttpTenant>,
    /// What events marked, per tenant.
    pending: HashMap<TenantKey, Pending>,
    /// Where a marked tenant is sent to be reconciled: the runner of its
    /// namespace (`None`: of every namespace), for this leader term.
    triggers: Vec<(Option<String>, mpsc::UnboundedSender<TenantKey>)>,
    /// The marketplace suite, whose one connection serves every marketplace
    /// tenant, and where each new suite ticket is sent to be kept.
    suite: Option<(Suite, mpsc::UnboundedSender<Secret>)>,
}

struct App {
    secret: Secret,
    handle: StreamHandle,
    tenants: BTreeMap<TenantKey, String>,
}

/// A tenant whose events DingTalk pushes over HTTP, and what its pushes did.
struct HttpTenant {
    corp_id: String,
    /// The keys to check and open its pushes, or why there are none.
    crypto: Result<CallbackCrypto, String>,
    /// Since when its pushes are taken (`crypto` is `Ok`).
    since: Option<Timestamp>,
    last_event_at: Option<Timestamp>,
    received: u64,
    duplicates: u64,
    seen: Seen,
}

/// Why an HTTP push was not taken (the receiver's answer says it).
#[derive(Debug, thiserror::Error)]
pub enum PushRefusal {
    #[error("this replica does not lead: events are the leader's")]
    NotLeading,
    #[error("no tenant here takes HTTP pushes at this URL")]
    UnknownTenant,
    #[error("this tenant cannot take HTTP pushes: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Unreadable(#[from] push::PushError),
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
            receiver: AtomicBool::new(false),
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

    /// Serves marketplace tenants with the connection of `suite` (clientId
    /// the suiteKey): the tickets DingTalk sends on it become `suite`'s
    /// newest, and each new one is sent to `tickets` to be kept.
    pub fn set_suite(&self, suite: Suite, tickets: mpsc::UnboundedSender<Secret>) {
        self.state().suite = Some((suite, tickets));
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
            state.http.clear();
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
        // A marketplace tenant is served by the suite's connection as soon
        // as it is in DingTalk mode, bound or waiting: the suite ticket and
        // the install event it waits for come on it.
        if let Some(dt) = tenant.spec.dingtalk.as_ref().filter(|d| d.is_marketplace()) {
            let wanted = s.mode == Some(Mode::DingTalk) && !tenant.spec.suspend;
            let suite = self.state().suite.as_ref().map(|(suite, _)| suite.clone());
            match suite.filter(|_| wanted) {
                Some(suite) => {
                    self.state().http.remove(&key);
                    let credentials = Credentials {
                        app_key: suite.key().to_string(),
                        app_secret: suite.secret().clone(),
                    };
                    self.serve(&key, &dt.corp_id, &credentials);
                }
                None => self.forget(&key),
            }
            return;
        }
        let corp = (s.mode == Some(Mode::DingTalk) && !tenant.spec.suspend)
            .then_some(s.bound_corp_id.as_deref())
            .flatten();
        let delivery = tenant
            .spec
            .dingtalk
            .as_ref()
            .map(|d| d.event_delivery())
            .unwrap_or_default();
        match (corp, &secrets.credentials, delivery) {
            (Some(corp), Some(Ok(credentials)), EventDelivery::Stream) => {
                self.state().http.remove(&key);
                self.serve(&key, corp, credentials);
            }
            (Some(corp), Some(Ok(credentials)), EventDelivery::Http) => {
                self.take_pushes(&key, corp, credentials, secrets.callback.as_ref());
            }
            _ => self.forget(&key),
        }
    }

    /// An HTTP receiver takes pushes for this runner from now on.
    pub fn enable_http(&self) {
        self.receiver.store(true, Ordering::Relaxed);
    }

    /// `key` (HTTP push mode) takes DingTalk's pushes, checked and opened
    /// with `keys` (the owner key is the app's appKey); without a receiver
    /// or keys, it records why not.
    fn take_pushes(
        &self,
        key: &TenantKey,
        corp_id: &str,
        credentials: &Credentials,
        keys: Option<&Result<CallbackKeys, String>>,
    ) {
        let mut state = self.state();
        if state.triggers.is_empty() {
            return;
        }
        // Not served by a Stream connection any more.
        forget_in(&mut state, key, None);
        let crypto = if !self.receiver.load(Ordering::Relaxed) {
            Err("this runner has no HTTP receiver (start it with --events-addr)".to_string())
        } else {
            match keys {
                Some(Ok(k)) => {
                    CallbackCrypto::new(k.token.expose(), k.aes_key.expose(), &credentials.app_key)
                        .map_err(|e| e.to_string())
                }
                Some(Err(message)) => Err(message.clone()),
                None => Err("the credentials Secret holds no HTTP push keys".to_string()),
            }
        };
        let now = Timestamp::now();
        let since = crypto.is_ok().then_some(now);
        let entry = state.http.entry(key.clone()).or_insert_with(|| HttpTenant {
            corp_id: corp_id.to_string(),
            crypto: Err(String::new()),
            since,
            last_event_at: None,
            received: 0,
            duplicates: 0,
            seen: Seen::default(),
        });
        entry.corp_id = corp_id.to_string();
        entry.since = match (&crypto, entry.since) {
            (Ok(_), Some(before)) => Some(before),
            _ => since,
        };
        entry.crypto = crypto;
    }

    /// One HTTP push for `key`: checked, opened, de-duplicated, marked (the
    /// tenant is reconciled after the answer), and answered with the
    /// encrypted `success` DingTalk expects.
    pub fn receive_push(
        &self,
        key: &TenantKey,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<Reply, PushRefusal> {
        let mut state = self.state();
        if state.triggers.is_empty() {
            return Err(PushRefusal::NotLeading);
        }
        let now = Timestamp::now();
        let tenant = state.http.get_mut(key).ok_or(PushRefusal::UnknownTenant)?;
        let crypto = tenant
            .crypto
            .as_ref()
            .map_err(|why| PushRefusal::Unavailable(why.clone()))?;
        let plaintext = crypto.open(signature, timestamp, nonce, encrypt)?;
        let push = push::read(&plaintext)?;
        let mut random = [0u8; 16];
        random.iter_mut().for_each(|b| *b = fastrand::u8(..));
        let reply_nonce: String = (0..16).map(|_| fastrand::alphanumeric()).collect();
        let reply = crypto.reply(
            "success",
            &now.as_millisecond().to_string(),
            &reply_nonce,
            random,
        );
        let Push::Event(event) = push else {
            return Ok(reply);
        };
        let id = event.event_id.clone().unwrap_or_default();
        if !tenant.seen.first_time(&id, now) {
            tenant.duplicates += 1;
            return Ok(reply);
        }
        tenant.received += 1;
        tenant.last_event_at = Some(now);
        let ours = event.corp_id.as_deref().is_none_or(|c| c == tenant.corp_id);
        if let Some(observe) = &self.observer {
            observe(&StreamItem::Event(event.clone()));
        }
        if ours {
            mark(&mut state, key, &event);
        }
        Ok(reply)
    }

    /// `key` no longer needs events (public, suspended, deleted, no
    /// credentials): its app's connection closes when no tenant needs it.
    pub fn forget(&self, key: &TenantKey) {
        let mut state = self.state();
        forget_in(&mut state, key, None);
        state.http.remove(key);
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
        let channel = match state.http.get(key) {
            Some(t) => Some(ChannelFacts {
                delivery: EventDelivery::Http,
                connected_since: t.since,
                last_event_at: t.last_event_at,
                events_received: t.received,
                duplicates_dropped: t.duplicates,
                last_error: t.crypto.as_ref().err().cloned(),
                ..ChannelFacts::default()
            }),
            None => state
                .apps
                .values()
                .find(|app| app.tenants.contains_key(key))
                .map(|app| facts(app.handle.stats().snapshot())),
        };
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
        if let StreamItem::Event(e) = &event.item
            && e.event_type.as_deref() == Some(SUITE_TICKET)
        {
            self.suite_ticket(&mut state, &event.app_key, e);
            return;
        }
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
            match &event.item {
                // Reconciled either way: `EventsConnected` follows the connection.
                StreamItem::Connected {
                    needs_full_sync, ..
                } => {
                    if *needs_full_sync {
                        state
                            .pending
                            .entry(key.clone())
                            .or_default()
                            .mark_full_sync();
                    }
                    trigger(&state, &key);
                }
                StreamItem::Disconnected => trigger(&state, &key),
                StreamItem::Event(e) => mark(&mut state, &key, e),
            }
        }
    }
}

impl EventsHub {
    /// A `suite_ticket` on the connection of `client_id`: when it is the
    /// suite's and the ticket is new, it becomes the suite's newest, is sent
    /// to be kept, and every marketplace tenant is reconciled (one waiting
    /// for its first ticket binds now).
    fn suite_ticket(&self, state: &mut State, client_id: &str, event: &Event) {
        let Some((suite, tickets)) = state.suite.as_ref().filter(|(s, _)| s.key() == client_id)
        else {
            return;
        };
        let Some(ticket) = dirty::suite_ticket(&event.data) else {
            tracing::warn!(
                suite = client_id,
                "a suite_ticket event without a suiteTicket; ignored"
            );
            return;
        };
        if !suite.set_ticket(Secret::new(ticket)) {
            return;
        }
        if let Some(ticket) = suite.ticket() {
            let _ = tickets.send(ticket);
        }
        tracing::info!(suite = client_id, "new suite ticket");
        if let Some(app) = state.apps.get(client_id) {
            for key in app.tenants.keys() {
                trigger(state, key);
            }
        }
    }
}

/// Marks what `event` asks of `key`, and has it reconciled.
fn mark(state: &mut State, key: &TenantKey, event: &Event) {
    let change = dirty::change(event.event_type.as_deref().unwrap_or_default(), &event.data);
    if change == dirty::Change::Ignored {
        return;
    }
    state.pending.entry(key.clone()).or_default().mark(&change);
    trigger(state, key);
}

fn facts(s: super::StreamStatus) -> ChannelFacts {
    ChannelFacts {
        delivery: EventDelivery::Stream,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ticket_event(from: &str, ticket: &str) -> StreamEvent {
        StreamEvent {
            app_key: from.into(),
            item: StreamItem::Event(Event {
                message_id: "m1".into(),
                event_id: Some(format!("e-{ticket}")),
                event_type: Some(SUITE_TICKET.into()),
                born_at: None,
                corp_id: None,
                unified_app_id: None,
                topic: None,
                data: json!({"suiteTicket": ticket}),
            }),
        }
    }

    #[tokio::test]
    async fn only_the_suites_own_connection_sets_its_ticket_and_each_new_one_is_kept_once() {
        let hub = EventsHub::new(StreamConfig::with_base_url("http://127.0.0.1:9"));
        let suite = Suite::new("suite-key", "suite-secret");
        let (kept_tx, mut kept) = mpsc::unbounded_channel();
        hub.set_suite(suite.clone(), kept_tx);
        // A suite_ticket on an internal app's connection is not the suite's.
        hub.route(ticket_event("app-key", "forged"));
        assert_eq!(suite.ticket(), None);
        hub.route(ticket_event("suite-key", "t1"));
        assert_eq!(suite.ticket(), Some(Secret::new("t1")));
        // Redelivered: nothing new to keep.
        hub.route(ticket_event("suite-key", "t1"));
        hub.route(ticket_event("suite-key", "t2"));
        assert_eq!(kept.try_recv().ok(), Some(Secret::new("t1")));
        assert_eq!(kept.try_recv().ok(), Some(Secret::new("t2")));
        assert!(kept.try_recv().is_err());
    }
}
