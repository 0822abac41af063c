//! A sync's staging area: the directory DingTalk answered, written to the
//! store page by page while the sync reads, then compared with the tenant's
//! directory and applied in the database. A sync therefore holds the pages in
//! flight and the department frontier in memory, never the organization.
//!
//! The life of a run ([`super::Store`] methods):
//! 1. `begin_staging` deletes whatever an earlier, interrupted sync of the
//!    tenant left, and opens a run ([`Staging`]);
//! 2. `stage` writes a batch of departments and members (SQLite: multi-row
//!    `INSERT`s in one short transaction; PostgreSQL: one `COPY`);
//! 3. `finish_staging` normalizes the run exactly as
//!    [`crate::core::desired::desired_directory`] does (a department whose
//!    parent was not read becomes a top one, a member keeps only the
//!    departments read, a department read twice keeps its last copy and a
//!    member its first) and gives a [`Staged`] run;
//! 4. `staged_changes` counts what applying it would change and lists the
//!    directory's members and departments the read did not find: the input of
//!    [`crate::core::absence`] and [`crate::core::guard`];
//! 5. `apply_staged` applies it, with only the removals the core let
//!    through, in ONE transaction, then deletes the run.
//!
//! The comparison is SQL; `staged_diff` returns it row by row, and the store
//! tests check it against [`crate::core::directory::diff`] on generated
//! directories.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::api::TenantKey;
use crate::core::directory::Member;

/// The id of a staging run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StagingId(pub i64);

impl std::fmt::Display for StagingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A staging run open for writing ([`super::Store::begin_staging`]).
#[derive(Debug)]
pub struct Staging {
    pub(crate) run: StagingId,
    pub(crate) tenant: TenantKey,
    pub(crate) tenant_id: i64,
    /// Rows handed in so far: the order PostgreSQL's `seq` keeps.
    pub(crate) rows: i64,
}

impl Staging {
    /// The run's id.
    pub fn id(&self) -> StagingId {
        self.run
    }

    /// Rows (departments and members) staged so far, duplicates included.
    pub fn rows(&self) -> u64 {
        u64::try_from(self.rows).unwrap_or(0)
    }
}

/// A staging run whose read is complete and normalized
/// ([`super::Store::finish_staging`]): it can be compared and applied.
#[derive(Debug)]
pub struct Staged {
    pub(crate) run: StagingId,
    pub(crate) tenant: TenantKey,
    pub(crate) tenant_id: i64,
    /// What `staged_changes` counted, if it ran: `apply_staged` skips the
    /// statements that have nothing to do.
    pub(crate) counted: OnceLock<Counted>,
}

impl Staged {
    pub(crate) fn new(run: StagingId, tenant: TenantKey, tenant_id: i64) -> Self {
        Self {
            run,
            tenant,
            tenant_id,
            counted: OnceLock::new(),
        }
    }
}

/// The additions and updates `staged_changes` counted. They still hold when
/// the run is applied: a tenant's directory has one writer at a time (its
/// reconciliation, fenced to the leader's term), and nothing else writes it
/// between the comparison and the apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    pub add_departments: u64,
    pub update_departments: u64,
    pub add_members: u64,
    pub update_members: u64,
}

impl Counted {
    pub(crate) fn of(changes: &StagedChanges) -> Self {
        Self {
            add_departments: changes.add_departments,
            update_departments: changes.update_departments,
            add_members: changes.add_members,
            update_members: changes.update_members,
        }
    }
}

/// The changes of a first load (the directory is empty): every staged row is
/// an addition and nothing is missing, so nothing needs comparing.
pub(crate) fn first_load(
    s: &Staged,
    members: i64,
    departments: i64,
) -> super::Result<StagedChanges> {
    let count = |n: i64, what| super::model::from_db_count(n, what);
    let changes = StagedChanges {
        add_members: count(members, "staged members")?,
        add_departments: count(departments, "staged departments")?,
        ..StagedChanges::default()
    };
    let _ = s.counted.set(Counted::of(&changes));
    Ok(changes)
}

/// The [`APPLY`] statements that have something to do, in order: all of them
/// when nothing was counted. An unchanged sync runs none.
pub(crate) fn apply_statements(counted: Option<&Counted>) -> Vec<&'static str> {
    let Some(c) = counted else {
        return APPLY.to_vec();
    };
    let links = c.add_members > 0 || c.update_members > 0;
    [
        (INSERT_DEPARTMENTS, c.add_departments > 0),
        (UPDATE_DEPARTMENTS, c.update_departments > 0),
        (INSERT_MEMBERS, c.add_members > 0),
        (UPDATE_MEMBERS, c.update_members > 0),
        // A staged member's departments changed only if it counts as updated.
        (DELETE_STALE_LINKS, c.update_members > 0),
        (INSERT_LINKS, links),
    ]
    .into_iter()
    .filter_map(|(q, needed)| needed.then_some(q))
    .collect()
}

impl Staged {
    /// The run's id.
    pub fn id(&self) -> StagingId {
        self.run
    }
}

/// What applying a staged run would change: counts, and what the directory
/// holds that the read did not find (usually few).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StagedChanges {
    /// Members and departments in the directory now.
    pub members: u64,
    pub departments: u64,
    /// Staged members not in the directory, and members whose fields or
    /// departments differ.
    pub add_members: u64,
    pub update_members: u64,
    pub add_departments: u64,
    pub update_departments: u64,
    /// Directory members the read did not find, with their departments,
    /// sorted by userid.
    pub missing_members: Vec<Member>,
    /// Directory departments the read did not find, ascending.
    pub missing_departments: Vec<i64>,
}

impl StagedChanges {
    /// Whether applying the run, with every removal, would change nothing.
    pub fn is_empty(&self) -> bool {
        self.add_members == 0
            && self.update_members == 0
            && self.add_departments == 0
            && self.update_departments == 0
            && self.missing_members.is_empty()
            && self.missing_departments.is_empty()
    }
}

/// Staging runs older than this are deleted when the store is opened (a
/// tenant that is never synced again); a tenant's own leftovers go when its
/// next sync starts.
pub(crate) const STALE_AFTER_MICROS: i64 = 24 * 3600 * 1_000_000;

// ---- SQL both backends run verbatim ($1: staging run, $2: tenant id) ----

/// Whether run $1 of tenant $2 exists and its read is complete, as 0/1.
/// (SQLite stores `finished` as 0/1, PostgreSQL as a boolean: compared in SQL.)
pub(crate) const RUN_STATE: &str = "SELECT CASE WHEN finished THEN 1 ELSE 0 END FROM staging_runs WHERE id = $1 AND tenant_id = $2";

/// A department whose parent was not read becomes a top department.
pub(crate) const NORMALIZE_PARENTS: &str = "UPDATE staging_departments SET parent_id = NULL \
     WHERE run_id = $1 AND parent_id IS NOT NULL \
     AND parent_id NOT IN (SELECT dept_id FROM staging_departments WHERE run_id = $1)";

/// Marks run $1 read and normalized.
pub(crate) const MARK_FINISHED: &str = "UPDATE staging_runs SET finished = true WHERE id = $1";

/// Staged counts: (members, departments) of run $1.
pub(crate) const STAGED_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM staging_members WHERE run_id = $1), \
     (SELECT COUNT(*) FROM staging_departments WHERE run_id = $1)";

/// Current counts: (members, departments) of tenant $1.
pub(crate) const CURRENT_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM members WHERE tenant_id = $1), \
     (SELECT COUNT(*) FROM departments WHERE tenant_id = $1)";

/// Staged members the directory does not hold.
const ADDED_MEMBERS: &str = "FROM staging_members s WHERE s.run_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM members m WHERE m.tenant_id = $2 AND m.userid = s.userid)";

/// Staged members whose departments differ from the directory's (or that are new).
macro_rules! links_changed {
    () => {
        "SELECT l.userid FROM staging_links l WHERE l.run_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM member_departments md WHERE md.tenant_id = $2 AND md.userid = l.userid AND md.dept_id = l.dept_id) \
         UNION SELECT md.userid FROM member_departments md WHERE md.tenant_id = $2 \
         AND md.userid IN (SELECT userid FROM staging_members WHERE run_id = $1) \
         AND NOT EXISTS (SELECT 1 FROM staging_links l WHERE l.run_id = $1 AND l.userid = md.userid AND l.dept_id = md.dept_id)"
    };
}

/// Staged members the directory holds with other values or other departments.
macro_rules! updated_members {
    () => {
        concat!(
            "FROM staging_members s JOIN members m ON m.tenant_id = $2 AND m.userid = s.userid \
             WHERE s.run_id = $1 AND (m.unionid IS DISTINCT FROM s.unionid OR m.name IS DISTINCT FROM s.name \
             OR m.mobile IS DISTINCT FROM s.mobile OR m.email IS DISTINCT FROM s.email OR m.title IS DISTINCT FROM s.title \
             OR m.job_number IS DISTINCT FROM s.job_number OR m.active IS DISTINCT FROM s.active \
             OR m.admin IS DISTINCT FROM s.admin OR m.boss IS DISTINCT FROM s.boss OR s.userid IN (",
            links_changed!(),
            "))"
        )
    };
}

/// Staged departments the directory does not hold.
const ADDED_DEPARTMENTS: &str = "FROM staging_departments s WHERE s.run_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM departments d WHERE d.tenant_id = $2 AND d.dept_id = s.dept_id)";

/// Staged departments the directory holds with other values.
const UPDATED_DEPARTMENTS: &str = "FROM staging_departments s JOIN departments d ON d.tenant_id = $2 AND d.dept_id = s.dept_id \
     WHERE s.run_id = $1 AND (d.parent_id IS DISTINCT FROM s.parent_id OR d.name IS DISTINCT FROM s.name \
     OR d.sort_order IS DISTINCT FROM s.sort_order)";

pub(crate) fn count_added_members() -> String {
    format!("SELECT COUNT(*) {ADDED_MEMBERS}")
}

pub(crate) const COUNT_UPDATED_MEMBERS: &str = concat!("SELECT COUNT(*) ", updated_members!());

pub(crate) fn count_added_departments() -> String {
    format!("SELECT COUNT(*) {ADDED_DEPARTMENTS}")
}

pub(crate) fn count_updated_departments() -> String {
    format!("SELECT COUNT(*) {UPDATED_DEPARTMENTS}")
}

/// Staged member columns, as [`super::rows::MemberRow`].
const STAGED_MEMBER_COLUMNS: &str = "s.userid, s.unionid, s.name, s.mobile, s.email, s.title, s.job_number, s.active, s.admin, s.boss";

pub(crate) fn added_member_rows() -> String {
    format!("SELECT {STAGED_MEMBER_COLUMNS} {ADDED_MEMBERS}")
}

pub(crate) fn updated_member_rows() -> String {
    format!("SELECT {STAGED_MEMBER_COLUMNS} {}", updated_members!())
}

pub(crate) fn added_department_rows() -> String {
    format!("SELECT s.dept_id, s.parent_id, s.name, s.sort_order {ADDED_DEPARTMENTS}")
}

pub(crate) fn updated_department_rows() -> String {
    format!("SELECT s.dept_id, s.parent_id, s.name, s.sort_order {UPDATED_DEPARTMENTS}")
}

/// Every normalized link of run $1, as [`super::rows::LinkRow`].
pub(crate) const STAGED_LINKS: &str =
    "SELECT userid, dept_id FROM staging_links WHERE run_id = $1 ORDER BY userid, dept_id";

/// Directory members the read did not find, as [`super::rows::MemberRow`].
pub(crate) const MISSING_MEMBERS: &str = "SELECT m.userid, m.unionid, m.name, m.mobile, m.email, m.title, m.job_number, m.active, m.admin, m.boss \
     FROM members m WHERE m.tenant_id = $2 \
     AND NOT EXISTS (SELECT 1 FROM staging_members s WHERE s.run_id = $1 AND s.userid = m.userid)";

/// Their departments, as [`super::rows::LinkRow`], each member's ascending.
pub(crate) const MISSING_MEMBER_LINKS: &str = "SELECT md.userid, md.dept_id FROM member_departments md WHERE md.tenant_id = $2 \
     AND NOT EXISTS (SELECT 1 FROM staging_members s WHERE s.run_id = $1 AND s.userid = md.userid) \
     ORDER BY md.userid, md.dept_id";

/// Directory departments the read did not find.
pub(crate) const MISSING_DEPARTMENTS: &str = "SELECT d.dept_id FROM departments d WHERE d.tenant_id = $2 \
     AND NOT EXISTS (SELECT 1 FROM staging_departments s WHERE s.run_id = $1 AND s.dept_id = d.dept_id) \
     ORDER BY d.dept_id";

/// Insert the staged departments the directory does not hold. (Plain inserts
/// and updates rather than upserts: one writer per tenant holds the tenant's
/// lock, and PostgreSQL's speculative insertion costs a third more per row.)
pub(crate) const INSERT_DEPARTMENTS: &str = "INSERT INTO departments (tenant_id, dept_id, parent_id, name, sort_order) \
     SELECT $2, s.dept_id, s.parent_id, s.name, s.sort_order FROM staging_departments s WHERE s.run_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM departments d WHERE d.tenant_id = $2 AND d.dept_id = s.dept_id)";

/// Update the departments whose staged values differ; an equal row is not touched.
pub(crate) const UPDATE_DEPARTMENTS: &str = "UPDATE departments SET parent_id = s.parent_id, name = s.name, \
     sort_order = s.sort_order, version = departments.version + 1 FROM staging_departments s \
     WHERE departments.tenant_id = $2 AND s.run_id = $1 AND s.dept_id = departments.dept_id \
     AND (departments.parent_id IS DISTINCT FROM s.parent_id OR departments.name IS DISTINCT FROM s.name \
     OR departments.sort_order IS DISTINCT FROM s.sort_order)";

/// Insert the staged members the directory does not hold.
pub(crate) const INSERT_MEMBERS: &str = "INSERT INTO members (tenant_id, userid, unionid, name, mobile, email, title, job_number, active, admin, boss) \
     SELECT $2, s.userid, s.unionid, s.name, s.mobile, s.email, s.title, s.job_number, s.active, s.admin, s.boss \
     FROM staging_members s WHERE s.run_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM members m WHERE m.tenant_id = $2 AND m.userid = s.userid)";

/// Update the members whose staged values differ; an equal row is not touched.
pub(crate) const UPDATE_MEMBERS: &str = "UPDATE members SET unionid = s.unionid, name = s.name, mobile = s.mobile, \
     email = s.email, title = s.title, job_number = s.job_number, active = s.active, admin = s.admin, boss = s.boss, \
     version = members.version + 1 FROM staging_members s \
     WHERE members.tenant_id = $2 AND s.run_id = $1 AND s.userid = members.userid \
     AND (members.unionid IS DISTINCT FROM s.unionid OR members.name IS DISTINCT FROM s.name \
     OR members.mobile IS DISTINCT FROM s.mobile OR members.email IS DISTINCT FROM s.email \
     OR members.title IS DISTINCT FROM s.title OR members.job_number IS DISTINCT FROM s.job_number \
     OR members.active IS DISTINCT FROM s.active OR members.admin IS DISTINCT FROM s.admin \
     OR members.boss IS DISTINCT FROM s.boss)";

/// Delete the links of staged members to departments they are no longer in.
pub(crate) const DELETE_STALE_LINKS: &str = "DELETE FROM member_departments WHERE tenant_id = $2 \
     AND userid IN (SELECT userid FROM staging_members WHERE run_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM staging_links l WHERE l.run_id = $1 \
     AND l.userid = member_departments.userid AND l.dept_id = member_departments.dept_id)";

/// Insert the staged members' new links.
pub(crate) const INSERT_LINKS: &str = "INSERT INTO member_departments (tenant_id, userid, dept_id) \
     SELECT $2, l.userid, l.dept_id FROM staging_links l WHERE l.run_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM member_departments md WHERE md.tenant_id = $2 AND md.userid = l.userid AND md.dept_id = l.dept_id)";

/// The statements that apply a staged run once the removals are done, in order.
pub(crate) const APPLY: [&str; 6] = [
    INSERT_DEPARTMENTS,
    UPDATE_DEPARTMENTS,
    INSERT_MEMBERS,
    UPDATE_MEMBERS,
    DELETE_STALE_LINKS,
    INSERT_LINKS,
];

/// The staging tables holding rows keyed by `run_id`, children first.
pub(crate) const ROW_TABLES: [&str; 3] =
    ["staging_links", "staging_members", "staging_departments"];

/// Delete the rows of the runs `runs` selects (a subquery of run ids, with
/// the parameters of the caller).
pub(crate) fn delete_rows_of(table: &str, runs: &str) -> String {
    format!("DELETE FROM {table} WHERE run_id IN ({runs})")
}

/// Delete rows whose run is gone (left by a sync whose run a newer one removed).
pub(crate) fn delete_orphans(table: &str) -> String {
    format!("DELETE FROM {table} WHERE run_id NOT IN (SELECT id FROM staging_runs)")
}

// ---- PostgreSQL COPY, text format ----

/// Appends `s` as one field of `COPY ... FROM STDIN` text format.
pub(crate) fn copy_field(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Appends an optional field (`\N` is NULL).
pub(crate) fn copy_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => copy_field(out, s),
        None => out.extend_from_slice(b"\\N"),
    }
}

/// Appends a boolean field.
pub(crate) fn copy_bool(out: &mut Vec<u8>, b: bool) {
    out.push(if b { b't' } else { b'f' });
}

/// Appends an integer field.
pub(crate) fn copy_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// Appends a `bigint[]` field holding the set `ns`, ascending and each once,
/// e.g. `{2,5}`.
pub(crate) fn copy_int_set(out: &mut Vec<u8>, ns: &[i64]) {
    let mut ns = ns.to_vec();
    ns.sort_unstable();
    ns.dedup();
    out.push(b'{');
    for (i, n) in ns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        copy_int(out, *n);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apply_statements_with_something_to_do_run() {
        assert_eq!(apply_statements(None), APPLY.to_vec());
        assert!(apply_statements(Some(&Counted::default())).is_empty());
        let renamed = Counted {
            update_departments: 1,
            ..Counted::default()
        };
        assert_eq!(apply_statements(Some(&renamed)), [UPDATE_DEPARTMENTS]);
        let joined = Counted {
            add_members: 1,
            ..Counted::default()
        };
        assert_eq!(
            apply_statements(Some(&joined)),
            [INSERT_MEMBERS, INSERT_LINKS]
        );
        let moved = Counted {
            update_members: 1,
            ..Counted::default()
        };
        assert_eq!(
            apply_statements(Some(&moved)),
            [UPDATE_MEMBERS, DELETE_STALE_LINKS, INSERT_LINKS]
        );
    }

    #[test]
    fn copy_text_escapes_what_the_format_reserves() {
        let mut out = Vec::new();
        copy_field(&mut out, "a\tb\\c\nd\re 张");
        out.push(b'\t');
        copy_opt(&mut out, None);
        out.push(b'\t');
        copy_int_set(&mut out, &[2, -5, 2]);
        out.push(b'\t');
        copy_int_set(&mut out, &[]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\\\c\\nd\\re 张\t\\N\t{-5,2}\t{}"
        );
    }
}
