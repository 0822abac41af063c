//! The simulated world: organizations, their department trees, members, apps
//! and leavers, plus the issued access tokens. Pure data and rules; the clock
//! is passed in, so every rule is unit-testable. HTTP lives in `api.rs`/`admin.rs`.
//!
//! Hot reads are cheap: each corp keeps a children index (dept → sub-depts) and
//! a members index (dept → userids, sorted), so `listsub` and a `user/list` page
//! cost O(answer), whatever the size of the org.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::authcodes::Logins;
use super::generate::{GenSpec, Generated, generate_lazily};
use super::org_file::{AppSpec, CorpSpec, DeptSpec, OrgFile, ScopeSpec, SuiteSpec, UserSpec};
use super::suites::{InstallRequest, Installed, SuiteAuthError, Suites};
use crate::dingtalk::types::{self, AppScopes, InnerApp, LeaveRecord, ROOT_DEPT_ID, ScopeDelta};

/// Why a change or a query was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("no corp {0}")]
    CorpNotFound(String),
    #[error("no department {0}")]
    DeptNotFound(i64),
    #[error("no user {0}")]
    UserNotFound(String),
    #[error("no app {0}")]
    AppNotFound(i64),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("no suite {0}")]
    SuiteNotFound(String),
    #[error("corp {corp_id} has not installed suite {suite_key}")]
    NotInstalled { suite_key: String, corp_id: String },
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No token was sent.
    Missing,
    /// Unknown or expired.
    Invalid,
}

/// The caller behind a valid token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Empty for a suite's own token.
    pub corp_id: String,
    /// 0 for a suite's own token.
    pub agent_id: i64,
    /// The appKey, or the suiteKey of a marketplace token.
    pub app_key: String,
    pub kind: CallerKind,
}

/// Which kind of token a caller holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerKind {
    /// An internal app's token (`oauth2/accessToken`, `gettoken`).
    InternalApp,
    /// A suite's own token (`oauth2/suiteAccessToken`): `apps/authInfo` only.
    Suite,
    /// A suite's token in one corp that installed it (`oauth2/corpAccessToken`).
    Marketplace,
}

impl Caller {
    /// The rate-limit bucket (and the `apps` counter): the appKey, or for a
    /// marketplace token `suiteKey@corpId`, as DingTalk limits an ISV app per
    /// suite, authorizing corp and API.
    pub fn limit_key(&self) -> String {
        match self.kind {
            CallerKind::Marketplace => marketplace_key(&self.app_key, &self.corp_id),
            CallerKind::InternalApp | CallerKind::Suite => self.app_key.clone(),
        }
    }
}

/// The rate-limit bucket and counter name of a suite in one corp.
pub fn marketplace_key(suite_key: &str, corp_id: &str) -> String {
    format!("{suite_key}@{corp_id}")
}

/// An issued token.
#[derive(Clone, Debug)]
struct TokenEntry {
    caller: Caller,
    expires_at: Instant,
}

/// Largest number of users or departments in a visible scope.
pub const SCOPE_MAX_IDS: usize = 2000;

/// One organization with its indexes.
#[derive(Clone, Debug)]
pub struct Corp {
    pub corp_id: String,
    pub name: String,
    pub apps: BTreeMap<i64, AppSpec>,
    /// Every department but the root.
    pub departments: BTreeMap<i64, DeptSpec>,
    /// Users given one by one (an org file, the admin API).
    users: BTreeMap<String, UserSpec>,
    /// Users of a generated org, made on demand; those removed or replaced
    /// through the admin API are in `gone` (a replaced one lives in `users`).
    generated: Option<Generated>,
    gone: HashSet<u32>,
    pub leave_records: Vec<LeaveRecord>,
    /// Department → direct sub-departments, ascending by (order, id).
    children: HashMap<i64, Vec<i64>>,
    /// Department → direct members given one by one, ascending by userid.
    members: HashMap<i64, Vec<String>>,
}

/// A direct member of a department: given one by one, or generated.
#[derive(Clone, Copy, Debug)]
enum Uid<'a> {
    Given(&'a str),
    Generated(u32),
}

impl Corp {
    /// Builds and checks a corp: unique ids, existing parents, no cycles, users
    /// in existing departments, apps with distinct agent ids.
    pub fn from_spec(spec: CorpSpec) -> Result<Self, ModelError> {
        if spec.corp_id.is_empty() {
            return Err(ModelError::Invalid("corpId is empty".into()));
        }
        let mut corp = Corp {
            corp_id: spec.corp_id,
            name: spec.name,
            apps: BTreeMap::new(),
            departments: BTreeMap::new(),
            users: BTreeMap::new(),
            generated: None,
            gone: HashSet::new(),
            leave_records: spec.leave_records,
            children: HashMap::new(),
            members: HashMap::new(),
        };
        for app in spec.apps {
            if corp.apps.insert(app.agent_id, app.clone()).is_some() {
                return Err(ModelError::Invalid(format!(
                    "agentId {} twice",
                    app.agent_id
                )));
            }
        }
        for d in spec.departments {
            if d.id == ROOT_DEPT_ID || corp.departments.insert(d.id, d.clone()).is_some() {
                return Err(ModelError::Invalid(format!(
                    "department {} twice (1 is the implicit root)",
                    d.id
                )));
            }
        }
        for id in corp.departments.keys() {
            corp.check_ancestry(*id)?;
        }
        corp.reindex_children();
        for u in spec.users {
            if corp.users.contains_key(&u.userid) {
                return Err(ModelError::Invalid(format!("user {} twice", u.userid)));
            }
            corp.check_user(&u)?;
            corp.users.insert(u.userid.clone(), u);
        }
        corp.reindex_members();
        Ok(corp)
    }

    /// A generated corp (`spec` without users, as [`generate_lazily`] gives
    /// it) whose users are made on demand.
    pub fn generated(spec: CorpSpec, users: Generated) -> Result<Self, ModelError> {
        let mut corp = Corp::from_spec(spec)?;
        if let Some(d) = users
            .department_sizes()
            .map(|(d, _)| d)
            .find(|d| !corp.dept_exists(*d))
        {
            return Err(ModelError::Invalid(format!(
                "generated users in department {d}, which does not exist"
            )));
        }
        corp.generated = Some(users);
        Ok(corp)
    }

    /// The corp in the file/admin schema (generated users included).
    pub fn to_spec(&self) -> CorpSpec {
        let mut users: Vec<UserSpec> = self.users.values().cloned().collect();
        if let Some(g) = &self.generated {
            users.extend(
                (1..=g.len() as u32)
                    .filter(|n| !self.gone.contains(n))
                    .map(|n| g.user(n)),
            );
            users.sort_by(|a, b| a.userid.cmp(&b.userid));
        }
        CorpSpec {
            corp_id: self.corp_id.clone(),
            name: self.name.clone(),
            apps: self.apps.values().cloned().collect(),
            departments: self.departments.values().cloned().collect(),
            users,
            leave_records: self.leave_records.clone(),
        }
    }

    /// How many users the corp has.
    pub fn user_count(&self) -> usize {
        self.users.len() + self.generated.as_ref().map_or(0, |g| g.len()) - self.gone.len()
    }

    /// The live generated user `userid`'s number, if it is one.
    fn generated_number(&self, userid: &str) -> Option<u32> {
        let n = self.generated.as_ref()?.number(userid)?;
        (!self.gone.contains(&n)).then_some(n)
    }

    /// The user `userid`, given or generated.
    fn user_spec(&self, userid: &str) -> Option<Cow<'_, UserSpec>> {
        if let Some(u) = self.users.get(userid) {
            return Some(Cow::Borrowed(u));
        }
        let n = self.generated_number(userid)?;
        self.generated.as_ref().map(|g| Cow::Owned(g.user(n)))
    }

    fn uid_spec(&self, uid: Uid<'_>) -> Option<Cow<'_, UserSpec>> {
        match uid {
            Uid::Given(u) => self.users.get(u).map(Cow::Borrowed),
            Uid::Generated(n) => self.generated.as_ref().map(|g| Cow::Owned(g.user(n))),
        }
    }

    /// The direct members of `dept_id`, ascending by userid.
    fn direct_members(&self, dept_id: i64) -> Vec<Uid<'_>> {
        let given = self
            .members
            .get(&dept_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(g) = &self.generated else {
            return given.iter().map(|u| Uid::Given(u)).collect();
        };
        let generated = g
            .members_of(dept_id)
            .iter()
            .filter(|n| !self.gone.contains(n))
            .map(|n| Uid::Generated(*n));
        if given.is_empty() {
            return generated.collect();
        }
        let mut all: Vec<(Cow<'_, str>, Uid<'_>)> = given
            .iter()
            .map(|u| (Cow::Borrowed(u.as_str()), Uid::Given(u)))
            .chain(generated.map(|uid| match uid {
                Uid::Generated(n) => (Cow::Owned(g.userid(n)), uid),
                Uid::Given(u) => (Cow::Borrowed(u), uid),
            }))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, uid)| uid).collect()
    }

    fn uid_string(&self, uid: Uid<'_>) -> String {
        match uid {
            Uid::Given(u) => u.to_owned(),
            Uid::Generated(n) => self
                .generated
                .as_ref()
                .map_or_else(String::new, |g| g.userid(n)),
        }
    }

    /// The first admin among the users given one by one (by userid).
    pub fn first_admin(&self) -> Option<String> {
        self.users
            .values()
            .find(|u| u.admin)
            .map(|u| u.userid.clone())
    }

    fn dept_exists(&self, id: i64) -> bool {
        id == ROOT_DEPT_ID || self.departments.contains_key(&id)
    }

    /// Checks that `id` reaches the root through existing parents, without a cycle.
    fn check_ancestry(&self, id: i64) -> Result<(), ModelError> {
        let mut cur = id;
        for _ in 0..=self.departments.len() {
            if cur == ROOT_DEPT_ID {
                return Ok(());
            }
            let d = self
                .departments
                .get(&cur)
                .ok_or(ModelError::Invalid(format!(
                    "department {id}: parent {cur} does not exist"
                )))?;
            cur = d.parent_id;
        }
        Err(ModelError::Invalid(format!(
            "department {id} is in a cycle"
        )))
    }

    fn check_user(&self, u: &UserSpec) -> Result<(), ModelError> {
        if u.userid.is_empty() {
            return Err(ModelError::Invalid("userid is empty".into()));
        }
        if u.dept_ids.is_empty() {
            return Err(ModelError::Invalid(format!(
                "user {} has no department",
                u.userid
            )));
        }
        match u.dept_ids.iter().find(|d| !self.dept_exists(**d)) {
            Some(d) => Err(ModelError::Invalid(format!(
                "user {}: department {d} does not exist",
                u.userid
            ))),
            None => Ok(()),
        }
    }

    fn reindex_children(&mut self) {
        let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
        for d in self.departments.values() {
            children.entry(d.parent_id).or_default().push(d.id);
        }
        for list in children.values_mut() {
            list.sort_by_key(|id| (self.departments.get(id).map_or(0, |d| d.order), *id));
        }
        self.children = children;
    }

    fn reindex_members(&mut self) {
        let mut members: HashMap<i64, Vec<String>> = HashMap::new();
        // BTreeMap iteration is by userid, so every list comes out sorted.
        for u in self.users.values() {
            let mut depts = u.dept_ids.clone();
            depts.sort_unstable();
            depts.dedup();
            for d in depts {
                members.entry(d).or_default().push(u.userid.clone());
            }
        }
        self.members = members;
    }

    fn index_user(&mut self, u: &UserSpec, add: bool) {
        for d in &u.dept_ids {
            let list = self.members.entry(*d).or_default();
            match (list.binary_search(&u.userid), add) {
                (Err(pos), true) => list.insert(pos, u.userid.clone()),
                (Ok(pos), false) => {
                    list.remove(pos);
                }
                _ => {}
            }
        }
    }

    // ------------------------------------------------------------ reads (the DingTalk API)

    /// Direct sub-departments of `dept_id` (`listsub`).
    pub fn sub_departments(&self, dept_id: i64) -> Result<Vec<types::Department>, ModelError> {
        if !self.dept_exists(dept_id) {
            return Err(ModelError::DeptNotFound(dept_id));
        }
        let ids = self
            .children
            .get(&dept_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(ids
            .iter()
            .filter_map(|id| self.departments.get(id))
            .map(|d| self.wire_dept(d, false))
            .collect())
    }

    /// One department with counts (`department/get`). The root is named after
    /// the corp and has no parent.
    pub fn department(&self, dept_id: i64) -> Result<types::Department, ModelError> {
        let mut wire = if dept_id == ROOT_DEPT_ID {
            types::Department {
                dept_id,
                name: self.name.clone(),
                parent_id: None,
                create_dept_group: false,
                auto_add_user: false,
                order: Some(0),
                member_count: None,
                owning_member_count: None,
                dept_manager_userid_list: Vec::new(),
            }
        } else {
            let d = self
                .departments
                .get(&dept_id)
                .ok_or(ModelError::DeptNotFound(dept_id))?;
            self.wire_dept(d, true)
        };
        wire.owning_member_count = Some(self.direct_members(dept_id).len() as i64);
        wire.member_count = Some(self.subtree_member_count(dept_id) as i64);
        Ok(wire)
    }

    fn wire_dept(&self, d: &DeptSpec, detail: bool) -> types::Department {
        types::Department {
            dept_id: d.id,
            name: d.name.clone(),
            parent_id: Some(d.parent_id),
            create_dept_group: false,
            auto_add_user: false,
            order: detail.then_some(d.order),
            member_count: None,
            owning_member_count: None,
            dept_manager_userid_list: Vec::new(),
        }
    }

    fn subtree_member_count(&self, dept_id: i64) -> usize {
        let mut stack = vec![dept_id];
        let (mut given, mut generated) = (HashSet::new(), HashSet::new());
        while let Some(d) = stack.pop() {
            for uid in self.direct_members(d) {
                match uid {
                    Uid::Given(u) => given.insert(u),
                    Uid::Generated(n) => generated.insert(n),
                };
            }
            stack.extend(self.children.get(&d).into_iter().flatten().copied());
        }
        given.len() + generated.len()
    }

    /// A page of direct members (`user/list`): `cursor` is the offset; the last
    /// page has no `next_cursor`.
    /// The userids of `dept_id`'s direct members (`topapi/user/listid`).
    pub fn member_ids(&self, dept_id: i64) -> Result<types::UserListIdResult, ModelError> {
        if !self.dept_exists(dept_id) {
            return Err(ModelError::DeptNotFound(dept_id));
        }
        Ok(types::UserListIdResult {
            userid_list: self
                .direct_members(dept_id)
                .into_iter()
                .map(|uid| self.uid_string(uid))
                .collect(),
        })
    }

    pub fn member_page(
        &self,
        dept_id: i64,
        cursor: i64,
        size: u32,
    ) -> Result<types::UserListResult, ModelError> {
        if !self.dept_exists(dept_id) {
            return Err(ModelError::DeptNotFound(dept_id));
        }
        if !(1..=types::USER_LIST_MAX_SIZE).contains(&size) || !(0..=100_000).contains(&cursor) {
            return Err(ModelError::Invalid(format!(
                "size {size} or cursor {cursor} out of range"
            )));
        }
        let all = self.direct_members(dept_id);
        let start = usize::try_from(cursor).unwrap_or(usize::MAX).min(all.len());
        let end = (start + size as usize).min(all.len());
        let list = all[start..end]
            .iter()
            .filter_map(|uid| self.uid_spec(*uid))
            .map(|u| self.wire_user(&u, Some(dept_id)))
            .collect();
        let has_more = end < all.len();
        Ok(types::UserListResult {
            has_more,
            next_cursor: has_more.then_some(end as i64),
            list,
        })
    }

    /// One member (`user/get`).
    pub fn user(&self, userid: &str) -> Result<types::User, ModelError> {
        let u = self
            .user_spec(userid)
            .ok_or_else(|| ModelError::UserNotFound(userid.to_owned()))?;
        Ok(self.wire_user(&u, None))
    }

    /// The user's unionid: the one given, or `un-<corpId>-<userid>`.
    pub fn unionid_of(&self, u: &UserSpec) -> String {
        u.unionid
            .clone()
            .unwrap_or_else(|| format!("un-{}-{}", self.corp_id, u.userid))
    }

    /// The member `userid` as the corp holds it (given or generated).
    pub fn member(&self, userid: &str) -> Option<UserSpec> {
        self.user_spec(userid).map(Cow::into_owned)
    }

    /// The userid of the member whose unionid is `unionid` (`getbyunionid`).
    /// A scan of the members: O(users), generated ones included.
    pub fn userid_by_unionid(&self, unionid: &str) -> Option<String> {
        if let Some(u) = self.users.values().find(|u| self.unionid_of(u) == unionid) {
            return Some(u.userid.clone());
        }
        let g = self.generated.as_ref()?;
        (1..=g.len() as u32)
            .filter(|n| !self.gone.contains(n))
            .map(|n| g.user(n))
            .find(|u| self.unionid_of(u) == unionid)
            .map(|u| u.userid)
    }

    /// Whether `scope` (an app's visible scope, an install's) covers the
    /// member: listed by userid, or in a listed department or one of its
    /// sub-departments (`deptIds: [1]` is everyone). "Only admins"
    /// (`onlyAdminVisible`) covers the admins alone, main and sub. Roles are
    /// not modelled.
    pub fn in_scope(&self, scope: &ScopeSpec, u: &UserSpec) -> bool {
        if scope.only_admin_visible {
            return u.admin || u.sub_admin;
        }
        if scope.user_ids.contains(&u.userid) {
            return true;
        }
        u.dept_ids.iter().any(|d| {
            let mut cur = *d;
            // Bounded by the depth of the tree (no cycles: checked on every change).
            for _ in 0..=self.departments.len() {
                if scope.dept_ids.contains(&cur) {
                    return true;
                }
                if cur == ROOT_DEPT_ID {
                    return false;
                }
                match self.departments.get(&cur) {
                    Some(dept) => cur = dept.parent_id,
                    None => return false,
                }
            }
            false
        })
    }

    fn wire_user(&self, u: &UserSpec, listed_in: Option<i64>) -> types::User {
        types::User {
            userid: u.userid.clone(),
            unionid: self.unionid_of(u),
            name: u.name.clone(),
            avatar: None,
            state_code: u.mobile.as_ref().map(|_| "86".to_owned()),
            mobile: u.mobile.clone(),
            email: u.email.clone(),
            title: u.title.clone(),
            job_number: u.job_number.clone(),
            dept_id_list: u.dept_ids.clone(),
            hired_date: None,
            active: u.active,
            admin: u.admin || u.sub_admin,
            boss: u.boss,
            leader: listed_in.map(|_| false),
        }
    }

    /// The app's visible scope (`GET …/scopes`).
    pub fn scopes(&self, agent_id: i64) -> Result<AppScopes, ModelError> {
        let app = self
            .apps
            .get(&agent_id)
            .ok_or(ModelError::AppNotFound(agent_id))?;
        let s = &app.visible_scope;
        if s.only_admin_visible {
            return Ok(AppScopes {
                only_admin_visible: true,
                ..Default::default()
            });
        }
        Ok(AppScopes {
            user_ids: s.user_ids.clone(),
            dept_ids: s.dept_ids.clone(),
            role_ids: s.role_ids.clone(),
            only_admin_visible: false,
        })
    }

    /// Every internal app (`allInnerApps`).
    pub fn inner_apps(&self) -> Vec<InnerApp> {
        self.apps
            .values()
            .map(|a| InnerApp {
                agent_id: a.agent_id,
                name: a.name.clone(),
                desc: String::new(),
                app_id: 0,
                app_status: i64::from(a.enabled),
                develop_type: 0,
                unified_app_id: Some(format!("{}-{}", self.corp_id, a.agent_id)),
            })
            .collect()
    }

    /// Leavers with `start <= leaveTime <= end`, from offset `from`, at most `max`.
    /// Returns the page and the offset of the next one.
    pub fn leave_page(
        &self,
        start: Timestamp,
        end: Option<Timestamp>,
        from: usize,
        max: usize,
    ) -> (Vec<LeaveRecord>, Option<usize>) {
        let matching: Vec<&LeaveRecord> = self
            .leave_records
            .iter()
            .filter(|r| {
                r.leave_time
                    .parse::<Timestamp>()
                    .is_ok_and(|t| t >= start && end.is_none_or(|e| t <= e))
            })
            .collect();
        let page = matching
            .iter()
            .skip(from)
            .take(max)
            .map(|r| (*r).clone())
            .collect();
        let next = (from + max < matching.len()).then_some(from + max);
        (page, next)
    }

    // ------------------------------------------------------------ writes

    /// Applies a scopes POST delta: at most 100 ids per list, at most 2000
    /// users and 2000 departments in the result.
    pub fn apply_scope_delta(
        &mut self,
        agent_id: i64,
        delta: &ScopeDelta,
    ) -> Result<(), ModelError> {
        if delta.max_list_len() > types::SCOPE_IDS_PER_CALL {
            return Err(ModelError::Invalid(format!(
                "more than {} ids in one list",
                types::SCOPE_IDS_PER_CALL
            )));
        }
        let app = self
            .apps
            .get_mut(&agent_id)
            .ok_or(ModelError::AppNotFound(agent_id))?;
        let mut next = app.visible_scope.clone();
        apply_list(&mut next.user_ids, &delta.add_user_ids, &delta.del_user_ids);
        apply_list(&mut next.dept_ids, &delta.add_dept_ids, &delta.del_dept_ids);
        apply_list(&mut next.role_ids, &delta.add_role_ids, &delta.del_role_ids);
        if let Some(only_admin) = delta.only_admin_visible {
            next.only_admin_visible = only_admin;
        }
        if next.user_ids.len() > SCOPE_MAX_IDS
            || next.dept_ids.len() > SCOPE_MAX_IDS
            || next.role_ids.len() > SCOPE_MAX_IDS
        {
            return Err(ModelError::Invalid(format!(
                "a visible scope holds at most {SCOPE_MAX_IDS} ids per list"
            )));
        }
        app.visible_scope = next;
        Ok(())
    }

    /// Creates or updates (renames, moves) a department.
    pub fn put_department(&mut self, dept: DeptSpec) -> Result<(), ModelError> {
        if dept.id == ROOT_DEPT_ID {
            return Err(ModelError::Invalid(
                "the root department cannot be changed".into(),
            ));
        }
        let old = self.departments.insert(dept.id, dept.clone());
        if let Err(e) = self.check_ancestry(dept.id) {
            match old {
                Some(o) => self.departments.insert(dept.id, o),
                None => self.departments.remove(&dept.id),
            };
            return Err(e);
        }
        self.reindex_children();
        Ok(())
    }

    /// Deletes an empty department (DingTalk refuses to delete one with
    /// sub-departments or members).
    pub fn delete_department(&mut self, id: i64) -> Result<(), ModelError> {
        if !self.departments.contains_key(&id) {
            return Err(ModelError::DeptNotFound(id));
        }
        if self.children.get(&id).is_some_and(|c| !c.is_empty())
            || !self.direct_members(id).is_empty()
        {
            return Err(ModelError::Conflict(format!(
                "department {id} still has sub-departments or members"
            )));
        }
        self.departments.remove(&id);
        self.members.remove(&id);
        self.reindex_children();
        Ok(())
    }

    /// Creates or replaces a member.
    pub fn put_user(&mut self, user: UserSpec) -> Result<(), ModelError> {
        self.check_user(&user)?;
        if let Some(old) = self.users.remove(&user.userid) {
            self.index_user(&old, false);
        } else if let Some(n) = self.generated_number(&user.userid) {
            // Replaced: the given user takes the generated one's place.
            self.gone.insert(n);
        }
        self.index_user(&user, true);
        self.users.insert(user.userid.clone(), user);
        Ok(())
    }

    /// Removes a member and records why (`leave` for resigning, `delete` for an
    /// admin's deletion). The member also leaves every app's visible scope.
    pub fn remove_user(
        &mut self,
        userid: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<LeaveRecord, ModelError> {
        let user = match self.users.remove(userid) {
            Some(user) => {
                self.index_user(&user, false);
                user
            }
            None => {
                let user = self
                    .user_spec(userid)
                    .map(Cow::into_owned)
                    .ok_or_else(|| ModelError::UserNotFound(userid.to_owned()))?;
                if let Some(n) = self.generated_number(userid) {
                    self.gone.insert(n);
                }
                user
            }
        };
        for app in self.apps.values_mut() {
            app.visible_scope.user_ids.retain(|u| u != userid);
        }
        let record = LeaveRecord {
            user_id: user.userid,
            name: user.name,
            state_code: user.mobile.as_ref().map(|_| "86".to_owned()),
            mobile: user.mobile,
            leave_time: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            leave_reason: reason.to_owned(),
        };
        self.leave_records.push(record.clone());
        Ok(record)
    }

    /// Enables/disables an app and/or replaces its visible scope.
    pub fn update_app(
        &mut self,
        agent_id: i64,
        enabled: Option<bool>,
        scope: Option<ScopeSpec>,
    ) -> Result<(), ModelError> {
        let app = self
            .apps
            .get_mut(&agent_id)
            .ok_or(ModelError::AppNotFound(agent_id))?;
        if let Some(e) = enabled {
            app.enabled = e;
        }
        if let Some(s) = scope {
            app.visible_scope = s;
        }
        Ok(())
    }
}

/// `now + ttl`; a life beyond what Instant holds is "never expires".
fn life_end(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

fn apply_list<T: PartialEq + Clone>(list: &mut Vec<T>, add: &[T], del: &[T]) {
    list.retain(|x| !del.contains(x));
    for a in add {
        if !list.contains(a) {
            list.push(a.clone());
        }
    }
}

/// Every corp, the marketplace apps installed in them, and the tokens
/// issued to both.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub corps: BTreeMap<String, Corp>,
    pub suites: Suites,
    tokens: HashMap<String, TokenEntry>,
    /// appKey (or suiteKey) → its current token.
    token_by_app: HashMap<String, String>,
    /// Login codes and user tokens (`authcodes.rs`).
    pub logins: Logins,
}

impl World {
    /// Builds the world from a file's corps and suites.
    pub fn from_file(file: OrgFile) -> Result<Self, ModelError> {
        let mut world = World::default();
        for corp in file.corps {
            world.put_corp(corp)?;
        }
        for suite in file.suites {
            world.put_suite_spec(suite)?;
        }
        Ok(world)
    }

    /// Adds a suite of an org file with its installs.
    fn put_suite_spec(&mut self, spec: SuiteSpec) -> Result<(), ModelError> {
        let key = spec.suite_key.clone();
        self.add_suite(
            &spec.suite_key,
            &spec.suite_secret,
            spec.ticket_period_secs,
            spec.name,
        )?;
        for i in spec.installs {
            let req = InstallRequest {
                agent_id: i.agent_id,
                scope: i.scope,
                admin_user_id: i.admin_user_id,
            };
            self.install_suite(&key, &i.corp_id, req)?;
        }
        Ok(())
    }

    /// Adds a marketplace app; answers its suiteId. Its key is distinct from
    /// every appKey (both are a Stream `clientId`).
    pub fn add_suite(
        &mut self,
        suite_key: &str,
        suite_secret: &str,
        ticket_period_secs: u64,
        name: Option<String>,
    ) -> Result<i64, ModelError> {
        if self.app_key_taken(suite_key) {
            return Err(ModelError::Conflict(format!(
                "{suite_key} is an app's appKey"
            )));
        }
        self.suites
            .add(suite_key, suite_secret, ticket_period_secs, name)
    }

    fn app_key_taken(&self, key: &str) -> bool {
        self.corps
            .values()
            .any(|c| c.apps.values().any(|a| a.app_key == key))
    }

    /// Installs `suite_key` in corp `corp_id`, or updates the install (a
    /// new agentId revokes the corp's tokens of the suite).
    pub fn install_suite(
        &mut self,
        suite_key: &str,
        corp_id: &str,
        req: InstallRequest,
    ) -> Result<Installed, ModelError> {
        let corp = self.corp(corp_id)?;
        let taken: Vec<i64> = corp.apps.keys().copied().collect();
        let admin = corp.first_admin();
        let suite_id = self.suites.get(suite_key)?.suite_id;
        let done = self
            .suites
            .install(suite_key, corp_id, req, &taken, admin, || {
                format!("pc-{suite_id}-{corp_id}")
            })?;
        if done.agent_changed {
            self.revoke_install_tokens(suite_key, corp_id);
        }
        Ok(done)
    }

    /// Uninstalls `suite_key` from `corp_id`: its tokens there are revoked.
    pub fn uninstall_suite(
        &mut self,
        suite_key: &str,
        corp_id: &str,
    ) -> Result<super::suites::Install, ModelError> {
        let install = self.suites.uninstall(suite_key, corp_id)?;
        self.revoke_install_tokens(suite_key, corp_id);
        Ok(install)
    }

    fn revoke_install_tokens(&mut self, suite_key: &str, corp_id: &str) {
        self.tokens.retain(|_, t| {
            !(t.caller.kind == CallerKind::Marketplace
                && t.caller.app_key == suite_key
                && t.caller.corp_id == corp_id)
        });
    }

    /// Adds or replaces a corp. App keys must be unique across corps.
    pub fn put_corp(&mut self, spec: CorpSpec) -> Result<(), ModelError> {
        self.insert_corp(Corp::from_spec(spec)?)
    }

    fn insert_corp(&mut self, corp: Corp) -> Result<(), ModelError> {
        for app in corp.apps.values() {
            if self.suites.contains(&app.app_key) {
                return Err(ModelError::Conflict(format!(
                    "appKey {} is a suite's key",
                    app.app_key
                )));
            }
            if self.suites.agent_in_use(&corp.corp_id, app.agent_id) {
                return Err(ModelError::Conflict(format!(
                    "agentId {} is a marketplace app's in {}",
                    app.agent_id, corp.corp_id
                )));
            }
            if self.corps.values().any(|c| {
                c.corp_id != corp.corp_id && c.apps.values().any(|a| a.app_key == app.app_key)
            }) {
                return Err(ModelError::Conflict(format!(
                    "appKey {} belongs to another corp",
                    app.app_key
                )));
            }
        }
        self.revoke_corp_tokens(&corp.corp_id);
        self.corps.insert(corp.corp_id.clone(), corp);
        Ok(())
    }

    /// Adds or replaces a generated corp ([`generate_lazily`]), its users made
    /// on demand. `suffix` (e.g. `"2"`) is appended to its corp id, app key and
    /// secret, so that several generated corps can be served side by side.
    pub fn put_generated(&mut self, spec: GenSpec, suffix: &str) -> Result<(), ModelError> {
        let (mut corp, users) = generate_lazily(spec);
        corp.corp_id.push_str(suffix);
        for app in &mut corp.apps {
            app.app_key.push_str(suffix);
            app.app_secret.push_str(suffix);
        }
        let corp = Corp::generated(corp, users)?;
        self.insert_corp(corp)
    }

    /// Adds an app to a corp. Agent ids are unique in the corp (marketplace
    /// installs included), app keys in the world (suite keys included).
    pub fn add_app(&mut self, corp_id: &str, app: AppSpec) -> Result<(), ModelError> {
        if self.app_key_taken(&app.app_key) || self.suites.contains(&app.app_key) {
            return Err(ModelError::Conflict(format!(
                "appKey {} exists",
                app.app_key
            )));
        }
        if self.suites.agent_in_use(corp_id, app.agent_id) {
            return Err(ModelError::Conflict(format!(
                "agentId {} is a marketplace app's",
                app.agent_id
            )));
        }
        let corp = self.corp_mut(corp_id)?;
        if corp.apps.contains_key(&app.agent_id) {
            return Err(ModelError::Conflict(format!(
                "agentId {} exists",
                app.agent_id
            )));
        }
        corp.apps.insert(app.agent_id, app);
        Ok(())
    }

    pub fn corp(&self, corp_id: &str) -> Result<&Corp, ModelError> {
        self.corps
            .get(corp_id)
            .ok_or_else(|| ModelError::CorpNotFound(corp_id.to_owned()))
    }

    pub fn corp_mut(&mut self, corp_id: &str) -> Result<&mut Corp, ModelError> {
        self.corps
            .get_mut(corp_id)
            .ok_or_else(|| ModelError::CorpNotFound(corp_id.to_owned()))
    }

    fn revoke_corp_tokens(&mut self, corp_id: &str) {
        self.tokens.retain(|_, t| t.caller.corp_id != corp_id);
        let tokens = &self.tokens;
        self.token_by_app.retain(|_, tok| tokens.contains_key(tok));
    }

    /// Issues the app's token (`oauth2/accessToken`): the same token while it is
    /// valid, with its life extended to `ttl`; a new one after expiry. `None`
    /// when the key is unknown or the secret wrong.
    pub fn issue_token(
        &mut self,
        app_key: &str,
        app_secret: &str,
        now: Instant,
        ttl: Duration,
        fresh: impl FnOnce() -> String,
    ) -> Option<String> {
        let caller = self.corps.values().find_map(|c| {
            c.apps
                .values()
                .find(|a| a.app_key == app_key && a.app_secret == app_secret)
                .map(|a| Caller {
                    corp_id: c.corp_id.clone(),
                    agent_id: a.agent_id,
                    app_key: a.app_key.clone(),
                    kind: CallerKind::InternalApp,
                })
        })?;
        Some(self.reuse_or_issue(caller, now, ttl, fresh))
    }

    /// The caller's current token, extended to `ttl`, or a new one after
    /// expiry (keyed by the caller's appKey or suiteKey).
    fn reuse_or_issue(
        &mut self,
        caller: Caller,
        now: Instant,
        ttl: Duration,
        fresh: impl FnOnce() -> String,
    ) -> String {
        let key = caller.app_key.clone();
        let current = self
            .token_by_app
            .get(&key)
            .filter(|t| self.tokens.get(*t).is_some_and(|e| e.expires_at > now))
            .cloned();
        let token = match current {
            Some(t) => t,
            None => {
                if let Some(old) = self.token_by_app.remove(&key) {
                    self.tokens.remove(&old);
                }
                fresh()
            }
        };
        self.tokens.insert(
            token.clone(),
            TokenEntry {
                caller,
                expires_at: life_end(now, ttl),
            },
        );
        self.token_by_app.insert(key, token.clone());
        token
    }

    /// A suite's own token (`oauth2/suiteAccessToken`): key, secret and the
    /// current ticket. Like an internal app's, the same token while it is
    /// valid, extended.
    pub fn issue_suite_token(
        &mut self,
        suite_key: &str,
        suite_secret: &str,
        suite_ticket: &str,
        now: Instant,
        ttl: Duration,
        fresh: impl FnOnce() -> String,
    ) -> Result<String, SuiteAuthError> {
        let suite = self
            .suites
            .authenticate(suite_key, suite_secret, suite_ticket)?;
        let caller = Caller {
            corp_id: String::new(),
            agent_id: 0,
            app_key: suite.suite_key.clone(),
            kind: CallerKind::Suite,
        };
        Ok(self.reuse_or_issue(caller, now, ttl, fresh))
    }

    /// A suite's token in corp `auth_corp_id` (`oauth2/corpAccessToken`):
    /// key, secret, the current ticket, and an install. A new token on every
    /// call (the earlier ones stay valid until they expire).
    #[allow(clippy::too_many_arguments)]
    pub fn issue_corp_token(
        &mut self,
        suite_key: &str,
        suite_secret: &str,
        auth_corp_id: &str,
        suite_ticket: &str,
        now: Instant,
        ttl: Duration,
        fresh: impl FnOnce() -> String,
    ) -> Result<String, SuiteAuthError> {
        let suite = self
            .suites
            .authenticate(suite_key, suite_secret, suite_ticket)?;
        let install = suite
            .installs
            .get(auth_corp_id)
            .filter(|_| self.corps.contains_key(auth_corp_id))
            .ok_or(SuiteAuthError::NotInstalled)?;
        let caller = Caller {
            corp_id: auth_corp_id.to_owned(),
            agent_id: install.agent_id,
            app_key: suite.suite_key.clone(),
            kind: CallerKind::Marketplace,
        };
        // Every call adds one: forget the expired ones as we go.
        self.tokens.retain(|_, e| e.expires_at > now);
        let token = fresh();
        self.tokens.insert(
            token.clone(),
            TokenEntry {
                caller,
                expires_at: life_end(now, ttl),
            },
        );
        Ok(token)
    }

    /// Who holds `token`, if it is valid at `now`.
    pub fn check_token(&self, token: Option<&str>, now: Instant) -> Result<Caller, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        match self.tokens.get(token) {
            Some(e) if e.expires_at > now => Ok(e.caller.clone()),
            _ => Err(TokenError::Invalid),
        }
    }

    /// Expires every token at once, users' included (admin: simulate a
    /// mass expiry). Login codes are kept.
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
        self.token_by_app.clear();
        self.logins.expire_user_tokens();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corp() -> Corp {
        let file = OrgFile::parse(
            r#"
corps:
  - corpId: dingacme
    name: ACME
    apps:
      - {agentId: 1001, appKey: k, appSecret: s, visibleScope: {deptIds: [1], userIds: [u2]}}
    departments:
      - {id: 2, name: Sales}
      - {id: 3, name: East, parentId: 2}
    users:
      - {userid: u1, name: A, deptIds: [2]}
      - {userid: u2, name: B, deptIds: [2, 3]}
      - {userid: u3, name: C, deptIds: [3]}
"#,
        )
        .unwrap();
        Corp::from_spec(file.corps.into_iter().next().unwrap()).unwrap()
    }

    /// Every read of a corp: each department's pages, counts and listid, and
    /// each user by userid.
    fn reads(c: &Corp, userids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut depts: Vec<i64> = c.departments.keys().copied().collect();
        depts.push(ROOT_DEPT_ID);
        for d in depts {
            let mut cursor = 0;
            loop {
                let page = c.member_page(d, cursor, 7).unwrap();
                out.push(format!("{d}@{cursor}: {:?}", page.list));
                match page.next_cursor {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
            out.push(format!("{d}: {:?}", c.department(d).unwrap()));
            out.push(format!("{d} ids: {:?}", c.member_ids(d).unwrap()));
        }
        for u in userids {
            out.push(format!("{u}: {:?}", c.user(u)));
        }
        out.push(format!("{} users", c.user_count()));
        out
    }

    #[test]
    fn a_generated_corp_reads_and_changes_like_its_materialized_copy() {
        use crate::sim::generate::{GenSpec, generate, generate_lazily};
        let spec = GenSpec {
            departments: 40,
            users: 600,
            seed: 5,
        };
        let (corp, users) = generate_lazily(spec);
        let mut lazy = Corp::generated(corp, users).unwrap();
        let mut full = Corp::from_spec(generate(spec)).unwrap();
        assert_eq!(lazy.to_spec(), full.to_spec());
        let userids: Vec<String> = full
            .users
            .keys()
            .cloned()
            .chain(["nobody".into()])
            .collect();
        assert_eq!(reads(&lazy, &userids), reads(&full, &userids));
        // Replace a generated user (moved, renamed), remove two, add one.
        let mut moved = full.users["u000010"].clone();
        moved.dept_ids = vec![3, 7];
        moved.name = "Moved".into();
        let newcomer = UserSpec {
            userid: "a-newcomer".into(),
            name: "New".into(),
            dept_ids: vec![full.users["u000001"].dept_ids[0]],
            ..Default::default()
        };
        for c in [&mut lazy, &mut full] {
            c.put_user(moved.clone()).unwrap();
            c.put_user(newcomer.clone()).unwrap();
            c.remove_user("u000020", "leave", Timestamp::UNIX_EPOCH)
                .unwrap();
            c.remove_user("u000010", "delete", Timestamp::UNIX_EPOCH)
                .unwrap();
            assert!(
                c.remove_user("u000020", "leave", Timestamp::UNIX_EPOCH)
                    .is_err()
            );
        }
        let userids: Vec<String> = userids.into_iter().chain(["a-newcomer".into()]).collect();
        assert_eq!(reads(&lazy, &userids), reads(&full, &userids));
        assert_eq!(lazy.leave_records, full.leave_records);
        assert_eq!(lazy.to_spec(), full.to_spec());
    }

    #[test]
    fn a_user_who_left_disappears_from_lists_and_get_and_joins_the_leave_records() {
        let mut c = corp();
        c.remove_user("u2", "leave", Timestamp::UNIX_EPOCH).unwrap();
        let ids = |d| {
            c.member_page(d, 0, 100)
                .unwrap()
                .list
                .into_iter()
                .map(|u| u.userid)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(2), vec!["u1"]);
        assert_eq!(ids(3), vec!["u3"]);
        assert_eq!(c.user("u2"), Err(ModelError::UserNotFound("u2".into())));
        assert_eq!(c.leave_records.len(), 1);
        assert_eq!(c.leave_records[0].leave_reason, "leave");
        assert!(c.scopes(1001).unwrap().user_ids.is_empty());
    }

    #[test]
    fn a_scope_covers_its_departments_with_their_sub_departments_and_its_users() {
        let c = corp();
        let u = |id: &str| c.member(id).unwrap();
        let scope = |depts: &[i64], users: &[&str]| ScopeSpec {
            dept_ids: depts.to_vec(),
            user_ids: users.iter().map(|s| s.to_string()).collect(),
            ..ScopeSpec::default()
        };
        assert!(c.in_scope(&scope(&[1], &[]), &u("u3")), "everyone");
        assert!(
            c.in_scope(&scope(&[2], &[]), &u("u3")),
            "East is under Sales"
        );
        assert!(
            !c.in_scope(&scope(&[3], &[]), &u("u1")),
            "u1 is in Sales only"
        );
        assert!(c.in_scope(&scope(&[3], &["u1"]), &u("u1")), "listed");
        assert!(!c.in_scope(&scope(&[], &[]), &u("u1")));
        let mut admin = u("u1");
        admin.sub_admin = true;
        let only_admins = ScopeSpec {
            only_admin_visible: true,
            ..scope(&[1], &[])
        };
        assert!(c.in_scope(&only_admins, &admin));
        assert!(!c.in_scope(&only_admins, &u("u2")));
    }

    #[test]
    fn a_unionid_maps_to_its_member_given_or_generated() {
        let c = corp();
        assert_eq!(c.userid_by_unionid("un-dingacme-u2").as_deref(), Some("u2"));
        assert_eq!(c.userid_by_unionid("un-dingother-u2"), None);
        let (spec, users) = crate::sim::generate::generate_lazily(crate::sim::generate::GenSpec {
            departments: 5,
            users: 50,
            seed: 1,
        });
        let g = Corp::generated(spec, users).unwrap();
        let someone = g.to_spec().users.swap_remove(6);
        let unionid = g.unionid_of(&someone);
        assert_eq!(
            g.userid_by_unionid(&unionid).as_deref(),
            Some(someone.userid.as_str())
        );
        assert_eq!(g.userid_by_unionid("un-nobody"), None);
    }

    #[test]
    fn scope_delta_adds_and_removes_without_duplicates() {
        let mut c = corp();
        let delta = ScopeDelta {
            add_user_ids: vec!["u1".into(), "u2".into()],
            del_dept_ids: vec![1],
            add_dept_ids: vec![3],
            ..Default::default()
        };
        c.apply_scope_delta(1001, &delta).unwrap();
        let s = c.scopes(1001).unwrap();
        assert_eq!(s.user_ids, vec!["u2", "u1"]);
        assert_eq!(s.dept_ids, vec![3]);
    }

    #[test]
    fn scope_delta_with_more_than_100_ids_in_a_list_is_refused() {
        let mut c = corp();
        let delta = ScopeDelta {
            add_user_ids: (0..101).map(|i| format!("x{i}")).collect(),
            ..Default::default()
        };
        assert!(matches!(
            c.apply_scope_delta(1001, &delta),
            Err(ModelError::Invalid(_))
        ));
        assert_eq!(c.scopes(1001).unwrap().user_ids, vec!["u2"]);
    }

    #[test]
    fn member_pages_follow_the_cursor_and_the_last_has_no_next_cursor() {
        let c = corp();
        let p1 = c.member_page(2, 0, 1).unwrap();
        assert!(p1.has_more);
        assert_eq!(p1.next_cursor, Some(1));
        let p2 = c.member_page(2, 1, 1).unwrap();
        assert!(!p2.has_more);
        assert_eq!(p2.next_cursor, None);
        assert_eq!(p2.list[0].userid, "u2");
        assert_eq!(p2.list[0].dept_id_list, vec![2, 3]);
    }

    #[test]
    fn department_cycles_and_missing_parents_are_refused() {
        let mut c = corp();
        let moved = DeptSpec {
            id: 2,
            name: "Sales".into(),
            parent_id: 3,
            order: 0,
        };
        assert!(matches!(
            c.put_department(moved),
            Err(ModelError::Invalid(_))
        ));
        assert_eq!(c.departments[&2].parent_id, 1);
        let orphan = DeptSpec {
            id: 9,
            name: "X".into(),
            parent_id: 42,
            order: 0,
        };
        assert!(c.put_department(orphan).is_err());
        assert!(!c.departments.contains_key(&9));
    }

    #[test]
    fn non_empty_department_cannot_be_deleted() {
        let mut c = corp();
        assert!(matches!(
            c.delete_department(3),
            Err(ModelError::Conflict(_))
        ));
    }

    fn marketplace_world() -> World {
        let mut w = World::from_file(OrgFile {
            corps: vec![corp().to_spec()],
            ..OrgFile::default()
        })
        .unwrap();
        w.add_suite("sk", "ss", 0, None).unwrap();
        w.suites
            .issue_ticket("sk", Instant::now(), || "t1".into())
            .unwrap();
        w
    }

    #[test]
    fn a_corp_token_is_new_on_every_call_and_answers_for_the_install() {
        let mut w = marketplace_world();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            format!("c{n}")
        };
        assert_eq!(
            w.issue_corp_token("sk", "ss", "dingacme", "t1", t0, ttl, &mut fresh),
            Err(SuiteAuthError::NotInstalled),
            "not installed"
        );
        w.install_suite("sk", "dingacme", InstallRequest::default())
            .unwrap();
        let a = w
            .issue_corp_token("sk", "ss", "dingacme", "t1", t0, ttl, &mut fresh)
            .unwrap();
        let b = w
            .issue_corp_token("sk", "ss", "dingacme", "t1", t0, ttl, &mut fresh)
            .unwrap();
        assert_ne!(a, b);
        let caller = w.check_token(Some(&a), t0).unwrap();
        assert_eq!(caller.kind, CallerKind::Marketplace);
        assert_eq!(caller.corp_id, "dingacme");
        assert_eq!(caller.agent_id, super::super::suites::FIRST_AGENT_ID);
        assert_eq!(caller.limit_key(), "sk@dingacme");
        assert_eq!(
            w.issue_corp_token("sk", "ss", "nowhere", "t1", t0, ttl, &mut fresh),
            Err(SuiteAuthError::NotInstalled)
        );
        assert_eq!(
            w.issue_corp_token("sk", "ss", "dingacme", "t0", t0, ttl, &mut fresh),
            Err(SuiteAuthError::Ticket)
        );
        w.uninstall_suite("sk", "dingacme").unwrap();
        assert_eq!(w.check_token(Some(&a), t0), Err(TokenError::Invalid));
        assert_eq!(w.check_token(Some(&b), t0), Err(TokenError::Invalid));
        assert_eq!(
            w.issue_corp_token("sk", "ss", "dingacme", "t1", t0, ttl, &mut fresh),
            Err(SuiteAuthError::NotInstalled),
            "uninstalled"
        );
    }

    #[test]
    fn a_suite_token_needs_the_current_ticket_and_is_reused_while_valid() {
        let mut w = marketplace_world();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let a = w
            .issue_suite_token("sk", "ss", "t1", t0, ttl, || "s1".into())
            .unwrap();
        let b = w
            .issue_suite_token("sk", "ss", "t1", t0, ttl, || "s2".into())
            .unwrap();
        assert_eq!(a, b);
        let caller = w.check_token(Some(&a), t0).unwrap();
        assert_eq!(
            (caller.kind, caller.limit_key()),
            (CallerKind::Suite, "sk".into())
        );
        w.suites.issue_ticket("sk", t0, || "t2".into()).unwrap();
        assert_eq!(
            w.issue_suite_token("sk", "ss", "t1", t0, ttl, || "s3".into()),
            Err(SuiteAuthError::Ticket)
        );
        assert!(
            w.check_token(Some(&a), t0).is_ok(),
            "a token outlives its ticket"
        );
        assert_eq!(
            w.issue_suite_token("sk", "bad", "t2", t0, ttl, || "s3".into()),
            Err(SuiteAuthError::Secret)
        );
    }

    #[test]
    fn app_keys_suite_keys_and_agent_ids_do_not_collide() {
        let mut w = marketplace_world();
        assert!(matches!(
            w.add_suite("k", "x", 0, None),
            Err(ModelError::Conflict(_))
        ));
        w.install_suite(
            "sk",
            "dingacme",
            InstallRequest {
                agent_id: Some(5000),
                ..InstallRequest::default()
            },
        )
        .unwrap();
        let app = |agent_id, key: &str| AppSpec {
            agent_id,
            app_key: key.into(),
            app_secret: "x".into(),
            name: String::new(),
            enabled: true,
            visible_scope: ScopeSpec::default(),
        };
        assert!(w.add_app("dingacme", app(5000, "new-key")).is_err());
        assert!(w.add_app("dingacme", app(5001, "sk")).is_err());
        assert!(w.add_app("dingacme", app(5001, "new-key")).is_ok());
        assert!(matches!(
            w.install_suite("sk", "nowhere", InstallRequest::default()),
            Err(ModelError::CorpNotFound(_))
        ));
    }

    #[test]
    fn an_org_file_installs_its_suites() {
        let file = OrgFile::parse(
            r#"
corps:
  - corpId: dingacme
    apps: [{agentId: 1001, appKey: k, appSecret: s}]
    users: [{userid: boss, name: B, deptIds: [1], admin: true}]
suites:
  - {suiteKey: sk, suiteSecret: ss, installs: [{corpId: dingacme}]}
"#,
        )
        .unwrap();
        let w = World::from_file(file).unwrap();
        let i = w.suites.install_of("sk", "dingacme").unwrap();
        assert_eq!(i.admin_user_id.as_deref(), Some("boss"));
        assert_eq!(i.scope.dept_ids, vec![1]);
        let bad = OrgFile::parse(
            "suites: [{suiteKey: sk, suiteSecret: ss, installs: [{corpId: nowhere}]}]",
        )
        .unwrap();
        assert!(World::from_file(bad).is_err());
    }

    #[test]
    fn token_is_reused_and_extended_while_valid_and_renewed_after_expiry() {
        let mut w = World::from_file(OrgFile {
            corps: vec![corp().to_spec()],
            ..OrgFile::default()
        })
        .unwrap();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            format!("t{n}")
        };
        let a = w.issue_token("k", "s", t0, ttl, &mut fresh).unwrap();
        let b = w
            .issue_token("k", "s", t0 + Duration::from_secs(8), ttl, &mut fresh)
            .unwrap();
        assert_eq!(a, b);
        // Extended: still valid 17 s after the first issue.
        assert!(
            w.check_token(Some(&a), t0 + Duration::from_secs(17))
                .is_ok()
        );
        assert_eq!(
            w.check_token(Some(&a), t0 + Duration::from_secs(18)),
            Err(TokenError::Invalid)
        );
        let c = w
            .issue_token("k", "s", t0 + Duration::from_secs(30), ttl, &mut fresh)
            .unwrap();
        assert_ne!(a, c);
        assert!(w.issue_token("k", "wrong", t0, ttl, &mut fresh).is_none());
        assert_eq!(w.check_token(None, t0), Err(TokenError::Missing));
    }
}
