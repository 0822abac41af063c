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

    fn arb_directory() -> impl Strategy<Value = Directory> {
        let depts = prop::collection::btree_map(1i64..20, "[a-c]{1,2}", 0..8);
        let members = prop::collection::btree_map(
            "u[0-9]{1,2}",
            ("[a-c]{1,2}", prop::collection::vec(1i64..20, 0..3)),
            0..20,
        );
        (depts, members).prop_map(|(d, m)| {
            Directory::new(
                d.into_iter().map(|(id, name)| dept(id, None, &name)),
                m.into_iter()
                    .map(|(u, (name, depts))| member(&u, &name, &depts)),
            )
        })
    }

    proptest! {
        #[test]
        fn applying_the_diff_reaches_the_desired_directory(current in arb_directory(), desired in arb_directory()) {
            let d = diff(&current, &desired);
            prop_assert_eq!(apply(&current, &d), desired);
        }

        #[test]
        fn diff_touches_only_what_changed(current in arb_directory(), desired in arb_directory()) {
            let d = diff(&current, &desired);
            for m in &d.update_members {
                prop_assert_ne!(current.members.get(&m.userid), Some(m));
            }
            prop_assert!(d.add_members.iter().all(|m| !current.members.contains_key(&m.userid)));
        }
    }
}
