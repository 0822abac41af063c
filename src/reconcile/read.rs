//! Reading a visible scope from DingTalk: its departments (with their
//! sub-departments) and every member in them or listed by userid.

use std::collections::HashSet;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::SyncProgress,
    core::{
        directory::{Department, Member},
        scope::DesiredScope,
    },
    dingtalk::{self, AppClient, OrgItem},
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

fn department(d: dingtalk::types::Department) -> Department {
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
