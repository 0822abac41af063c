//! The incremental sync: read again only what events from DingTalk marked
//! dirty, as `core::incremental` plans it, and apply the changes through the
//! same delete guard as a full sync, in one transaction.

use std::time::Instant;

use jiff::Timestamp;

use super::{Error, Reconciler, SyncReport, outcome::Run, read};
use crate::{
    api::{Tenant, TenantKey},
    core::{
        desired::CreatorIdentity,
        dirty::Dirty,
        guard::guard,
        incremental::{Answer, DepartmentRead, Incremental, Next, Read, full_sync_calls},
        scope::DesiredScope,
        status::SyncResult,
    },
    dingtalk::{self, AppClient},
    store::{SyncOutcome, SyncRunRecord},
};

/// How an incremental sync ended.
#[derive(Debug)]
pub(super) enum Ran {
    /// Applied (or nothing to apply).
    Applied,
    /// The plan gave way to a full sync: the caller runs one.
    NeedsFullSync,
}

impl Reconciler {
    /// Reads again what `dirty` names and applies what changed. The outer
    /// error is the store's; the inner one DingTalk's (nothing is applied).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sync_incremental(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        app: &AppClient,
        scope: &DesiredScope,
        creator: &CreatorIdentity,
        dirty: &Dirty,
        run: &mut Run<'_>,
    ) -> Result<Result<Ran, dingtalk::Error>, Error> {
        let started = Instant::now();
        let now = run.status.now();
        let calls_before = app.stats().total_calls();
        let stored = self.store.directory(key).await?;
        let budget = full_sync_calls(stored.departments.len(), stored.members.len());
        // A marketplace app's leavers come by unionid: the directory's index
        // names their userids; one it does not hold was never a member.
        let mut users = dirty.users.clone();
        for unionid in &dirty.unionids {
            if let Some(userid) = self.store.userid_of_unionid(key, unionid).await? {
                users.insert(userid);
            }
        }
        let mut plan =
            Incremental::new(&users, &dirty.departments, &stored, scope, creator, budget);
        loop {
            let read = match plan.next_read() {
                Next::Read(read) => read,
                Next::Done => break,
                Next::FullSync(why) => {
                    tracing::info!(
                        ?why,
                        "the events ask for more than an incremental sync: a full sync runs"
                    );
                    return Ok(Ok(Ran::NeedsFullSync));
                }
            };
            match answer(app, &read).await {
                Ok(answer) => plan.answer(answer),
                Err(e) => return Ok(Err(e)),
            }
        }
        let settled = plan.finish();
        let max = tenant
            .spec
            .sync
            .max_deletions_for(stored.members.len() as u64);
        // A held removal is released only by a full sync with its approval.
        let guarded = guard(settled.diff, max, None);
        let d = &guarded.diff;
        let calls = app.stats().total_calls() - calls_before;
        let record = SyncRunRecord {
            outcome: if guarded.held > 0 {
                SyncOutcome::Held
            } else {
                SyncOutcome::Succeeded
            },
            calls,
            held_deletions: guarded.held,
            ..SyncRunRecord::succeeded(now, Timestamp::now().max(now), d)
        };
        if d.is_empty() {
            self.store.record_sync_run(key, &record).await?;
        } else {
            self.store.apply_sync(key, d, &record).await?;
        }
        let members = (stored.members.len() + d.add_members.len() - d.remove_members.len()) as u64;
        let departments = (stored.departments.len() + d.add_departments.len()
            - d.remove_departments.len()) as u64;
        let duration = started.elapsed();
        run.status.incremental_ran(&SyncResult {
            departments,
            members,
            added: record.added,
            updated: record.updated,
            removed: record.removed,
            held: guarded.held,
            unconfirmed: settled.unconfirmed,
            duration,
        });
        tracing::info!(
            added = record.added,
            updated = record.updated,
            removed = record.removed,
            held = guarded.held,
            calls,
            "directory updated from events"
        );
        run.sync = Some(SyncReport {
            run: record,
            duration,
            incremental: true,
        });
        Ok(Ok(Ran::Applied))
    }
}

/// Makes one read the plan asked for.
async fn answer(app: &AppClient, read: &Read) -> Result<Answer, dingtalk::Error> {
    Ok(match read {
        Read::User(userid) => Answer::User {
            userid: userid.clone(),
            found: app.get_user(userid).await?.map(read::member),
        },
        Read::Locate(id) => Answer::Located {
            id: *id,
            found: app.get_department(*id).await?.map(read::department),
        },
        Read::Department(id) => {
            let found = match app.get_department(*id).await? {
                None => None,
                Some(department) => Some(DepartmentRead {
                    department: read::department(department),
                    children: app
                        .list_sub_departments(*id)
                        .await?
                        .into_iter()
                        .map(read::department)
                        .collect(),
                    members: app
                        .list_department_users(*id)
                        .await?
                        .into_iter()
                        .map(read::member)
                        .collect(),
                }),
            };
            Answer::Department { id: *id, found }
        }
    })
}
