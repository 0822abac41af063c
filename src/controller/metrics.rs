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
        m
    }
}
