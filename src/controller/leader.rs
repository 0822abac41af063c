//! Leader election with a `coordination.k8s.io/v1` Lease, so that two replicas
//! never act at once. The decision (may I take or keep the lease?) is pure;
//! the loop around it reads and writes the Lease with optimistic concurrency
//! (`resourceVersion`), so two candidates cannot both win the same round.

use std::time::Duration;

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
    /// How often the holder renews, and candidates retry.
    pub retry: Duration,
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

/// Decides from the Lease as read (`None` when it does not exist yet). Pure.
pub fn verdict(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Verdict {
    let Some(spec) = spec else {
        return Verdict::Acquire;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Verdict::Renew,
        None | Some("") => Verdict::Acquire,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            let ttl = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            match renewed {
                Some(t) if now.as_second() < t.as_second() + ttl => Verdict::Wait,
                _ => Verdict::Acquire,
            }
        }
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
            transitions + 1
        } else {
            transitions
        }),
        ..Default::default()
    }
}

/// Tries one round: returns whether this replica holds the lease afterwards.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let acquire = match verdict(spec, &cfg.identity, now) {
        Verdict::Wait => return Ok(false),
        Verdict::Renew => false,
        Verdict::Acquire => true,
    };
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(spec_for(&cfg.identity, cfg, now, spec, acquire)),
    };
    let result = match current {
        None => api.create(&PostParams::default(), &lease).await,
        Some(_) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(true),
        // Someone else wrote the lease first (409): not ours this round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the election until `stop`; the returned receiver says whether this
/// replica leads. Errors are logged and count as "not leading" once the lease
/// could have expired.
pub fn run(
    client: Client,
    cfg: LeaseConfig,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    tokio::spawn(async move {
        let mut last_ok = std::time::Instant::now();
        loop {
            let leading = match try_acquire_or_renew(&api, &cfg).await {
                Ok(held) => {
                    last_ok = std::time::Instant::now();
                    held
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "leader election: cannot read or write the Lease");
                    *tx.borrow() && last_ok.elapsed() < cfg.duration
                }
            };
            if leading != *tx.borrow() {
                tracing::info!(identity = %cfg.identity, leading, "leadership changed");
            }
            let _ = tx.send(leading);
            tokio::select! {
                () = tokio::time::sleep(cfg.retry) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Hand the lease over at once on a clean shutdown.
        if *tx.borrow()
            && let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(&cfg.identity)
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
        }
        let _ = tx.send(false);
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

    #[test]
    fn a_missing_or_free_lease_is_acquired() {
        assert_eq!(verdict(None, "a", t(0)), Verdict::Acquire);
        assert_eq!(
            verdict(Some(&LeaseSpec::default()), "a", t(0)),
            Verdict::Acquire
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(verdict(Some(&held_by("a", 0)), "a", t(100)), Verdict::Renew);
    }

    #[test]
    fn someone_elses_valid_lease_is_respected_until_it_expires() {
        assert_eq!(
            verdict(Some(&held_by("b", 100)), "a", t(114)),
            Verdict::Wait
        );
        assert_eq!(
            verdict(Some(&held_by("b", 100)), "a", t(115)),
            Verdict::Acquire
        );
    }

    #[test]
    fn acquiring_counts_a_transition() {
        let cfg = LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        };
        let prev = held_by("b", 0);
        let s = spec_for("a", &cfg, t(50), Some(&prev), true);
        assert_eq!(s.lease_transitions, Some(1));
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.acquire_time, Some(MicroTime(t(50))));
    }
}
