//! The directory a tenant should have, built from what was read in DingTalk.

use std::collections::BTreeSet;

use super::directory::{Department, Directory, Member};

/// How to recognise the creator among DingTalk's users: the creator is never
/// listed in the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreatorIdentity {
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl CreatorIdentity {
    pub fn matches(&self, m: &Member) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => !a.is_empty() && a.eq_ignore_ascii_case(b),
            _ => false,
        };
        same(&self.email, &m.email) || same(&self.phone, &m.mobile)
    }
}

/// The desired directory: every department read from the scope's subtrees, and
/// every distinct user read (from those departments, or listed by userid),
/// except the creator. A member's departments are cut down to those in the
/// directory; a department whose parent is outside the directory becomes a top one.
pub fn desired_directory(
    departments: impl IntoIterator<Item = Department>,
    users: impl IntoIterator<Item = Member>,
    creator: &CreatorIdentity,
) -> Directory {
    let mut dir = Directory::new(departments, []);
    let ids: BTreeSet<i64> = dir.departments.keys().copied().collect();
    for dept in dir.departments.values_mut() {
        if dept.parent_id.is_some_and(|p| !ids.contains(&p)) {
            dept.parent_id = None;
        }
    }
    for mut member in users {
        if creator.matches(&member) || dir.members.contains_key(&member.userid) {
            continue;
        }
        member.dept_ids.retain(|d| ids.contains(d));
        member.dept_ids.sort_unstable();
        member.dept_ids.dedup();
        dir.members.insert(member.userid.clone(), member);
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(id: i64, parent: i64) -> Department {
        Department {
            id,
            parent_id: Some(parent),
            name: format!("d{id}"),
            order: 0,
        }
    }

    fn user(id: &str, depts: &[i64], email: &str) -> Member {
        Member {
            userid: id.into(),
            name: id.into(),
            email: Some(email.into()),
            dept_ids: depts.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn members_are_distinct_and_keep_only_departments_in_scope() {
        let d = desired_directory(
            [dept(2, 1), dept(3, 2)],
            [
                user("u1", &[3, 9], "a@x"),
                user("u1", &[3, 9], "a@x"),
                user("u2", &[9], "b@x"),
            ],
            &CreatorIdentity::default(),
        );
        assert_eq!(d.members.len(), 2);
        assert_eq!(d.members["u1"].dept_ids, vec![3]);
        assert!(
            d.members["u2"].dept_ids.is_empty(),
            "listed by userid, no department in scope"
        );
        assert_eq!(
            d.departments[&2].parent_id, None,
            "parent 1 is outside the directory"
        );
        assert_eq!(d.departments[&3].parent_id, Some(2));
    }

    #[test]
    fn the_creator_is_never_listed() {
        let creator = CreatorIdentity {
            email: Some("Owner@Acme.example".into()),
            phone: None,
        };
        let d = desired_directory(
            [dept(2, 1)],
            [
                user("boss", &[2], "owner@acme.example"),
                user("u1", &[2], "u1@acme.example"),
            ],
            &creator,
        );
        assert!(!d.members.contains_key("boss"));
        assert_eq!(d.members.len(), 1);
    }
}
