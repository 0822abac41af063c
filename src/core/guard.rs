//! The accidental-delete guard: a sync that would remove more members than
//! `spec.sync.maxDeletions` applies everything else and holds the removals
//! back until a person approves that exact count.

use super::directory::DirectoryDiff;

/// A diff after the guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guarded {
    /// What may be applied now.
    pub diff: DirectoryDiff,
    /// Member removals held back (0 when none).
    pub held: u64,
}

/// Holds back the removals of `diff` when they exceed `max` and `approved` is
/// not exactly their count. Department removals are held with them, so held
/// members keep their departments.
pub fn guard(mut diff: DirectoryDiff, max: u64, approved: Option<u64>) -> Guarded {
    let removals = diff.remove_members.len() as u64;
    if removals <= max || approved == Some(removals) {
        return Guarded { diff, held: 0 };
    }
    diff.remove_members.clear();
    diff.remove_departments.clear();
    Guarded {
        diff,
        held: removals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directory::Member;

    fn diff(removals: usize) -> DirectoryDiff {
        DirectoryDiff {
            add_members: vec![Member {
                userid: "new".into(),
                ..Default::default()
            }],
            remove_members: (0..removals).map(|i| format!("u{i}")).collect(),
            remove_departments: vec![7],
            ..Default::default()
        }
    }

    #[test]
    fn removals_within_the_limit_pass() {
        let g = guard(diff(3), 3, None);
        assert_eq!(g.held, 0);
        assert_eq!(g.diff.remove_members.len(), 3);
    }

    #[test]
    fn removals_over_the_limit_are_held_and_the_rest_applies() {
        let g = guard(diff(50), 10, None);
        assert_eq!(g.held, 50);
        assert!(g.diff.remove_members.is_empty());
        assert!(g.diff.remove_departments.is_empty());
        assert_eq!(g.diff.add_members.len(), 1);
    }

    #[test]
    fn only_the_exact_count_approves() {
        assert_eq!(guard(diff(50), 10, Some(49)).held, 50);
        assert_eq!(guard(diff(50), 10, Some(50)).held, 0);
    }
}
