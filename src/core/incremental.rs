//! The incremental sync: re-read only what events marked dirty, lay the
//! answers over the stored directory, and diff with the same core as the full
//! sync, so that removals pass the same absence confirmation
//! ([`super::absence`]) and the same delete guard ([`super::guard`]).
//!
//! [`Incremental`] is a plan the shell drives: it asks for one [`Read`] at a
//! time ([`Incremental::next_read`]), is given each [`Answer`]
//! ([`Incremental::answer`]), and asks for more when an answer shows
//! something else may have changed: a department new to the directory is read
//! in turn (so a subtree moved into the scope is walked), a stored
//! sub-department or member a department no longer lists is read, and so is
//! every member the directory would lose, whose `user/get` answer is the
//! absence's verdict. Nothing leaves on a guess: when a department that
//! leaves, or one a lost member is in, hangs below a department the plan
//! knows nothing of, that one is located (`department/get`, up the tree
//! until a known department). A plan that would cost more calls than a full
//! sync asks for one instead ([`Next::FullSync`]).
//!
//! What it produces is what a full sync would: departments come from the
//! scope's roots down (a department whose parent left the directory leaves
//! with its subtree); a root keeps `department/get`'s record, any other
//! department the order `listsub` gives (none: 0), as the full read does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::absence::{Absence, absence, keep_unconfirmed};
use super::desired::{CreatorIdentity, desired_directory};
use super::directory::{Department, Directory, DirectoryDiff, Member, diff};
use super::scope::DesiredScope;

/// One read the shell makes in DingTalk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Read {
    /// `v2/user/get` of this userid.
    User(String),
    /// `department/get` of this department, and when it exists its
    /// sub-departments (`listsub`) and its direct members (`v2/user/list`,
    /// every page).
    Department(i64),
    /// `department/get` alone: where a department outside the directory
    /// hangs, to judge a member found in it.
    Locate(i64),
}

impl Read {
    /// The calls a read costs, at least (a department's members may take
    /// more than one page).
    pub fn calls(&self) -> u64 {
        match self {
            Read::User(_) | Read::Locate(_) => 1,
            Read::Department(_) => 3,
        }
    }
}

/// What DingTalk answered for a department that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepartmentRead {
    /// `department/get`: `parent_id` is the department's parent in DingTalk.
    pub department: Department,
    /// `listsub`: the direct sub-departments.
    pub children: Vec<Department>,
    /// `v2/user/list`: the direct members, each with all their departments.
    pub members: Vec<Member>,
}

/// DingTalk's answer to a [`Read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `user/get`; `None`: no such user (left the company).
    User {
        userid: String,
        found: Option<Member>,
    },
    /// `None`: no such department (removed).
    Department {
        id: i64,
        found: Option<DepartmentRead>,
    },
    /// `department/get` for a [`Read::Locate`]; `None`: no such department.
    Located { id: i64, found: Option<Department> },
}

/// What the plan wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Make this read and pass the [`Answer`].
    Read(Read),
    /// Every read is answered: [`Incremental::finish`].
    Done,
    /// Only a full sync will do.
    FullSync(Escalation),
}

/// Why an incremental sync gives way to a full one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escalation {
    /// The reads would cost more than the full sync (`max_calls`).
    TooManyCalls,
    /// The stored directory does not hang from the scope's roots: it was
    /// built for another scope.
    StoredForAnotherScope,
}

/// About what a full sync of a directory of this size costs: one `listsub`
/// and at least one `user/list` page per department, one page more per 100
/// members. An incremental sync allowed this many calls is never the dearer.
pub fn full_sync_calls(departments: usize, members: usize) -> u64 {
    2 * departments as u64 + members as u64 / 100 + 1
}

/// An incremental sync in progress: what was asked, and what was answered.
#[derive(Clone, Debug)]
pub struct Incremental<'a> {
    /// The directory in the store: every department, and at least the members
    /// of the departments and the users the plan touches.
    stored: &'a Directory,
    scope: &'a DesiredScope,
    creator: &'a CreatorIdentity,
    max_calls: u64,
    calls: u64,
    escalated: Option<Escalation>,
    queue: VecDeque<Read>,
    asked: BTreeSet<Read>,
    /// Departments as read (`None`: gone), the latest answer last.
    departments: BTreeMap<i64, Option<Department>>,
    /// Users as read (`None`: gone), the latest answer last.
    members: BTreeMap<String, Option<Member>>,
}

impl<'a> Incremental<'a> {
    /// A plan to re-read `users` and `departments` against `stored`, for the
    /// directory of `scope` without `creator`, in at most `max_calls` calls
    /// (see [`full_sync_calls`]).
    pub fn new(
        users: &BTreeSet<String>,
        departments: &BTreeSet<i64>,
        stored: &'a Directory,
        scope: &'a DesiredScope,
        creator: &'a CreatorIdentity,
        max_calls: u64,
    ) -> Self {
        let hanging = reachable(&stored.departments, scope);
        let escalated = (hanging.len() != stored.departments.len())
            .then_some(Escalation::StoredForAnotherScope);
        let queue = departments
            .iter()
            .map(|&d| Read::Department(d))
            .chain(users.iter().cloned().map(Read::User))
            .collect();
        Self {
            stored,
            scope,
            creator,
            max_calls,
            calls: 0,
            escalated,
            queue,
            asked: BTreeSet::new(),
            departments: BTreeMap::new(),
            members: BTreeMap::new(),
        }
    }

    /// The next read to make, or that all are made, or that a full sync must
    /// replace this one (asked again, the same answer).
    pub fn next_read(&mut self) -> Next {
        if let Some(why) = self.escalated {
            return Next::FullSync(why);
        }
        loop {
            while let Some(read) = self.queue.pop_front() {
                if !self.wanted(&read) {
                    continue;
                }
                if self.calls + read.calls() > self.max_calls {
                    self.escalated = Some(Escalation::TooManyCalls);
                    return Next::FullSync(Escalation::TooManyCalls);
                }
                self.calls += read.calls();
                self.asked.insert(read.clone());
                return Next::Read(read);
            }
            let more = self.follow_ups();
            if more.is_empty() {
                return Next::Done;
            }
            self.queue.extend(more);
        }
    }

    /// Records DingTalk's answer to a read (an answer to a read not asked is
    /// taken as well: it is a fresher look all the same).
    pub fn answer(&mut self, answer: Answer) {
        match answer {
            Answer::User { userid, found } => {
                let found = found.map(|m| Member {
                    userid: userid.clone(),
                    ..m
                });
                self.members.insert(userid, found);
            }
            Answer::Located { id, found } => {
                let found = found.map(|d| self.as_full_sync_knows_it(Department { id, ..d }));
                self.departments.insert(id, found);
            }
            Answer::Department { id, found: None } => {
                self.departments.insert(id, None);
                self.recheck_stored_below(id, &BTreeSet::new(), &BTreeSet::new());
            }
            Answer::Department {
                id,
                found: Some(read),
            } => {
                let department = self.as_full_sync_knows_it(Department {
                    id,
                    ..read.department
                });
                self.departments.insert(id, Some(department));
                let mut listed = BTreeSet::new();
                for child in read.children {
                    listed.insert(child.id);
                    // A root's record is its own department/get's, but for
                    // its parent, which the directory drops while outside.
                    if self.scope.dept_ids.contains(&child.id) {
                        let known = match self.departments.get(&child.id) {
                            Some(read) => read.clone(),
                            None => self.stored.departments.get(&child.id).cloned(),
                        };
                        match known {
                            Some(root) => {
                                let root = Department {
                                    parent_id: Some(id),
                                    ..root
                                };
                                self.departments.insert(root.id, Some(root));
                            }
                            None => self.queue.push_back(Read::Department(child.id)),
                        }
                        continue;
                    }
                    let child = Department {
                        parent_id: Some(id),
                        ..child
                    };
                    self.departments.insert(child.id, Some(child));
                }
                let mut members = BTreeSet::new();
                for member in read.members {
                    members.insert(member.userid.clone());
                    self.members.insert(member.userid.clone(), Some(member));
                }
                self.recheck_stored_below(id, &listed, &members);
            }
        }
    }

    /// Calls asked for so far (at least: pages beyond the first are not
    /// counted).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The stored directory with the answers laid over it: the directory a
    /// full sync would read, as far as the answers tell. It equals the stored
    /// one outside what the reads touched.
    pub fn desired(&self) -> Directory {
        let mut departments = self.stored.departments.clone();
        for (id, read) in &self.departments {
            match read {
                Some(d) => departments.insert(*id, d.clone()),
                None => departments.remove(id),
            };
        }
        let inside = reachable(&departments, self.scope);
        departments.retain(|id, _| inside.contains(id));
        let mut members = self.stored.members.clone();
        for (userid, read) in &self.members {
            match read {
                Some(m) => members.insert(userid.clone(), m.clone()),
                None => members.remove(userid),
            };
        }
        let members = members.into_values().filter(|m| {
            self.scope.user_ids.contains(&m.userid) || m.dept_ids.iter().any(|d| inside.contains(d))
        });
        desired_directory(departments.into_values(), members, self.creator)
    }

    /// The changes to apply, removals confirmed: a member the directory
    /// loses is removed only on their own `user/get` answer judged by
    /// [`absence`] (a member without one is kept, and counted). The shell
    /// passes the diff through [`super::guard::guard`] and applies it in one
    /// transaction.
    pub fn finish(&self) -> Settled {
        let desired = self.desired();
        let full = diff(self.stored, &desired);
        let inside: BTreeSet<i64> = desired.departments.keys().copied().collect();
        let verdicts: BTreeMap<String, Absence> = full
            .remove_members
            .iter()
            .filter_map(|userid| {
                let read = self.members.get(userid)?;
                Some((
                    userid.clone(),
                    absence(read.as_ref(), self.scope, &inside, self.creator),
                ))
            })
            .collect();
        let (diff, unconfirmed) = keep_unconfirmed(full, self.stored, &verdicts);
        Settled {
            diff,
            unconfirmed,
            calls: self.calls,
        }
    }

    /// `department/get`'s record as a full sync holds it: a full sync knows
    /// a department other than a root from `listsub`, which gives no order.
    fn as_full_sync_knows_it(&self, mut department: Department) -> Department {
        if !self.scope.dept_ids.contains(&department.id) {
            department.order = self
                .stored
                .departments
                .get(&department.id)
                .map_or(0, |d| d.order);
        }
        department
    }

    /// The first department up from `id` that the plan knows nothing of,
    /// if the way up from `id` is not known into the directory or to the top
    /// of the organization. Known: a department read (its parent is then
    /// climbed), gone, in the directory, or stored and not read (it hangs
    /// where the store says).
    fn unknown_ancestor(&self, id: i64, inside: &BTreeMap<i64, Department>) -> Option<i64> {
        let mut at = id;
        // A cycle in inconsistent answers ends the climb.
        for _ in 0..=self.departments.len() {
            if inside.contains_key(&at) {
                return None;
            }
            match self.departments.get(&at) {
                Some(Some(d)) => at = d.parent_id?,
                Some(None) => return None,
                None if self.stored.departments.contains_key(&at) => return None,
                None => return Some(at),
            }
        }
        None
    }

    /// Whether `read` still needs making.
    fn wanted(&self, read: &Read) -> bool {
        if self.asked.contains(read) {
            return false;
        }
        match read {
            // A user/list page told as much as user/get would.
            Read::User(userid) => !self.members.contains_key(userid),
            Read::Department(_) | Read::Locate(_) => true,
        }
    }

    /// After a department's answer: its stored sub-departments and members
    /// that it no longer lists went somewhere (or are gone): read them.
    fn recheck_stored_below(
        &mut self,
        id: i64,
        listed: &BTreeSet<i64>,
        members: &BTreeSet<String>,
    ) {
        let children = self
            .stored
            .departments
            .values()
            .filter(|d| d.parent_id == Some(id) && !listed.contains(&d.id))
            .map(|d| Read::Department(d.id));
        let moved = self
            .stored
            .members
            .values()
            .filter(|m| m.dept_ids.contains(&id) && !members.contains(&m.userid))
            .map(|m| Read::User(m.userid.clone()));
        let more: Vec<Read> = children.chain(moved).collect();
        self.queue.extend(more);
    }

    /// What the answers so far call for: every department new to the
    /// directory, read whole (its members, its sub-departments); every member
    /// the directory would lose and that was not read; where a department
    /// that leaves, or a lost member's, hangs, when the plan cannot tell.
    fn follow_ups(&self) -> Vec<Read> {
        let desired = self.desired();
        let new_departments = desired
            .departments
            .keys()
            .filter(|id| !self.stored.departments.contains_key(id))
            .map(|&id| Read::Department(id));
        let lost: Vec<&String> = self
            .stored
            .members
            .keys()
            .filter(|u| !desired.members.contains_key(*u))
            .collect();
        let lost_members = lost.iter().map(|u| Read::User((*u).clone()));
        // A department that leaves, or a lost member's department, that the
        // plan cannot place (one created or moved with its event still to
        // come, or one outside the directory): find where it hangs rather
        // than remove on a guess.
        let leaving = self
            .stored
            .departments
            .keys()
            .copied()
            .filter(|id| !desired.departments.contains_key(id));
        let members_departments = lost
            .iter()
            .filter_map(|u| self.members.get(*u)?.as_ref())
            .flat_map(|m| m.dept_ids.iter().copied());
        let unknown_departments = leaving
            .chain(members_departments)
            .filter_map(|d| self.unknown_ancestor(d, &desired.departments))
            .map(Read::Locate);
        new_departments
            .chain(lost_members)
            .chain(unknown_departments)
            .filter(|r| self.wanted(r))
            .collect()
    }
}

/// What an incremental sync changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The diff, with only confirmed removals (before the delete guard).
    pub diff: DirectoryDiff,
    /// Members the directory would lose without a verdict: kept.
    pub unconfirmed: u64,
    /// Calls the reads took (at least).
    pub calls: u64,
}

/// The departments that hang from the scope's roots in `departments`:
/// the roots present, and every department whose parent is one of them.
fn reachable(departments: &BTreeMap<i64, Department>, scope: &DesiredScope) -> BTreeSet<i64> {
    let mut children: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for d in departments.values() {
        if let Some(parent) = d.parent_id {
            children.entry(parent).or_default().push(d.id);
        }
    }
    let mut inside: BTreeSet<i64> = scope
        .dept_ids
        .iter()
        .copied()
        .filter(|id| departments.contains_key(id))
        .collect();
    let mut frontier: Vec<i64> = inside.iter().copied().collect();
    while let Some(id) = frontier.pop() {
        for &child in children.get(&id).into_iter().flatten() {
            if inside.insert(child) {
                frontier.push(child);
            }
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::convergence::{Dept, World};
    use crate::core::directory::apply;

    fn world(depts: &[(i64, Option<i64>)], users: &[(&str, &[i64])]) -> World {
        let mut w = World::default();
        for &(id, parent) in depts {
            w.departments.insert(
                id,
                Dept {
                    parent,
                    name: format!("d{id}"),
                    order: id,
                },
            );
        }
        for &(userid, dept_ids) in users {
            w.users.insert(
                userid.to_string(),
                Member {
                    userid: userid.into(),
                    unionid: format!("un-{userid}"),
                    name: userid.into(),
                    dept_ids: dept_ids.to_vec(),
                    ..Default::default()
                },
            );
        }
        w
    }

    fn scope(depts: &[i64], users: &[&str]) -> DesiredScope {
        DesiredScope {
            dept_ids: depts.iter().copied().collect(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn ids<T: Clone + Ord>(items: &[T]) -> BTreeSet<T> {
        items.iter().cloned().collect()
    }

    /// The reads a plan asks for, in order, answered from `w`, and the
    /// directory it leaves.
    fn run(
        w: &World,
        stored: &Directory,
        s: &DesiredScope,
        users: &[&str],
        depts: &[i64],
    ) -> (Vec<Read>, Settled, Directory) {
        let users: BTreeSet<String> = users.iter().map(|u| u.to_string()).collect();
        let nobody = CreatorIdentity::default();
        let mut plan = Incremental::new(&users, &ids(depts), stored, s, &nobody, u64::MAX);
        let mut reads = Vec::new();
        while let Next::Read(read) = plan.next_read() {
            plan.answer(w.answer(&read));
            reads.push(read);
        }
        assert_eq!(plan.next_read(), Next::Done);
        let settled = plan.finish();
        let after = apply(stored, &settled.diff);
        (reads, settled, after)
    }

    /// The org: 1 ─ 2 ─ 3, 1 ─ 4; the scope is department 2's subtree.
    fn org() -> World {
        world(
            &[(1, None), (2, Some(1)), (3, Some(2)), (4, Some(1))],
            &[("a", &[2]), ("b", &[3]), ("c", &[3, 2]), ("out", &[4])],
        )
    }

    #[test]
    fn a_leaver_is_removed_on_user_get_alone() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.users.remove("b");
        let (reads, settled, after) = run(&now, &stored, &s, &["b"], &[]);
        assert_eq!(reads, [Read::User("b".into())]);
        assert_eq!(settled.diff.remove_members, ["b"]);
        assert_eq!(settled.unconfirmed, 0);
        assert_eq!(settled.calls, 1);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_user_moved_out_of_the_scope_is_removed_and_one_moved_in_added() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.users.get_mut("a").expect("a").dept_ids = vec![4];
        now.users.get_mut("out").expect("out").dept_ids = vec![3];
        let (reads, settled, after) = run(&now, &stored, &s, &["a", "out"], &[]);
        assert_eq!(
            reads,
            [
                Read::User("a".into()),
                Read::User("out".into()),
                Read::Locate(4),
                Read::Locate(1)
            ],
            "a is out of the scope only once department 4 is placed"
        );
        assert_eq!(settled.diff.remove_members, ["a"]);
        assert_eq!(settled.diff.add_members.len(), 1);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_new_department_is_read_with_its_members() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.departments.insert(
            5,
            Dept {
                parent: Some(3),
                name: "d5".into(),
                order: 9,
            },
        );
        now.users.get_mut("out").expect("out").dept_ids = vec![4, 5];
        let (reads, settled, after) = run(&now, &stored, &s, &[], &[5]);
        assert_eq!(reads, [Read::Department(5)]);
        assert_eq!(
            settled.diff.add_departments[0].order, 0,
            "as listsub gives it to a full sync"
        );
        assert_eq!(after.members["out"].dept_ids, [5]);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_root_keeps_the_order_department_get_gives() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.departments.get_mut(&2).expect("2").order = 7;
        now.departments.get_mut(&3).expect("3").order = 7;
        let (_, settled, after) = run(&now, &stored, &s, &[], &[2, 3]);
        assert_eq!(settled.diff.update_departments.len(), 1);
        assert_eq!(after.departments[&2].order, 7);
        assert_eq!(after.departments[&3].order, 0);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_root_takes_its_parent_from_a_listsub() {
        // Roots 3 and 5; 5 hangs under 4, outside, then 4 moves under 3.
        let mut before = org();
        before.departments.insert(
            5,
            Dept {
                parent: Some(4),
                name: "d5".into(),
                order: 5,
            },
        );
        let s = scope(&[3, 5], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        assert_eq!(stored.departments[&5].parent_id, None);
        let mut now = before.clone();
        now.departments.get_mut(&4).expect("4").parent = Some(3);
        let (reads, _, after) = run(&now, &stored, &s, &[], &[4]);
        assert_eq!(reads, [Read::Department(4)]);
        assert_eq!(after.departments[&5].parent_id, Some(4));
        assert_eq!(after.departments[&5].order, 5, "department/get's order");
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_department_moved_out_takes_its_subtree_and_only_members_without_another_department() {
        // 1 ─ 2 ─ 3 ─ 5, scope 2; 3 moves under 4.
        let mut before = org();
        before.departments.insert(
            5,
            Dept {
                parent: Some(3),
                name: "d5".into(),
                order: 0,
            },
        );
        before.users.get_mut("a").expect("a").dept_ids = vec![2, 5];
        before.users.insert(
            "deep".into(),
            Member {
                userid: "deep".into(),
                dept_ids: vec![5],
                ..Default::default()
            },
        );
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.departments.get_mut(&3).expect("3").parent = Some(4);
        let (reads, settled, after) = run(&now, &stored, &s, &[], &[3]);
        assert_eq!(settled.diff.remove_departments, [3, 5]);
        assert_eq!(settled.diff.remove_members, ["b", "deep"]);
        assert!(
            reads.contains(&Read::User("deep".into())),
            "not listed by any read: its own user/get confirms it"
        );
        assert!(
            !reads.contains(&Read::User("b".into())),
            "user/list of 3 told where b is"
        );
        assert_eq!(after.members["a"].dept_ids, [2]);
        assert_eq!(after.members["c"].dept_ids, [2]);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_department_moved_below_one_not_known_yet_does_not_leave_on_a_guess() {
        // 9 is created under 2 and 3 moved into it; 9's event is still to come.
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.departments.insert(
            9,
            Dept {
                parent: Some(2),
                name: "d9".into(),
                order: 0,
            },
        );
        now.departments.get_mut(&3).expect("3").parent = Some(9);
        let (reads, settled, after) = run(&now, &stored, &s, &[], &[3]);
        assert_eq!(
            reads,
            [Read::Department(3), Read::Locate(9), Read::Department(9)]
        );
        assert!(settled.diff.remove_members.is_empty());
        assert!(settled.diff.remove_departments.is_empty());
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_department_moved_in_is_walked_whole() {
        // 4 ─ 5 ─ 6 moves under 2.
        let mut before = org();
        before.departments.insert(
            5,
            Dept {
                parent: Some(4),
                name: "d5".into(),
                order: 0,
            },
        );
        before.departments.insert(
            6,
            Dept {
                parent: Some(5),
                name: "d6".into(),
                order: 0,
            },
        );
        before.users.get_mut("out").expect("out").dept_ids = vec![6];
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.departments.get_mut(&5).expect("5").parent = Some(3);
        let (reads, _, after) = run(&now, &stored, &s, &[], &[5]);
        assert_eq!(reads, [Read::Department(5), Read::Department(6)]);
        assert_eq!(after.members["out"].dept_ids, [6]);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_removed_department_rechecks_what_it_held() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        // Its event came before the events of the members moved out of it.
        let mut now = before.clone();
        now.users.get_mut("b").expect("b").dept_ids = vec![2];
        now.users.get_mut("c").expect("c").dept_ids = vec![2];
        now.departments.remove(&3);
        let (reads, settled, after) = run(&now, &stored, &s, &[], &[3]);
        assert_eq!(
            reads,
            [
                Read::Department(3),
                Read::User("b".into()),
                Read::User("c".into())
            ]
        );
        assert!(settled.diff.remove_members.is_empty());
        assert_eq!(settled.diff.remove_departments, [3]);
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_member_in_a_department_not_known_yet_is_not_removed_on_a_guess() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        // a moves to a new department 7 under 3, whose event is still to come.
        let mut now = before.clone();
        now.departments.insert(
            7,
            Dept {
                parent: Some(3),
                name: "d7".into(),
                order: 0,
            },
        );
        now.users.get_mut("a").expect("a").dept_ids = vec![7];
        let (reads, settled, after) = run(&now, &stored, &s, &["a"], &[]);
        assert_eq!(
            reads,
            [Read::User("a".into()), Read::Locate(7), Read::Department(7)],
            "7 hangs in the directory: read whole"
        );
        assert!(settled.diff.remove_members.is_empty());
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_listed_user_stays_without_a_department() {
        let before = org();
        let s = scope(&[2], &["out"]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        assert!(stored.members["out"].dept_ids.is_empty());
        let mut now = before.clone();
        now.users.get_mut("out").expect("out").name = "renamed".into();
        let (_, _, after) = run(&now, &stored, &s, &["out"], &[]);
        assert_eq!(after.members["out"].name, "renamed");
        assert_eq!(after, now.full_read(&s, &CreatorIdentity::default()));
    }

    #[test]
    fn a_plan_dearer_than_a_full_sync_gives_way_to_one() {
        let w = org();
        let s = scope(&[2], &[]);
        let stored = w.full_read(&s, &CreatorIdentity::default());
        let nobody = CreatorIdentity::default();
        let depts = ids(&[2, 3]);
        let mut plan = Incremental::new(&BTreeSet::new(), &depts, &stored, &s, &nobody, 5);
        assert_eq!(plan.next_read(), Next::Read(Read::Department(2)));
        assert_eq!(
            plan.next_read(),
            Next::FullSync(Escalation::TooManyCalls),
            "3 + 3 calls > 5"
        );
        assert_eq!(plan.next_read(), Next::FullSync(Escalation::TooManyCalls));
        assert_eq!(full_sync_calls(2_000, 100_000), 5_001);
    }

    #[test]
    fn a_directory_stored_for_another_scope_needs_a_full_sync() {
        let w = org();
        let stored = w.full_read(&scope(&[4], &[]), &CreatorIdentity::default());
        let s = scope(&[2], &[]);
        let nobody = CreatorIdentity::default();
        let mut plan = Incremental::new(
            &ids(&["a".to_string()]),
            &BTreeSet::new(),
            &stored,
            &s,
            &nobody,
            u64::MAX,
        );
        assert_eq!(
            plan.next_read(),
            Next::FullSync(Escalation::StoredForAnotherScope)
        );
    }

    #[test]
    fn a_lost_member_without_an_answer_is_kept() {
        let before = org();
        let s = scope(&[2], &[]);
        let stored = before.full_read(&s, &CreatorIdentity::default());
        let mut now = before.clone();
        now.departments.get_mut(&3).expect("3").parent = Some(4);
        let nobody = CreatorIdentity::default();
        let depts = ids(&[3]);
        let mut plan = Incremental::new(&BTreeSet::new(), &depts, &stored, &s, &nobody, u64::MAX);
        // Department 3 answered, its members b and c not asked about:
        // the diff may not remove b on a guess.
        plan.answer(Answer::Department {
            id: 3,
            found: Some(DepartmentRead {
                department: Department {
                    id: 3,
                    parent_id: Some(4),
                    name: "d3".into(),
                    order: 0,
                },
                children: vec![],
                members: vec![],
            }),
        });
        let settled = plan.finish();
        assert!(settled.diff.remove_members.is_empty());
        assert_eq!(settled.unconfirmed, 1, "b, whose only department left");
        assert!(
            settled.diff.remove_departments.is_empty(),
            "kept with b's department"
        );
    }

    #[test]
    fn the_creator_is_never_added() {
        let mut w = org();
        w.users.get_mut("out").expect("out").email = Some("boss@x".into());
        let s = scope(&[2], &[]);
        let creator = CreatorIdentity {
            email: Some("boss@x".into()),
            phone: None,
        };
        let stored = w.full_read(&s, &creator);
        let mut now = w.clone();
        now.users.get_mut("out").expect("out").dept_ids = vec![2];
        let users = ids(&["out".to_string()]);
        let mut plan = Incremental::new(&users, &BTreeSet::new(), &stored, &s, &creator, u64::MAX);
        let after = now.run(&mut plan).expect("no full sync");
        assert!(!after.members.contains_key("out"));
        assert!(plan.finish().diff.is_empty());
    }
}
