//! The app's visible scope: what the spec declares, and the delta that makes
//! DingTalk's scope equal to it.

use std::collections::BTreeSet;

use crate::api::{ObservedScope, VisibleScope};

/// DingTalk's id of the organization's root department: "all employees".
pub const ROOT_DEPT: i64 = 1;

/// The visible scope in DingTalk's terms.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DesiredScope {
    pub dept_ids: BTreeSet<i64>,
    pub user_ids: BTreeSet<String>,
}

impl DesiredScope {
    /// The scope a spec declares; "all employees" is the root department.
    pub fn from_spec(scope: &VisibleScope) -> Self {
        if scope.all_employees {
            return Self {
                dept_ids: BTreeSet::from([ROOT_DEPT]),
                user_ids: BTreeSet::new(),
            };
        }
        Self {
            dept_ids: scope.departments.iter().copied().collect(),
            user_ids: scope.users.iter().cloned().collect(),
        }
    }

    /// The scope as DingTalk reported it.
    pub fn from_observed(scope: &ObservedScope) -> Self {
        Self {
            dept_ids: scope.dept_ids.iter().copied().collect(),
            user_ids: scope.user_ids.iter().cloned().collect(),
        }
    }
}

/// The change to send to DingTalk's scopes API (a delta, not a replacement).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScopeDelta {
    pub add_dept_ids: Vec<i64>,
    pub del_dept_ids: Vec<i64>,
    pub add_user_ids: Vec<String>,
    pub del_user_ids: Vec<String>,
    /// `Some(false)` when DingTalk shows the app to admins only and the lists must apply.
    pub only_admin_visible: Option<bool>,
}

impl ScopeDelta {
    pub fn is_empty(&self) -> bool {
        self.add_dept_ids.is_empty()
            && self.del_dept_ids.is_empty()
            && self.add_user_ids.is_empty()
            && self.del_user_ids.is_empty()
            && self.only_admin_visible.is_none()
    }

    /// A one-line summary for Events and logs.
    pub fn summary(&self) -> String {
        format!(
            "departments +{:?} -{:?}, users +{:?} -{:?}{}",
            self.add_dept_ids,
            self.del_dept_ids,
            self.add_user_ids,
            self.del_user_ids,
            if self.only_admin_visible == Some(false) {
                ", no longer admins-only"
            } else {
                ""
            }
        )
    }
}

/// What the enterprise's admin must tick in DingTalk's console so that a
/// marketplace app's visible scope becomes the expected one: `delta`'s
/// changes in words, with "all employees" for the root department.
pub fn admin_steps(delta: &ScopeDelta) -> String {
    fn depts(ids: &[i64]) -> String {
        ids.iter()
            .map(|&id| {
                if id == ROOT_DEPT {
                    "all employees".to_string()
                } else {
                    format!("department {id}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn users(ids: &[String]) -> String {
        ids.iter()
            .map(|id| format!("user {id}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    let mut add: Vec<String> = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    if !delta.add_dept_ids.is_empty() {
        add.push(depts(&delta.add_dept_ids));
    }
    if !delta.add_user_ids.is_empty() {
        add.push(users(&delta.add_user_ids));
    }
    if !delta.del_dept_ids.is_empty() {
        remove.push(depts(&delta.del_dept_ids));
    }
    if !delta.del_user_ids.is_empty() {
        remove.push(users(&delta.del_user_ids));
    }
    let mut steps = Vec::new();
    if !add.is_empty() {
        steps.push(format!("add {}", add.join(", ")));
    }
    if !remove.is_empty() {
        steps.push(format!("remove {}", remove.join(", ")));
    }
    if delta.only_admin_visible == Some(false) {
        steps.push("make it visible beyond the admins".into());
    }
    steps.join("; ")
}

/// The delta that turns `observed` into `desired`.
pub fn delta(desired: &DesiredScope, observed: &ObservedScope) -> ScopeDelta {
    let current = DesiredScope::from_observed(observed);
    ScopeDelta {
        add_dept_ids: desired
            .dept_ids
            .difference(&current.dept_ids)
            .copied()
            .collect(),
        del_dept_ids: current
            .dept_ids
            .difference(&desired.dept_ids)
            .copied()
            .collect(),
        add_user_ids: desired
            .user_ids
            .difference(&current.user_ids)
            .cloned()
            .collect(),
        del_user_ids: current
            .user_ids
            .difference(&desired.user_ids)
            .cloned()
            .collect(),
        only_admin_visible: observed.only_admin_visible.then_some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn admin_steps_say_what_to_tick() {
        let d = ScopeDelta {
            add_dept_ids: vec![1],
            del_dept_ids: vec![7],
            add_user_ids: vec!["u1".into()],
            del_user_ids: vec![],
            only_admin_visible: None,
        };
        assert_eq!(
            admin_steps(&d),
            "add all employees, user u1; remove department 7"
        );
        assert_eq!(admin_steps(&ScopeDelta::default()), "");
    }

    #[test]
    fn all_employees_is_the_root_department() {
        let s = DesiredScope::from_spec(&VisibleScope {
            all_employees: true,
            ..Default::default()
        });
        assert_eq!(s.dept_ids, BTreeSet::from([1]));
        assert!(s.user_ids.is_empty());
    }

    #[test]
    fn delta_adds_and_removes_what_differs() {
        let desired = DesiredScope::from_spec(&VisibleScope {
            all_employees: false,
            departments: vec![2, 3],
            users: vec!["u1".into()],
        });
        let observed = ObservedScope {
            dept_ids: vec![3, 4],
            user_ids: vec!["u2".into()],
            only_admin_visible: false,
        };
        let d = delta(&desired, &observed);
        assert_eq!(d.add_dept_ids, vec![2]);
        assert_eq!(d.del_dept_ids, vec![4]);
        assert_eq!(d.add_user_ids, vec!["u1".to_string()]);
        assert_eq!(d.del_user_ids, vec!["u2".to_string()]);
        assert_eq!(d.only_admin_visible, None);
    }

    #[test]
    fn admins_only_is_switched_off() {
        let desired = DesiredScope::from_spec(&VisibleScope {
            all_employees: true,
            ..Default::default()
        });
        let observed = ObservedScope {
            only_admin_visible: true,
            ..Default::default()
        };
        assert_eq!(delta(&desired, &observed).only_admin_visible, Some(false));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn applying_the_delta_gives_the_desired_scope(
            want_d in prop::collection::btree_set(1i64..50, 0..10), want_u in prop::collection::btree_set("[a-e]", 0..5),
            have_d in prop::collection::vec(1i64..50, 0..10), have_u in prop::collection::vec("[a-e]", 0..5),
        ) {
            let desired = DesiredScope { dept_ids: want_d, user_ids: want_u };
            let observed = ObservedScope { dept_ids: have_d, user_ids: have_u, only_admin_visible: false };
            let d = delta(&desired, &observed);
            let mut result = DesiredScope::from_observed(&observed);
            result.dept_ids.extend(&d.add_dept_ids);
            for id in &d.del_dept_ids { result.dept_ids.remove(id); }
            result.user_ids.extend(d.add_user_ids.iter().cloned());
            for id in &d.del_user_ids { result.user_ids.remove(id); }
            prop_assert_eq!(result, desired);
        }
    }
}
