//! Nobody is removed on a guess: a member missing from a sync leaves the
//! directory only when DingTalk confirms it for that person. Pure: the shell
//! asks DingTalk (`user/get`) about each absent member and passes the answers in.

use std::collections::{BTreeMap, BTreeSet};

use super::desired::CreatorIdentity;
use super::directory::{Directory, DirectoryDiff, Member};
use super::scope::DesiredScope;

/// What DingTalk says of a member missing from a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absence {
    /// The user no longer exists (left the company, 60121 / 33012).
    Gone,
    /// The user exists, but none of their departments is in the scope and the
    /// scope does not list them.
    OutOfScope,
    /// The user is the creator, who is never listed.
    Creator,
    /// The user exists and is in the scope: the absence was a transient answer.
    Unconfirmed,
}

impl Absence {
    pub fn confirmed(self) -> bool {
        self != Absence::Unconfirmed
    }
}

/// Judges one absence from `user/get`'s answer (`None`: no such user).
/// `scope_departments` are the departments the sync read in the scope.
pub fn absence(
    found: Option<&Member>,
    scope: &DesiredScope,
    scope_departments: &BTreeSet<i64>,
    creator: &CreatorIdentity,
) -> Absence {
    let Some(user) = found else {
        return Absence::Gone;
    };
    if creator.matches(user) {
        return Absence::Creator;
    }
    let listed = scope.user_ids.contains(&user.userid);
    let in_a_department = user.dept_ids.iter().any(|d| scope_departments.contains(d));
    if listed || in_a_department {
        Absence::Unconfirmed
    } else {
        Absence::OutOfScope
    }
}

/// The diff with only confirmed removals, and how many absences were not
/// confirmed. A member kept this way keeps their departments too. An absence
/// without a verdict counts as unconfirmed.
pub fn keep_unconfirmed(
    mut diff: DirectoryDiff,
    current: &Directory,
    verdicts: &BTreeMap<String, Absence>,
) -> (DirectoryDiff, u64) {
    let (removed, kept): (Vec<String>, Vec<String>) = diff
        .remove_members
        .into_iter()
        .partition(|u| verdicts.get(u).is_some_and(|v| v.confirmed()));
    diff.remove_members = removed;
    let still_used: BTreeSet<i64> = kept
        .iter()
        .filter_map(|u| current.members.get(u))
        .flat_map(|m| m.dept_ids.iter().copied())
        .collect();
    diff.remove_departments.retain(|d| !still_used.contains(d));
    (diff, kept.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directory::{Department, diff};

    fn member(userid: &str, depts: &[i64]) -> Member {
        Member {
            userid: userid.into(),
            name: userid.into(),
            dept_ids: depts.to_vec(),
            ..Default::default()
        }
    }

    fn scope(depts: &[i64], users: &[&str]) -> DesiredScope {
        DesiredScope {
            dept_ids: depts.iter().copied().collect(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn each_kind_of_absence() {
        let s = scope(&[2], &["listed"]);
        let depts = BTreeSet::from([2, 3]);
        let nobody = CreatorIdentity::default();
        assert_eq!(absence(None, &s, &depts, &nobody), Absence::Gone);
        assert_eq!(
            absence(Some(&member("u", &[9])), &s, &depts, &nobody),
            Absence::OutOfScope
        );
        assert_eq!(
            absence(Some(&member("u", &[9, 3])), &s, &depts, &nobody),
            Absence::Unconfirmed,
            "one department in the scope is enough"
        );
        assert_eq!(
            absence(Some(&member("listed", &[9])), &s, &depts, &nobody),
            Absence::Unconfirmed
        );
        let mut creator = member("boss", &[2]);
        creator.email = Some("boss@example.com".into());
        let identity = CreatorIdentity {
            email: Some("BOSS@example.com".into()),
            phone: None,
        };
        assert_eq!(
            absence(Some(&creator), &s, &depts, &identity),
            Absence::Creator
        );
    }

    #[test]
    fn unconfirmed_absences_and_their_departments_are_kept() {
        let dept = |id| Department {
            id,
            parent_id: None,
            name: format!("d{id}"),
            order: 0,
        };
        let current = Directory::new(
            [dept(2), dept(3), dept(4)],
            [
                member("stays", &[2]),
                member("flaky", &[3]),
                member("left", &[4]),
            ],
        );
        // A sync that read only department 2 and its member.
        let desired = Directory::new([dept(2)], [member("stays", &[2])]);
        let d = diff(&current, &desired);
        assert_eq!(d.remove_members, ["flaky", "left"]);
        assert_eq!(d.remove_departments, [3, 4]);
        let verdicts = BTreeMap::from([
            ("flaky".to_string(), Absence::Unconfirmed),
            ("left".to_string(), Absence::Gone),
        ]);
        let (kept, unconfirmed) = keep_unconfirmed(d.clone(), &current, &verdicts);
        assert_eq!(unconfirmed, 1);
        assert_eq!(kept.remove_members, ["left"]);
        assert_eq!(kept.remove_departments, [4]);
        // No verdict at all: nobody is removed.
        let (none, unconfirmed) = keep_unconfirmed(d, &current, &BTreeMap::new());
        assert_eq!(unconfirmed, 2);
        assert!(none.remove_members.is_empty());
        assert!(none.remove_departments.is_empty());
    }
}
