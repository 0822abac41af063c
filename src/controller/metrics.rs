//! Prometheus metrics of the operator, served on `/metrics`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `member`, `creator`, or `-` when refused.
    pub r#as: String,
    pub allowed: String,
    /// The refusal's reason, `-` when allowed.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabels {
    /// DingTalk's `eventType` (`user_leave_org`…), `unknown` when absent.
    pub r#type: String,
}

/// Every metric dingbind exports.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub sync_duration: Histogram,
    pub members_added: Counter,
    pub members_updated: Counter,
    pub members_removed: Counter,
    pub deletions_held: Family<TenantLabels, Gauge>,
    pub dingtalk_calls: Family<EndpointLabels, Counter>,
    pub dingtalk_throttles: Family<EndpointLabels, Counter>,
    pub leader: Gauge,
    pub tenants_unreadable: Gauge,
    pub events_received: Family<EventTypeLabels, Counter>,
    pub event_lag: Histogram,
    pub stream_connections: Counter,
    pub stream_reconnects: Counter,
    pub stream_disconnects: Counter,
    pub logins: Family<LoginLabels, Counter>,
    pub login_throttled: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` under the `dingbind` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let buckets = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0];
        let m = Self {
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(buckets),
            sync_duration: Histogram::new(buckets),
            members_added: Counter::default(),
            members_updated: Counter::default(),
            members_removed: Counter::default(),
            deletions_held: Family::default(),
            dingtalk_calls: Family::default(),
            dingtalk_throttles: Family::default(),
            leader: Gauge::default(),
            tenants_unreadable: Gauge::default(),
            events_received: Family::default(),
            event_lag: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0]),
            stream_connections: Counter::default(),
            stream_reconnects: Counter::default(),
            stream_disconnects: Counter::default(),
            logins: Family::default(),
            login_throttled: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("dingbind");
        r.register("reconciles", "Reconciliations run", m.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Reconciliations that failed, by reason",
            m.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations",
            m.reconcile_duration.clone(),
        );
        r.register(
            "sync_duration_seconds",
            "Duration of directory syncs",
            m.sync_duration.clone(),
        );
        r.register(
            "members_added",
            "Members added to directories",
            m.members_added.clone(),
        );
        r.register(
            "members_updated",
            "Members updated in directories",
            m.members_updated.clone(),
        );
        r.register(
            "members_removed",
            "Members removed from directories",
            m.members_removed.clone(),
        );
        r.register(
            "deletions_held",
            "Removals held back by the accidental-delete guard",
            m.deletions_held.clone(),
        );
        r.register(
            "dingtalk_calls",
            "DingTalk API calls, by endpoint",
            m.dingtalk_calls.clone(),
        );
        r.register(
            "dingtalk_throttles",
            "DingTalk throttle errors, by endpoint",
            m.dingtalk_throttles.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        r.register(
            "tenants_unreadable",
            "Tenants skipped because they do not load as the Tenant type",
            m.tenants_unreadable.clone(),
        );
        r.register(
            "events_received",
            "New events from DingTalk (duplicates dropped), by eventType",
            m.events_received.clone(),
        );
        r.register(
            "event_lag_seconds",
            "From an event's eventBornTime to its arrival",
            m.event_lag.clone(),
        );
        r.register(
            "stream_connections",
            "Stream connections opened to DingTalk",
            m.stream_connections.clone(),
        );
        r.register(
            "stream_reconnects",
            "Stream connections opened again after a drop or a disconnect",
            m.stream_reconnects.clone(),
        );
        r.register(
            "stream_disconnects",
            "Stream connections lost, or not opened",
            m.stream_disconnects.clone(),
        );
        r.register(
            "logins",
            "Login decisions of the login API, by who and reason",
            m.logins.clone(),
        );
        r.register(
            "login_throttled",
            "Password attempts refused without a check (backoff or lockout)",
            m.login_throttled.clone(),
        );
        m
    }

    /// Counts what a Stream connection observed at `now`.
    /// Counts one login decision.
    pub fn observe_login(&self, logged: &crate::login::service::Logged<'_>) {
        let a = logged.answer;
        self.logins
            .get_or_create(&LoginLabels {
                r#as: a.as_.unwrap_or("-").to_string(),
                allowed: a.allowed.to_string(),
                reason: a.reason.unwrap_or("-").to_string(),
            })
            .inc();
        if logged.throttled {
            self.login_throttled.inc();
        }
    }

    pub fn observe_stream(&self, item: &crate::events::StreamItem, now: jiff::Timestamp) {
        use crate::events::StreamItem;
        match item {
            StreamItem::Connected { reconnect, .. } => {
                self.stream_connections.inc();
                if *reconnect {
                    self.stream_reconnects.inc();
                }
            }
            StreamItem::Disconnected => {
                self.stream_disconnects.inc();
            }
            StreamItem::Event(e) => {
                let labels = EventTypeLabels {
                    r#type: e.event_type.clone().unwrap_or_else(|| "unknown".into()),
                };
                self.events_received.get_or_create(&labels).inc();
                if let Some(born) = e.born_at {
                    let lag = now.duration_since(born).as_secs_f64().max(0.0);
                    self.event_lag.observe(lag);
                }
            }
        }
    }
}
