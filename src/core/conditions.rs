//! Status conditions, the Kubernetes way: one per type, `lastTransitionTime`
//! moves only when the status flips, `observedGeneration` on each.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` in `conditions`, keeping its transition time when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let next = |last_transition_time| Condition {
        type_: type_.to_string(),
        status: status.clone(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let since = if c.status == status {
                c.last_transition_time.clone()
            } else {
                Time(now)
            };
            *c = next(since);
        }
        None => conditions.push(next(Time(now))),
    }
}

/// Removes the condition of `type_`, if present.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        set(&mut c, "Ready", false, "Syncing", "a", Some(1), t(10));
        set(&mut c, "Ready", false, "Syncing", "b", Some(2), t(20));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert_eq!(c[0].message, "b");
        assert_eq!(c[0].observed_generation, Some(2));
        set(&mut c, "Ready", true, "Reconciled", "", Some(2), t(30));
        assert_eq!(get(&c, "Ready").unwrap().last_transition_time, Time(t(30)));
        assert_eq!(get(&c, "Ready").unwrap().status, "True");
    }
}
