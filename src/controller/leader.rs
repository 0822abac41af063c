//! Leader election with a `coordination.k8s.io/v1` Lease, so that two replicas
//! never act at once. The decision (may I take or keep the lease?) is pure;
//! the loop around it reads and writes the Lease with optimistic concurrency
//! (`resourceVersion`), so two candidates cannot both win the same round.
//!
//! As client-go does, a candidate judges another holder's lease expired by its
//! own clock: by how long it has seen the holder's `renewTime` unchanged,
//! never by comparing timestamps written by another machine. The holder gives
//! up leading when it could not renew within the renew deadline, which is
//! shorter than the lease, so it stops before anyone else may start. Each
//! leadership term has a fencing token (the Lease's transitions count) that
//! the store checks on every write, so that a leader which stalled past its
//! lease cannot write after its successor.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How long the holder keeps leading without a successful renewal
    /// (shorter than `duration`).
    pub renew_deadline: Duration,
    /// How often the holder renews, and candidates retry.
    pub retry: Duration,
    /// The lowest fencing token a new term may take (the store's current
    /// one): a Lease deleted and created again restarts its count, the store's
    /// fence does not.
    pub fence_floor: i64,
}

impl LeaseConfig {
    /// The client-go proportions: renew deadline 2/3 of the lease, retry 2/15.
    pub fn with_duration(
        namespace: String,
        name: String,
        identity: String,
        duration: Duration,
    ) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration,
            renew_deadline: duration * 2 / 3,
            retry: (duration * 2 / 15).max(Duration::from_millis(500)),
            fence_floor: 0,
        }
    }
}

/// What a candidate may do with the lease it just read.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The lease is ours: renew it.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds a valid lease.
    Wait,
}

/// Decides from the Lease as read (`None` when it does not exist yet) and how
/// long this candidate has seen its holder and `renewTime` unchanged. Pure.
pub fn verdict(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Verdict {
    let Some(spec) = spec else {
        return Verdict::Acquire;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Verdict::Renew,
        None | Some("") => Verdict::Acquire,
        Some(_) => {
            let ttl = u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15);
            if unchanged_for < Duration::from_secs(ttl) {
                Verdict::Wait
            } else {
                Verdict::Acquire
            }
        }
    }
}

/// What a candidate last saw of the Lease: who held it and its `renewTime`,
/// and when (by this process's monotonic clock) that last changed.
#[derive(Debug)]
pub struct Observation {
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Instant,
}

impl Observation {
    pub fn new(now: Instant) -> Self {
        Self {
            record: None,
            since: now,
        }
    }

    /// Notes the Lease as read at `now`; returns how long it has been unchanged.
    pub fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) -> Duration {
        let record = spec.map(|s| (s.holder_identity.clone(), s.renew_time.clone()));
        if self.record != record {
            self.record = record;
            self.since = now;
        }
        now.saturating_duration_since(self.since)
    }
}

fn spec_for(
    identity: &str,
    cfg: &LeaseConfig,
    now: Timestamp,
    previous: Option<&LeaseSpec>,
    acquire: bool,
) -> LeaseSpec {
    let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
    let term = i32::try_from(cfg.fence_floor.saturating_add(1)).unwrap_or(i32::MAX);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(cfg.duration.as_secs().try_into().unwrap_or(i32::MAX)),
        acquire_time: if acquire {
            Some(MicroTime(now))
        } else {
            previous.and_then(|s| s.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if acquire {
            transitions.saturating_add(1).max(term)
        } else {
            transitions
        }),
        ..Default::default()
    }
}

/// Tries one round: returns the fencing token of the term this replica holds
/// afterwards, `None` when it does not hold the lease.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observation: &mut Observation,
) -> Result<Option<i64>, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let unchanged_for = observation.observe(spec, Instant::now());
    let acquire = match verdict(spec, &cfg.identity, unchanged_for) {
        Verdict::Wait => return Ok(None),
        Verdict::Renew => false,
        Verdict::Acquire => true,
    };
    let next = spec_for(&cfg.identity, cfg, Timestamp::now(), spec, acquire);
    let token = i64::from(next.lease_transitions.unwrap_or(0));
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(next),
    };
    let result = match current {
        None => api.create(&PostParams::default(), &lease).await,
        Some(_) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(Some(token)),
        // Someone else wrote the lease first (409): not ours this round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs the election until `stop`; the returned receiver holds the fencing
/// token of this replica's term while it leads, `None` otherwise. A holder
/// that cannot renew within the renew deadline (errors, or a call that hangs)
/// stops leading.
pub fn run(
    client: Client,
    cfg: LeaseConfig,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<Option<i64>> {
    let (tx, rx) = watch::channel(None);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    tokio::spawn(async move {
        let mut observation = Observation::new(Instant::now());
        let mut renewed = Instant::now();
        loop {
            let round = tokio::time::timeout(
                cfg.renew_deadline,
                try_acquire_or_renew(&api, &cfg, &mut observation),
            )
            .await;
            let held = *tx.borrow();
            let term = match round {
                Ok(Ok(term)) => {
                    if term.is_some() {
                        renewed = Instant::now();
                    }
                    term
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "leader election: cannot read or write the Lease");
                    held.filter(|_| renewed.elapsed() < cfg.renew_deadline)
                }
                Err(_) => {
                    tracing::warn!(lease = %cfg.name, "leader election: no answer within the renew deadline");
                    None
                }
            };
            if term.is_some() != held.is_some() {
                tracing::info!(identity = %cfg.identity, leading = term.is_some(), term, "leadership changed");
            }
            let _ = tx.send(term);
            tokio::select! {
                () = tokio::time::sleep(cfg.retry) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Hand the lease over at once on a clean shutdown.
        if tx.borrow().is_some()
            && let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(&cfg.identity)
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
        }
        let _ = tx.send(None);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn held_by(who: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(renewed))),
            ..Default::default()
        }
    }

    fn cfg() -> LeaseConfig {
        LeaseConfig::with_duration("ns".into(), "l".into(), "a".into(), Duration::from_secs(15))
    }

    #[test]
    fn a_missing_or_free_lease_is_acquired() {
        let zero = Duration::ZERO;
        assert_eq!(verdict(None, "a", zero), Verdict::Acquire);
        assert_eq!(
            verdict(Some(&LeaseSpec::default()), "a", zero),
            Verdict::Acquire
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(
            verdict(Some(&held_by("a", 0)), "a", Duration::from_secs(100)),
            Verdict::Renew
        );
    }

    #[test]
    fn someone_elses_lease_is_respected_until_seen_unchanged_for_its_duration() {
        let b = held_by("b", 100);
        assert_eq!(
            verdict(Some(&b), "a", Duration::from_secs(14)),
            Verdict::Wait
        );
        assert_eq!(
            verdict(Some(&b), "a", Duration::from_secs(15)),
            Verdict::Acquire
        );
    }

    #[test]
    fn expiry_is_judged_by_the_local_clock_not_by_the_holders_timestamps() {
        let start = Instant::now();
        let mut seen = Observation::new(start);
        // A renewTime far in the past by our clock (a skewed holder) is not
        // expired: we have only just seen it.
        let skewed = held_by("b", 0);
        assert_eq!(seen.observe(Some(&skewed), start), Duration::ZERO);
        let later = start + Duration::from_secs(10);
        assert_eq!(seen.observe(Some(&skewed), later), Duration::from_secs(10));
        // The holder renews (a new renewTime, whatever its value): the count restarts.
        let renewed = held_by("b", 1);
        assert_eq!(seen.observe(Some(&renewed), later), Duration::ZERO);
        let unchanged = seen.observe(Some(&renewed), later + Duration::from_secs(15));
        assert_eq!(verdict(Some(&renewed), "a", unchanged), Verdict::Acquire);
    }

    #[test]
    fn the_renew_deadline_is_shorter_than_the_lease() {
        let c = cfg();
        assert!(c.renew_deadline < c.duration);
        assert!(c.retry < c.renew_deadline);
    }

    #[test]
    fn acquiring_starts_a_term_above_the_previous_one_and_the_store_floor() {
        let mut c = cfg();
        let prev = held_by("b", 0);
        let s = spec_for("a", &c, t(50), Some(&prev), true);
        assert_eq!(s.lease_transitions, Some(1));
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.acquire_time, Some(MicroTime(t(50))));
        // A Lease deleted and created again restarts at 0; the store saw term 7.
        c.fence_floor = 7;
        let s = spec_for("a", &c, t(60), None, true);
        assert_eq!(s.lease_transitions, Some(8));
        // Renewing keeps the term.
        let ours = LeaseSpec {
            lease_transitions: Some(8),
            ..held_by("a", 60)
        };
        let s = spec_for("a", &c, t(62), Some(&ours), false);
        assert_eq!(s.lease_transitions, Some(8));
    }
}
