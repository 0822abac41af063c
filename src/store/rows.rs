//! Rows as both backends read them, and their mapping into store types.
//!
//! Every read decodes its columns into a plain tuple (`sqlx::query_as`), which
//! sqlx does for any backend with no trait bounds on our side; the functions
//! here turn those tuples into [`Department`], [`Member`], [`SyncRun`],
//! [`Account`], [`LedgerEntry`], ..., so the mapping and its checks exist once.
//! Timestamps arrive as microseconds since the epoch (each backend's query
//! selects them that way).

use futures::{Stream, TryStreamExt};
use serde_json::Value;

use super::error::{Context, Result};
use super::model::{self, Account, LedgerEntry, SyncOutcome, SyncRun, SyncRunId, SyncRunRecord};
use crate::api::TenantKey;
use std::collections::BTreeMap;

use crate::core::directory::{Department, Directory, DirectoryDiff, Member};

/// `namespace, name`.
pub(crate) type TenantRow = (String, String);

/// `dept_id, parent_id, name, sort_order`.
pub(crate) type DepartmentRow = (i64, Option<i64>, String, i64);

/// `userid, unionid, name, mobile, email, title, job_number, active, admin, boss`.
pub(crate) type MemberRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    bool,
    bool,
);

/// The member of `row`, in departments `dept_ids`.
pub(crate) fn member(row: MemberRow, dept_ids: Vec<i64>) -> Member {
    let (userid, unionid, name, mobile, email, title, job_number, active, admin, boss) = row;
    Member {
        userid,
        unionid,
        name,
        mobile,
        email,
        title,
        job_number,
        active,
        admin,
        boss,
        dept_ids,
    }
}

/// A [`MemberRow`] with one of the member's departments (`None`: in none).
pub(crate) type MemberDeptRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    bool,
    bool,
    Option<i64>,
);

/// The member of the rows of [`super::sql::MEMBER`], if there are any.
pub(crate) fn member_of_rows(rows: Vec<MemberDeptRow>) -> Option<Member> {
    let mut rows = rows.into_iter();
    let first = rows.next()?;
    let (userid, unionid, name, mobile, email, title, job_number, active, admin, boss, dept) =
        first;
    let dept_ids = dept.into_iter().chain(rows.filter_map(|r| r.10)).collect();
    Some(member(
        (
            userid, unionid, name, mobile, email, title, job_number, active, admin, boss,
        ),
        dept_ids,
    ))
}

/// `userid, dept_id` of `member_departments`.
pub(crate) type LinkRow = (String, i64);

/// `id, started (µs), finished (µs), outcome, added, updated, removed, calls,
/// held_deletions, rows_written, message`.
pub(crate) type SyncRunRow = (
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

/// `mode, corp_id, creator_email, creator_phone, password_set`.
pub(crate) type AccountRow = (String, Option<String>, Option<String>, Option<String>, bool);

/// `event, at (µs), corp_id, reason, agent_id, trial_ends_at (µs), confirmation`.
pub(crate) type LedgerRow = (
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// `namespace, name, body` (JSON text).
pub(crate) type DocumentRow = (String, String, String);

/// A tenant key.
pub(crate) fn tenant((namespace, name): TenantRow) -> TenantKey {
    TenantKey { namespace, name }
}

/// A sync run; counts and timestamps are checked.
pub(crate) fn sync_run(row: SyncRunRow) -> Result<SyncRun> {
    let (id, started, finished, outcome, added, updated, removed, calls, held, written, message) =
        row;
    let ts = |us| model::from_micros(us, "reading sync runs");
    Ok(SyncRun {
        id: SyncRunId(id),
        record: SyncRunRecord {
            started: ts(started)?,
            finished: ts(finished)?,
            outcome: SyncOutcome::parse(&outcome)?,
            added: model::from_db_count(added, "added")?,
            updated: model::from_db_count(updated, "updated")?,
            removed: model::from_db_count(removed, "removed")?,
            calls: model::from_db_count(calls, "calls")?,
            held_deletions: model::from_db_count(held, "held deletions")?,
            message,
        },
        rows_written: model::from_db_count(written, "rows written")?,
    })
}

/// An account; the mode is checked.
pub(crate) fn account(row: AccountRow) -> Result<Account> {
    let (mode, corp_id, creator_email, creator_phone, password_set) = row;
    Ok(Account {
        mode: model::mode_from_str(&mode)?,
        corp_id,
        creator_email,
        creator_phone,
        password_set,
    })
}

/// A ledger entry; event, reason and timestamp are checked.
pub(crate) fn ledger_entry(
    (event, at, corp_id, reason, agent_id, trial_ends_at, confirmation): LedgerRow,
) -> Result<LedgerEntry> {
    let trial_ends_at = trial_ends_at
        .map(|t| model::from_micros(t, "reading the ledger"))
        .transpose()?;
    model::ledger_entry(model::LedgerColumns {
        event: &event,
        at: model::from_micros(at, "reading the ledger")?,
        corp_id: &corp_id,
        reason: reason.as_deref(),
        agent_id,
        trial_ends_at,
        confirmation: confirmation.as_deref(),
    })
}

/// A stored document body back into JSON; `context` names the read.
pub(crate) fn document(body: &str, context: &str) -> Result<Value> {
    serde_json::from_str(body).map_err(|e| model::corrupt(context, format!("invalid JSON: {e}")))
}

/// A tenant's document of some kind, keyed by tenant.
pub(crate) fn tenant_document(
    (namespace, name, body): DocumentRow,
    context: &str,
) -> Result<(TenantKey, Value)> {
    let body = document(&body, context)?;
    Ok((TenantKey { namespace, name }, body))
}

/// Assembles a [`Directory`] from its three reads, in this order: departments,
/// members, then department links (which must name a member already read).
/// Each read is streamed, so a large directory is never held twice in memory.
pub(crate) struct DirectoryReader {
    dir: Directory,
    /// What the store is doing, for errors ("reading the directory of ...").
    context: String,
}

impl DirectoryReader {
    /// An empty directory; `context` goes into every error.
    pub(crate) fn new(context: String) -> Self {
        DirectoryReader {
            dir: Directory::default(),
            context,
        }
    }

    /// Read the rows of [`super::sql::DEPARTMENTS`].
    pub(crate) async fn departments(
        &mut self,
        mut rows: impl Stream<Item = sqlx::Result<DepartmentRow>> + Unpin,
    ) -> Result<()> {
        while let Some((id, parent_id, name, order)) = self.next(&mut rows).await? {
            let d = Department {
                id,
                parent_id,
                name,
                order,
            };
            self.dir.departments.insert(d.id, d);
        }
        Ok(())
    }

    /// Read the rows of [`super::sql::MEMBERS`] (with no departments yet).
    pub(crate) async fn members(
        &mut self,
        mut rows: impl Stream<Item = sqlx::Result<MemberRow>> + Unpin,
    ) -> Result<()> {
        while let Some(row) = self.next(&mut rows).await? {
            let m = member(row, Vec::new());
            self.dir.members.insert(m.userid.clone(), m);
        }
        Ok(())
    }

    /// Read the rows of [`super::sql::MEMBER_DEPARTMENTS`] into the members'
    /// `dept_ids`; a link to an unknown member is [`super::Error::Corrupt`].
    pub(crate) async fn links(
        &mut self,
        mut rows: impl Stream<Item = sqlx::Result<LinkRow>> + Unpin,
    ) -> Result<()> {
        while let Some((userid, dept)) = self.next(&mut rows).await? {
            match self.dir.members.get_mut(&userid) {
                Some(m) => m.dept_ids.push(dept),
                None => {
                    return Err(model::corrupt(
                        &self.context,
                        format!("department link for unknown member {userid:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The directory read.
    pub(crate) fn finish(self) -> Directory {
        self.dir
    }

    async fn next<T>(
        &self,
        rows: &mut (impl Stream<Item = sqlx::Result<T>> + Unpin),
    ) -> Result<Option<T>> {
        rows.try_next().await.ctx(|| self.context.clone())
    }
}

/// The rows of a staged run's diff, as both backends read them.
pub(crate) struct StagedDiffRows {
    pub add_departments: Vec<DepartmentRow>,
    pub update_departments: Vec<DepartmentRow>,
    pub add_members: Vec<MemberRow>,
    pub update_members: Vec<MemberRow>,
    /// Every staged link, each member's departments ascending.
    pub links: Vec<LinkRow>,
    pub remove_members: Vec<String>,
    pub remove_departments: Vec<i64>,
}

/// A staged run's diff in the order [`crate::core::directory::diff`] gives:
/// departments by id, members by userid (bytewise, whatever the database's
/// collation).
pub(crate) fn staged_diff(rows: StagedDiffRows) -> DirectoryDiff {
    let mut links: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (userid, dept) in rows.links {
        links.entry(userid).or_default().push(dept);
    }
    let department = |(id, parent_id, name, order): DepartmentRow| Department {
        id,
        parent_id,
        name,
        order,
    };
    let member = |row: MemberRow| {
        let (userid, unionid, name, mobile, email, title, job_number, active, admin, boss) = row;
        let mut dept_ids = links.get(&userid).cloned().unwrap_or_default();
        dept_ids.sort_unstable();
        Member {
            userid,
            unionid,
            name,
            mobile,
            email,
            title,
            job_number,
            active,
            admin,
            boss,
            dept_ids,
        }
    };
    let departments = |rows: Vec<DepartmentRow>| {
        let mut v: Vec<Department> = rows.into_iter().map(department).collect();
        v.sort_by_key(|d| d.id);
        v
    };
    let members = |rows: Vec<MemberRow>| {
        let mut v: Vec<Member> = rows.into_iter().map(member).collect();
        v.sort_by(|a, b| a.userid.cmp(&b.userid));
        v
    };
    let mut remove_members = rows.remove_members;
    remove_members.sort();
    let mut remove_departments = rows.remove_departments;
    remove_departments.sort_unstable();
    DirectoryDiff {
        add_departments: departments(rows.add_departments),
        update_departments: departments(rows.update_departments),
        remove_departments,
        add_members: members(rows.add_members),
        update_members: members(rows.update_members),
        remove_members,
    }
}
