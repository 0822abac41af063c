//! The tenant's directory as data, and the diff that brings one directory to
//! another. Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A DingTalk department in the tenant's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Department {
    /// DingTalk `dept_id` (the organization's root is 1).
    pub id: i64,
    /// Parent department; `None` for a top department of the directory.
    pub parent_id: Option<i64>,
    pub name: String,
    /// Order within the parent.
    pub order: i64,
}

/// A DingTalk member in the tenant's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub userid: String,
    pub unionid: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_number: Option<String>,
    pub active: bool,
    pub admin: bool,
    pub boss: bool,
    /// The member's departments inside the directory, sorted ascending.
    pub dept_ids: Vec<i64>,
}

/// A whole directory: departments by id and members by userid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub departments: BTreeMap<i64, Department>,
    pub members: BTreeMap<String, Member>,
}

impl Directory {
    pub fn new(
        departments: impl IntoIterator<Item = Department>,
        members: impl IntoIterator<Item = Member>,
    ) -> Self {
        Self {
            departments: departments.into_iter().map(|d| (d.id, d)).collect(),
            members: members.into_iter().map(|m| (m.userid.clone(), m)).collect(),
        }
    }
}

/// What changes between two directories. Applying it to the first gives the second.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryDiff {
    pub add_departments: Vec<Department>,
    pub update_departments: Vec<Department>,
    pub remove_departments: Vec<i64>,
    pub add_members: Vec<Member>,
    pub update_members: Vec<Member>,
    pub remove_members: Vec<String>,
}

impl DirectoryDiff {
    pub fn is_empty(&self) -> bool {
        self.add_departments.is_empty()
            && self.update_departments.is_empty()
            && self.remove_departments.is_empty()
            && self.add_members.is_empty()
            && self.update_members.is_empty()
            && self.remove_members.is_empty()
    }

    /// Rows the diff writes.
    pub fn len(&self) -> usize {
        self.add_departments.len()
            + self.update_departments.len()
            + self.remove_departments.len()
            + self.add_members.len()
            + self.update_members.len()
            + self.remove_members.len()
    }
}

/// The changes that turn `current` into `desired`. Unchanged entries appear nowhere,
/// so applying the diff rewrites nothing that did not change.
pub fn diff(current: &Directory, desired: &Directory) -> DirectoryDiff {
    let mut d = DirectoryDiff::default();
    for (id, dept) in &desired.departments {
        match current.departments.get(id) {
            None => d.add_departments.push(dept.clone()),
            Some(old) if old != dept => d.update_departments.push(dept.clone()),
            Some(_) => {}
        }
    }
    d.remove_departments = current
        .departments
        .keys()
        .filter(|id| !desired.departments.contains_key(id))
        .copied()
        .collect();
    for (userid, member) in &desired.members {
        match current.members.get(userid) {
            None => d.add_members.push(member.clone()),
            Some(old) if old != member => d.update_members.push(member.clone()),
            Some(_) => {}
        }
    }
    d.remove_members = current
        .members
        .keys()
        .filter(|u| !desired.members.contains_key(*u))
        .cloned()
        .collect();
    d
}

/// `current` with `diff` applied: what a store holds after `apply_sync`.
pub fn apply(current: &Directory, diff: &DirectoryDiff) -> Directory {
    let mut next = current.clone();
    for id in &diff.remove_departments {
        next.departments.remove(id);
    }
    for dept in diff.add_departments.iter().chain(&diff.update_departments) {
        next.departments.insert(dept.id, dept.clone());
    }
    for userid in &diff.remove_members {
        next.members.remove(userid);
    }
    for m in diff.add_members.iter().chain(&diff.update_members) {
        next.members.insert(m.userid.clone(), m.clone());
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(userid: &str, name: &str, depts: &[i64]) -> Member {
        Member {
            userid: userid.into(),
            unionid: format!("un-{userid}"),
            name: name.into(),
            dept_ids: depts.to_vec(),
            ..Default::default()
        }
    }

    fn dept(id: i64, parent: Option<i64>, name: &str) -> Department {
        Department {
            id,
            parent_id: parent,
            name: name.into(),
            order: 0,
        }
    }

    #[test]
    fn unchanged_directory_gives_an_empty_diff() {
        let dir = Directory::new(
            [dept(2, Some(1), "Sales")],
            [member("u1", "Zhang San", &[2])],
        );
        assert!(diff(&dir, &dir).is_empty());
    }

    #[test]
    fn diff_sorts_changes_into_add_update_remove() {
        let current = Directory::new(
            [dept(2, None, "Sales"), dept(3, None, "Ops")],
            [member("u1", "A", &[2]), member("u2", "B", &[3])],
        );
        let desired = Directory::new(
            [dept(2, None, "Sales & Marketing"), dept(4, None, "R&D")],
            [member("u1", "A", &[2]), member("u3", "C", &[4])],
        );
        let d = diff(&current, &desired);
        assert_eq!(d.add_departments, vec![dept(4, None, "R&D")]);
        assert_eq!(
            d.update_departments,
            vec![dept(2, None, "Sales & Marketing")]
        );
        assert_eq!(d.remove_departments, vec![3]);
        assert_eq!(d.add_members, vec![member("u3", "C", &[4])]);
        assert!(d.update_members.is_empty());
        assert_eq!(d.remove_members, vec!["u2".to_string()]);
    }

    fn arb_text() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[a-c]{1,2}")
    }

    fn arb_department() -> impl Strategy<Value = Department> {
        (1i64..20, prop::option::of(1i64..20), "[a-c]{1,2}", 0i64..3).prop_map(
            |(id, parent_id, name, order)| Department {
                id,
                parent_id,
                name,
                order,
            },
        )
    }

    fn arb_member() -> impl Strategy<Value = Member> {
        (
            ("u[0-9]{1,2}", "[a-b]", "[a-c]{1,2}"),
            (arb_text(), arb_text(), arb_text(), arb_text()),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            prop::collection::btree_set(1i64..20, 0..3),
        )
            .prop_map(
                |(
                    (userid, unionid, name),
                    (mobile, email, title, job_number),
                    (active, admin, boss),
                    depts,
                )| Member {
                    unionid: format!("un-{userid}-{unionid}"),
                    userid,
                    name,
                    mobile,
                    email,
                    title,
                    job_number,
                    active,
                    admin,
                    boss,
                    dept_ids: depts.into_iter().collect(),
                },
            )
    }

    /// A directory varying every field: parents, order, contact fields, flags
    /// and departments.
    fn arb_directory() -> impl Strategy<Value = Directory> {
        (
            prop::collection::vec(arb_department(), 0..8),
            prop::collection::vec(arb_member(), 0..20),
        )
            .prop_map(|(d, m)| Directory::new(d, m))
    }

    /// Picks, for each key of either map, the current entry, the other one,
    /// or none: unchanged, changed, added and removed entries all occur.
    fn mix<K: Ord + Clone, V: Clone>(
        current: &BTreeMap<K, V>,
        other: &BTreeMap<K, V>,
        picks: &mut impl Iterator<Item = u8>,
    ) -> BTreeMap<K, V> {
        let keys: std::collections::BTreeSet<&K> = current.keys().chain(other.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let v = match picks.next().unwrap_or(0) {
                    0 => current.get(k).or(other.get(k)),
                    1 => other.get(k),
                    2 => current.get(k),
                    _ => None,
                };
                v.map(|v| (k.clone(), v.clone()))
            })
            .collect()
    }

    /// A current directory and a desired one close to it.
    fn arb_pair() -> impl Strategy<Value = (Directory, Directory)> {
        (
            arb_directory(),
            arb_directory(),
            prop::collection::vec(0u8..4, 1..64),
        )
            .prop_map(|(current, other, picks)| {
                let mut picks = picks.into_iter().cycle();
                let desired = Directory {
                    departments: mix(&current.departments, &other.departments, &mut picks),
                    members: mix(&current.members, &other.members, &mut picks),
                };
                (current, desired)
            })
    }

    /// What `diff` must say about one map: every added key is new and as
    /// desired, every updated one existed and changed, every removed one is
    /// gone, and an unchanged entry appears nowhere.
    fn check_part<K: Ord + Clone + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
        current: &BTreeMap<K, V>,
        desired: &BTreeMap<K, V>,
        added: &[(K, &V)],
        updated: &[(K, &V)],
        removed: &[K],
    ) -> Result<(), TestCaseError> {
        for (k, v) in added {
            prop_assert!(!current.contains_key(k), "added {:?} existed", k);
            prop_assert_eq!(desired.get(k), Some(*v));
        }
        for (k, v) in updated {
            prop_assert!(
                current.get(k).is_some_and(|old| old != *v),
                "updated {:?} unchanged",
                k
            );
            prop_assert_eq!(desired.get(k), Some(*v));
        }
        for k in removed {
            prop_assert!(
                current.contains_key(k) && !desired.contains_key(k),
                "removed {:?}",
                k
            );
        }
        let unchanged = desired
            .iter()
            .filter(|(k, v)| current.get(*k) == Some(*v))
            .count();
        // Each key once: what is desired is added, updated or unchanged; what
        // was there is updated, removed or unchanged.
        prop_assert_eq!(added.len() + updated.len() + unchanged, desired.len());
        prop_assert_eq!(removed.len() + updated.len() + unchanged, current.len());
        Ok(())
    }

    fn dept_pairs(ds: &[Department]) -> Vec<(i64, &Department)> {
        ds.iter().map(|x| (x.id, x)).collect()
    }

    fn member_pairs(ms: &[Member]) -> Vec<(String, &Member)> {
        ms.iter().map(|x| (x.userid.clone(), x)).collect()
    }

    /// The generator reaches every kind of change, so the properties below
    /// cannot pass on directories that only differ in names.
    #[test]
    fn arb_pair_reaches_every_kind_of_change() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (current, desired) = arb_pair().new_tree(&mut runner).expect("a value").current();
            let d = diff(&current, &desired);
            for (what, hit) in [
                ("add dept", !d.add_departments.is_empty()),
                ("remove dept", !d.remove_departments.is_empty()),
                ("add member", !d.add_members.is_empty()),
                ("remove member", !d.remove_members.is_empty()),
                (
                    "unchanged member",
                    desired
                        .members
                        .iter()
                        .any(|(k, v)| current.members.get(k) == Some(v)),
                ),
            ] {
                if hit {
                    seen.insert(what.to_string());
                }
            }
            for new in &d.update_departments {
                let old = &current.departments[&new.id];
                for (what, hit) in [
                    ("dept parent", old.parent_id != new.parent_id),
                    ("dept order", old.order != new.order),
                    ("dept name", old.name != new.name),
                ] {
                    if hit {
                        seen.insert(what.to_string());
                    }
                }
            }
            for new in &d.update_members {
                let old = &current.members[&new.userid];
                for (what, hit) in [
                    ("member unionid", old.unionid != new.unionid),
                    ("member mobile", old.mobile != new.mobile),
                    ("member email", old.email != new.email),
                    ("member title", old.title != new.title),
                    ("member job number", old.job_number != new.job_number),
                    ("member active", old.active != new.active),
                    ("member admin", old.admin != new.admin),
                    ("member boss", old.boss != new.boss),
                    ("member departments", old.dept_ids != new.dept_ids),
                ] {
                    if hit {
                        seen.insert(what.to_string());
                    }
                }
            }
        }
        let all = [
            "add dept",
            "remove dept",
            "add member",
            "remove member",
            "unchanged member",
            "dept parent",
            "dept order",
            "dept name",
            "member unionid",
            "member mobile",
            "member email",
            "member title",
            "member job number",
            "member active",
            "member admin",
            "member boss",
            "member departments",
        ];
        let missing: Vec<&str> = all.iter().copied().filter(|w| !seen.contains(*w)).collect();
        assert!(missing.is_empty(), "never generated: {missing:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn applying_the_diff_reaches_the_desired_directory((current, desired) in arb_pair()) {
            let d = diff(&current, &desired);
            prop_assert_eq!(apply(&current, &d), desired);
        }

        #[test]
        fn applying_the_diff_of_unrelated_directories_reaches_the_desired_one(current in arb_directory(), desired in arb_directory()) {
            let d = diff(&current, &desired);
            prop_assert_eq!(apply(&current, &d), desired);
        }

        #[test]
        fn diff_touches_only_what_changed((current, desired) in arb_pair()) {
            let d = diff(&current, &desired);
            check_part(
                &current.departments,
                &desired.departments,
                &dept_pairs(&d.add_departments),
                &dept_pairs(&d.update_departments),
                &d.remove_departments,
            )?;
            check_part(
                &current.members,
                &desired.members,
                &member_pairs(&d.add_members),
                &member_pairs(&d.update_members),
                &d.remove_members,
            )?;
        }
    }
}
