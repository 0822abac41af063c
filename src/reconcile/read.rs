//! Reading a visible scope from DingTalk: its departments (with their
//! sub-departments) and every member in them or listed by userid. A sync
//! streams it into the store (`stream_scope`); `plan`, which never writes,
//! reads it into memory (`read_scope`).

use std::collections::{BTreeSet, HashSet};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{SyncProgress, TenantKey},
    core::{
        desired::CreatorIdentity,
        directory::{Department, Member},
        scope::DesiredScope,
    },
    dingtalk::{self, AppClient, OrgItem, OrgPage},
    store::{self, Staged, Staging, StagingId, Store},
};

/// What a full read of the scope found.
pub struct Fetched {
    pub departments: Vec<Department>,
    pub users: Vec<Member>,
}

/// Reports progress every this many items read.
const PROGRESS_EVERY: u64 = 1000;

/// Reads the whole scope. Any error aborts the read: a partial read cannot tell
/// a member who left from one not fetched yet, so nothing may be removed on it.
pub async fn read_scope(
    app: &AppClient,
    scope: &DesiredScope,
    started: Timestamp,
    progress: &(dyn Fn(&SyncProgress) + Send + Sync),
) -> Result<Fetched, dingtalk::Error> {
    let mut departments = Vec::new();
    for &root in &scope.dept_ids {
        if let Some(d) = app.get_department(root).await? {
            departments.push(department(d));
        }
    }
    let mut users = Vec::new();
    let mut seen = HashSet::new();
    let mut walk = std::pin::pin!(app.walk_org(scope.dept_ids.iter().copied()));
    let mut read = 0u64;
    while let Some(item) = walk.next().await {
        match item? {
            OrgItem::Department(d) => departments.push(department(d)),
            OrgItem::User(u) => {
                seen.insert(u.userid.clone());
                users.push(member(u));
            }
        }
        read += 1;
        if read.is_multiple_of(PROGRESS_EVERY) {
            progress(&SyncProgress {
                departments: departments.len() as u64,
                members: users.len() as u64,
                started_at: Some(Time(started)),
            });
        }
    }
    for userid in &scope.user_ids {
        if seen.contains(userid) {
            continue;
        }
        // A listed member who left the company, or never existed, is simply absent.
        if let Some(u) = app.get_user(userid).await? {
            users.push(member(u));
        }
    }
    Ok(Fetched { departments, users })
}

pub(super) fn department(d: dingtalk::types::Department) -> Department {
    Department {
        id: d.dept_id,
        parent_id: d.parent_id,
        name: d.name,
        order: d.order.unwrap_or(0),
    }
}

pub(super) fn member(u: dingtalk::types::User) -> Member {
    let mut dept_ids = u.dept_id_list;
    dept_ids.sort_unstable();
    dept_ids.dedup();
    Member {
        userid: u.userid,
        unionid: u.unionid,
        name: u.name,
        mobile: u.mobile.filter(|s| !s.is_empty()),
        email: u.email.filter(|s| !s.is_empty()),
        title: u.title.filter(|s| !s.is_empty()),
        job_number: u.job_number.filter(|s| !s.is_empty()),
        active: u.active,
        admin: u.admin,
        boss: u.boss,
        dept_ids,
    }
}

/// What a streamed read left in the store: the staged run, and the ids of
/// the scope's departments (the frontier's trace, a few bytes each).
pub struct Streamed {
    pub staged: Staged,
    pub departments: BTreeSet<i64>,
}

/// Rows buffered before they are written to the staging run.
const STAGE_BATCH: usize = 2_000;

/// Pages in flight between the walk and the store: the walk goes on while a
/// batch is written, and waits when this many are queued.
const PAGES_IN_FLIGHT: usize = 16;

/// Aborts the walk's task when the read ends early.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the whole scope into a staging run of the store, page by page (see
/// `store::Staging`): memory holds the pages in flight and the department
/// frontier, never the organization. The creator is left out as it is read.
/// Any error aborts the read and deletes the run: a partial read cannot tell
/// a member who left from one not fetched yet. The outer error is the
/// store's, the inner one DingTalk's.
pub async fn stream_scope(
    store: &Store,
    key: &TenantKey,
    app: &AppClient,
    scope: &DesiredScope,
    creator: &CreatorIdentity,
    started: Timestamp,
    progress: &(dyn Fn(&SyncProgress) + Send + Sync),
) -> Result<Result<Streamed, dingtalk::Error>, store::Error> {
    let mut staging = store.begin_staging(key).await?;
    let run = staging.id();
    let read = stream_into(store, &mut staging, app, scope, creator, started, progress).await;
    match read {
        Ok(Ok(departments)) => Ok(Ok(Streamed {
            staged: store.finish_staging(staging).await?,
            departments,
        })),
        Ok(Err(e)) => {
            discard(store, run).await;
            Ok(Err(e))
        }
        Err(e) => {
            discard(store, run).await;
            Err(e)
        }
    }
}

/// Deletes a failed read's staging run (else the tenant's next sync does).
pub(super) async fn discard(store: &Store, run: StagingId) {
    if let Err(e) = store.drop_staging(run).await {
        tracing::warn!(error = %e, "a sync's staging was not deleted; the tenant's next sync deletes it");
    }
}

/// The read itself: roots, the walk, then the members listed by userid.
async fn stream_into(
    store: &Store,
    staging: &mut Staging,
    app: &AppClient,
    scope: &DesiredScope,
    creator: &CreatorIdentity,
    started: Timestamp,
    progress: &(dyn Fn(&SyncProgress) + Send + Sync),
) -> Result<Result<BTreeSet<i64>, dingtalk::Error>, store::Error> {
    let mut batch = Batch::default();
    for &root in &scope.dept_ids {
        match app.get_department(root).await {
            Ok(Some(d)) => batch.department(department(d)),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
    // The walk runs on a task of its own, so that it goes on while a batch is
    // written; the channel bounds what waits in between.
    let (tx, mut rx) = tokio::sync::mpsc::channel(PAGES_IN_FLIGHT);
    let walk = app.walk_org_pages(scope.dept_ids.iter().copied());
    let _walk = AbortOnDrop(tokio::spawn(async move {
        let mut walk = std::pin::pin!(walk);
        while let Some(page) = walk.next().await {
            if tx.send(page).await.is_err() {
                return;
            }
        }
    }));
    let mut reported = 0u64;
    while let Some(page) = rx.recv().await {
        match page {
            Ok(OrgPage::Departments(ds)) => {
                for d in ds {
                    batch.department(department(d));
                }
            }
            Ok(OrgPage::Users(users)) => {
                for u in users {
                    batch.user(member(u), creator);
                }
            }
            Err(e) => return Ok(Err(e)),
        }
        if batch.rows() >= STAGE_BATCH {
            batch.flush(store, staging).await?;
        }
        if batch.read / PROGRESS_EVERY > reported {
            reported = batch.read / PROGRESS_EVERY;
            progress(&SyncProgress {
                departments: batch.departments.len() as u64,
                members: batch.members_read.round() as u64,
                started_at: Some(Time(started)),
            });
        }
    }
    batch.flush(store, staging).await?;
    // Members listed by userid and not read in a department: one call each.
    for listed in scope
        .user_ids
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .chunks(500)
    {
        let staged: HashSet<String> = store
            .staged_userids(staging, listed)
            .await?
            .into_iter()
            .collect();
        for userid in listed.iter().filter(|u| !staged.contains(*u)) {
            // A listed member who left the company, or never existed, is simply absent.
            match app.get_user(userid).await {
                Ok(Some(u)) => batch.user(member(u), creator),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        batch.flush(store, staging).await?;
    }
    Ok(Ok(batch.departments))
}

/// What waits to be written to the staging run.
#[derive(Default)]
struct Batch {
    departments_batch: Vec<Department>,
    members: Vec<Member>,
    /// Every department read: the scope's departments.
    departments: BTreeSet<i64>,
    /// Items read, for progress.
    read: u64,
    /// Members read so far, each read of a member in k departments counting
    /// 1/k: the distinct count once every department is read.
    members_read: f64,
}

impl Batch {
    fn department(&mut self, d: Department) {
        self.departments.insert(d.id);
        self.departments_batch.push(d);
        self.read += 1;
    }

    fn user(&mut self, m: Member, creator: &CreatorIdentity) {
        self.read += 1;
        self.members_read += 1.0 / m.dept_ids.len().max(1) as f64;
        if !creator.matches(&m) {
            self.members.push(m);
        }
    }

    fn rows(&self) -> usize {
        self.departments_batch.len() + self.members.len()
    }

    async fn flush(&mut self, store: &Store, staging: &mut Staging) -> Result<(), store::Error> {
        if self.rows() > 0 {
            store
                .stage(staging, &self.departments_batch, &self.members)
                .await?;
            self.departments_batch.clear();
            self.members.clear();
        }
        Ok(())
    }
}
