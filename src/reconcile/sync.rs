//! The directory sync: stream the scope from DingTalk into the store, diff it
//! there, hold back mass removals, apply the rest in one transaction; and
//! `plan`, the same in memory without writing.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::{
    Error, Reconciler, Secrets, SyncReport, marketplace, operate::observed_scope, outcome::Run,
    read, status_unbind,
};
use crate::{
    api::{SyncProgress, Tenant, TenantKey},
    core::{
        absence::{absence, keep_unconfirmed},
        binding::{self, Step},
        desired::{CreatorIdentity, desired_directory},
        directory::{Directory, DirectoryDiff, diff},
        guard::{Guarded, guard},
        scope::{DesiredScope, ScopeDelta, delta},
        status::{BindingFailure, SyncResult},
    },
    dingtalk::{self, AppClient},
    store::{Staged, SyncOutcome, SyncRunRecord},
};

impl Reconciler {
    /// A directory sync. The outer error is the store's; the inner one DingTalk's.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sync(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        app: &AppClient,
        scope: &DesiredScope,
        approved: Option<u64>,
        run: &mut Run<'_>,
        progress: &(dyn Fn(&SyncProgress) + Send + Sync),
    ) -> Result<Result<(), dingtalk::Error>, Error> {
        let started = std::time::Instant::now();
        let now = run.status.now();
        let calls_before = app.stats().total_calls();
        // A share of the memory budget, sized from what the last sync left.
        let members = self.store.member_count(key).await?;
        let _share = self.sync_memory.acquire(members).await;
        // DingTalk's answer (the walk, streamed into the store, then the
        // absences it leaves): a failure is recorded as a failed run and
        // changes nothing.
        let creator = creator_identity(tenant);
        let streamed =
            read::stream_scope(&self.store, key, app, scope, &creator, now, progress).await?;
        let planned = match streamed {
            Ok(streamed) => {
                self.plan_staged(tenant, app, scope, &creator, streamed, approved)
                    .await?
            }
            Err(e) => Err(e),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                let record = SyncRunRecord {
                    calls: app.stats().total_calls() - calls_before,
                    ..SyncRunRecord::unapplied(
                        now,
                        finished(now),
                        SyncOutcome::Failed,
                        e.to_string(),
                    )
                };
                self.store.record_sync_run(key, &record).await?;
                return Ok(Err(e));
            }
        };
        let guarded = &plan.guarded;
        let calls = app.stats().total_calls() - calls_before;
        let record = SyncRunRecord {
            outcome: if guarded.held > 0 {
                SyncOutcome::Held
            } else {
                SyncOutcome::Succeeded
            },
            added: plan.added,
            updated: plan.updated,
            calls,
            held_deletions: guarded.held,
            ..SyncRunRecord::succeeded(now, finished(now), &guarded.diff)
        };
        if plan.changes_nothing() {
            self.store.record_sync_run(key, &record).await?;
            read::discard(&self.store, plan.staged.id()).await;
        } else {
            let (members, departments) = (
                &guarded.diff.remove_members,
                &guarded.diff.remove_departments,
            );
            self.store
                .apply_staged(plan.staged, members, departments, &record)
                .await?;
        }
        let duration = started.elapsed();
        run.status.sync_ran(&SyncResult {
            departments: plan.departments_after,
            members: plan.members_after,
            added: record.added,
            updated: record.updated,
            removed: record.removed,
            held: guarded.held,
            unconfirmed: plan.unconfirmed,
            duration,
        });
        tracing::info!(
            added = record.added,
            updated = record.updated,
            removed = record.removed,
            held = guarded.held,
            calls,
            "directory synced"
        );
        run.sync = Some(SyncReport {
            run: record,
            duration,
            incremental: false,
        });
        Ok(Ok(()))
    }
}

/// What a sync would change, before it is applied.
#[derive(Clone, Debug)]
pub struct SyncPlan {
    /// The diff after the accidental-delete guard, and the removals it holds back.
    pub guarded: Guarded,
    /// Members and departments in the directory once the diff is applied.
    pub members_after: u64,
    pub departments_after: u64,
    /// Absent members DingTalk did not confirm gone: kept.
    pub unconfirmed: u64,
}

/// What a streamed sync would change, before it is applied: counts, and the
/// removals the core let through.
struct StagedPlan {
    staged: Staged,
    /// Members added and updated (departments too, for `changes_nothing`).
    added: u64,
    updated: u64,
    departments_changed: u64,
    /// The removals after the absence checks and the guard (only
    /// `remove_members` and `remove_departments` are set).
    guarded: Guarded,
    members_after: u64,
    departments_after: u64,
    unconfirmed: u64,
}

impl StagedPlan {
    fn changes_nothing(&self) -> bool {
        self.added == 0
            && self.updated == 0
            && self.departments_changed == 0
            && self.guarded.diff.is_empty()
    }
}

pub(super) fn creator_identity(tenant: &Tenant) -> CreatorIdentity {
    tenant
        .spec
        .creator
        .as_ref()
        .map(|c| CreatorIdentity {
            email: c.email.clone(),
            phone: c.phone.clone(),
        })
        .unwrap_or_default()
}

impl Reconciler {
    /// Compares the streamed read with the directory in the store, asks
    /// DingTalk about each member missing from it (only a confirmed absence
    /// is removed), and applies the guard: the same decisions as
    /// [`Reconciler::plan_sync`], on counts and the (usually few) missing
    /// members. Writes nothing; a failure deletes the staging run. The outer
    /// error is the store's; the inner one DingTalk's.
    async fn plan_staged(
        &self,
        tenant: &Tenant,
        app: &AppClient,
        scope: &DesiredScope,
        creator: &CreatorIdentity,
        streamed: read::Streamed,
        approved: Option<u64>,
    ) -> Result<Result<StagedPlan, dingtalk::Error>, Error> {
        let changes = match self.store.staged_changes(&streamed.staged).await {
            Ok(changes) => changes,
            Err(e) => {
                read::discard(&self.store, streamed.staged.id()).await;
                return Err(e.into());
            }
        };
        let max = tenant.spec.sync.max_deletions_for(changes.members);
        let mut verdicts = BTreeMap::new();
        for missing in &changes.missing_members {
            let found = match app.get_user(&missing.userid).await {
                Ok(found) => found.map(read::member),
                Err(e) => {
                    read::discard(&self.store, streamed.staged.id()).await;
                    return Ok(Err(e));
                }
            };
            let verdict = absence(found.as_ref(), scope, &streamed.departments, creator);
            verdicts.insert(missing.userid.clone(), verdict);
        }
        let removals = DirectoryDiff {
            remove_members: changes
                .missing_members
                .iter()
                .map(|m| m.userid.clone())
                .collect(),
            remove_departments: changes.missing_departments.clone(),
            ..DirectoryDiff::default()
        };
        // What the directory holds of the missing members: all that
        // keep_unconfirmed looks at.
        let missing = Directory::new([], changes.missing_members);
        let (confirmed, unconfirmed) = keep_unconfirmed(removals, &missing, &verdicts);
        let guarded = guard(confirmed, max, approved);
        let d = &guarded.diff;
        Ok(Ok(StagedPlan {
            staged: streamed.staged,
            added: changes.add_members,
            updated: changes.update_members,
            departments_changed: changes.add_departments + changes.update_departments,
            members_after: changes.members + changes.add_members - d.remove_members.len() as u64,
            departments_after: changes.departments + changes.add_departments
                - d.remove_departments.len() as u64,
            guarded,
            unconfirmed,
        }))
    }

    /// Compares what was read in DingTalk with the store, asks DingTalk about
    /// each member that is missing (only a confirmed absence is removed), and
    /// applies the guard. Writes nothing. The outer error is the store's; the
    /// inner one DingTalk's.
    pub(super) async fn plan_sync(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        app: &AppClient,
        scope: &DesiredScope,
        fetched: read::Fetched,
        approved: Option<u64>,
    ) -> Result<Result<SyncPlan, dingtalk::Error>, Error> {
        let creator = creator_identity(tenant);
        let desired = desired_directory(fetched.departments, fetched.users, &creator);
        let current = self.store.directory(key).await?;
        let max = tenant
            .spec
            .sync
            .max_deletions_for(current.members.len() as u64);
        let full = diff(&current, &desired);
        let scope_departments: BTreeSet<i64> = desired.departments.keys().copied().collect();
        let mut verdicts = BTreeMap::new();
        for userid in &full.remove_members {
            let found = match app.get_user(userid).await {
                Ok(found) => found.map(read::member),
                Err(e) => return Ok(Err(e)),
            };
            let verdict = absence(found.as_ref(), scope, &scope_departments, &creator);
            verdicts.insert(userid.clone(), verdict);
        }
        let (confirmed, unconfirmed) = keep_unconfirmed(full, &current, &verdicts);
        let guarded = guard(confirmed, max, approved);
        let d = &guarded.diff;
        let members_after =
            (current.members.len() + d.add_members.len() - d.remove_members.len()) as u64;
        let departments_after = (current.departments.len() + d.add_departments.len()
            - d.remove_departments.len()) as u64;
        Ok(Ok(SyncPlan {
            guarded,
            members_after,
            departments_after,
            unconfirmed,
        }))
    }

    /// What reconciling `tenant` now would do, without doing it: the binding
    /// step, the scope delta and the directory changes (read from DingTalk).
    pub async fn plan(
        &self,
        tenant: &Tenant,
        secrets: &Secrets,
        now: Timestamp,
        read_dingtalk: bool,
    ) -> Result<Plan, Error> {
        let key = tenant.key();
        let ledger = self.ledger_facts(&key).await?;
        let status = tenant.status.as_ref().and_then(status_unbind);
        let unbind = ledger.unbind.clone().or(status);
        let step = binding::next_step(&tenant.spec, ledger.binding.as_ref(), unbind.as_ref(), now);
        let mut plan = Plan {
            step,
            scope: None,
            sync: None,
            problem: None,
            note: None,
        };
        if plan.step != Step::Operate || !read_dingtalk {
            return Ok(plan);
        }
        let Some(dt) = tenant.spec.dingtalk.as_ref() else {
            plan.problem = Some("the spec names no DingTalk app; DingTalk was not read".into());
            return Ok(plan);
        };
        let (app, desired, observed) = if dt.is_marketplace() {
            let installed = match self.marketplace_install(dt, ledger.binding.as_ref()).await {
                Ok(installed) => installed,
                Err(failure) => {
                    let waits = match &failure {
                        BindingFailure::NoSuite => {
                            Some("no marketplace suite is configured (--suite-secret)".to_string())
                        }
                        BindingFailure::WaitingForSuiteTicket => Some(
                            "no suite ticket yet (DingTalk sends it on the suite's Stream connection)"
                                .to_string(),
                        ),
                        BindingFailure::NotInstalled { corp_id } => Some(format!(
                            "the marketplace app is not installed in {corp_id}"
                        )),
                        _ => None,
                    };
                    match waits {
                        Some(why) => plan.note = Some(format!("{why}; DingTalk was not read")),
                        None => {
                            plan.problem = Some(format!(
                                "the marketplace app's install could not be read: {failure:?}"
                            ))
                        }
                    }
                    return Ok(plan);
                }
            };
            let observed = marketplace::read_scope(&installed.app).await;
            let desired = observed
                .as_ref()
                .map(DesiredScope::from_observed)
                .unwrap_or_default();
            (installed.app, desired, observed)
        } else {
            let (Some(Ok(creds)), Some(agent_id), Some(scope)) =
                (&secrets.credentials, dt.agent_id, dt.visible_scope.as_ref())
            else {
                plan.problem =
                    Some("the app credentials are not available; DingTalk was not read".into());
                return Ok(plan);
            };
            let app = self.app(creds);
            let observed = app.get_scopes(agent_id).await.map(observed_scope);
            (app, DesiredScope::from_spec(scope), observed)
        };
        let fetched = match observed {
            Ok(observed) => {
                if !dt.is_marketplace() {
                    plan.scope = Some(delta(&desired, &observed));
                }
                read::read_scope(&app, &desired, now, &|_| {}).await
            }
            Err(e) => Err(e),
        };
        let planned = match fetched {
            Ok(fetched) => {
                self.plan_sync(&key, tenant, &app, &desired, fetched, None)
                    .await?
            }
            Err(e) => Err(e),
        };
        match planned {
            Ok(sync) => plan.sync = Some(sync),
            Err(e) => plan.problem = Some(format!("reading DingTalk: {e}")),
        }
        Ok(plan)
    }
}

/// The result of [`Reconciler::plan`].
#[derive(Clone, Debug)]
pub struct Plan {
    pub step: Step,
    pub scope: Option<ScopeDelta>,
    pub sync: Option<SyncPlan>,
    /// Why DingTalk could not be read, if it could not.
    pub problem: Option<String>,
    /// Why DingTalk was not read for a tenant that waits (a marketplace
    /// app not installed yet, or no suite ticket): not a failure of the plan.
    pub note: Option<String>,
}

/// When a sync that started at `started` finished: now, or `started` if the
/// wall clock went back meanwhile.
fn finished(started: Timestamp) -> Timestamp {
    Timestamp::now().max(started)
}
