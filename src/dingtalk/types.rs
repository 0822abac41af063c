//! DingTalk wire types: the JSON bodies of the endpoints dingbind uses, as the
//! reference (`dingtalk-api.md`) names them. Shared by the client (which reads
//! them) and the simulator (which writes them), so both agree by construction.
//!
//! Every optional or unconfirmed field is `#[serde(default)]`, so a response that
//! leaves it out (for example `next_cursor` on the last page) still decodes.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

/// DingTalk's id of an organization's root department (the whole organization).
pub use crate::core::scope::ROOT_DEPT as ROOT_DEPT_ID;
/// Largest `size` that `topapi/v2/user/list` accepts.
pub const USER_LIST_MAX_SIZE: u32 = 100;
/// Largest number of ids per list in one scopes POST.
pub const SCOPE_IDS_PER_CALL: usize = 100;
/// Largest `maxResults` that `empLeaveRecords` accepts.
pub const LEAVE_RECORDS_MAX_RESULTS: u32 = 50;
/// Header that carries the token on the v1.0 family.
pub const V1_TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// The two API families: where an endpoint lives and how it reports errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `oapi.dingtalk.com/topapi/...`: token in the query, HTTP 200 + `errcode`.
    Topapi,
    /// `api.dingtalk.com/v1.0/...`: token in a header, HTTP 4xx/5xx + `{code,message}`.
    V1,
}

/// One DingTalk API, the unit of rate limiting (per app, per API) and of counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    AccessToken,
    CorpToken,
    DeptListSub,
    DeptGet,
    UserList,
    UserGet,
    UserListId,
    ScopesGet,
    ScopesUpdate,
    AllInnerApps,
    EmpLeaveRecords,
    SuiteToken,
    AuthCorpToken,
    AuthInfo,
    AuthScopes,
    UserInfoByCode,
    UserAccessToken,
    UsersMe,
    UserByUnionId,
}

impl Api {
    /// Every API, in a stable order (for counters).
    pub const ALL: [Api; 19] = [
        Api::AccessToken,
        Api::CorpToken,
        Api::DeptListSub,
        Api::DeptGet,
        Api::UserList,
        Api::UserGet,
        Api::UserListId,
        Api::ScopesGet,
        Api::ScopesUpdate,
        Api::AllInnerApps,
        Api::EmpLeaveRecords,
        Api::SuiteToken,
        Api::AuthCorpToken,
        Api::AuthInfo,
        Api::AuthScopes,
        Api::UserInfoByCode,
        Api::UserAccessToken,
        Api::UsersMe,
        Api::UserByUnionId,
    ];

    /// Position in [`Api::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn family(self) -> Family {
        match self {
            Api::DeptListSub
            | Api::DeptGet
            | Api::UserList
            | Api::UserGet
            | Api::UserListId
            | Api::AuthScopes
            | Api::UserInfoByCode
            | Api::UserByUnionId => Family::Topapi,
            _ => Family::V1,
        }
    }

    /// The HTTP path, with `{agentId}` where the scopes APIs take the agent id.
    pub fn path(self) -> &'static str {
        match self {
            Api::AccessToken => "/v1.0/oauth2/accessToken",
            Api::CorpToken => "/v1.0/oauth2/{corpId}/token",
            Api::DeptListSub => "/topapi/v2/department/listsub",
            Api::DeptGet => "/topapi/v2/department/get",
            Api::UserList => "/topapi/v2/user/list",
            Api::UserGet => "/topapi/v2/user/get",
            Api::UserListId => "/topapi/user/listid",
            Api::ScopesGet | Api::ScopesUpdate => "/v1.0/microApp/apps/{agentId}/scopes",
            Api::AllInnerApps => "/v1.0/microApp/allInnerApps",
            Api::EmpLeaveRecords => "/v1.0/contact/empLeaveRecords",
            Api::SuiteToken => "/v1.0/oauth2/suiteAccessToken",
            Api::AuthCorpToken => "/v1.0/oauth2/corpAccessToken",
            Api::AuthInfo => "/v1.0/oauth2/apps/authInfo",
            Api::AuthScopes => "/auth/scopes",
            Api::UserInfoByCode => "/topapi/v2/user/getuserinfo",
            Api::UserAccessToken => "/v1.0/oauth2/userAccessToken",
            Api::UsersMe => "/v1.0/contact/users/me",
            Api::UserByUnionId => "/topapi/user/getbyunionid",
        }
    }

    /// A short stable name for logs, errors and counters, e.g. `topapi/v2/user/list`.
    pub fn name(self) -> &'static str {
        match self {
            Api::AccessToken => "v1.0/oauth2/accessToken",
            Api::CorpToken => "v1.0/oauth2/{corpId}/token",
            Api::DeptListSub => "topapi/v2/department/listsub",
            Api::DeptGet => "topapi/v2/department/get",
            Api::UserList => "topapi/v2/user/list",
            Api::UserGet => "topapi/v2/user/get",
            Api::UserListId => "topapi/user/listid",
            Api::ScopesGet => "GET v1.0/microApp/apps/{agentId}/scopes",
            Api::ScopesUpdate => "POST v1.0/microApp/apps/{agentId}/scopes",
            Api::AllInnerApps => "v1.0/microApp/allInnerApps",
            Api::EmpLeaveRecords => "v1.0/contact/empLeaveRecords",
            Api::SuiteToken => "v1.0/oauth2/suiteAccessToken",
            Api::AuthCorpToken => "v1.0/oauth2/corpAccessToken",
            Api::AuthInfo => "v1.0/oauth2/apps/authInfo",
            Api::AuthScopes => "auth/scopes",
            Api::UserInfoByCode => "topapi/v2/user/getuserinfo",
            Api::UserAccessToken => "v1.0/oauth2/userAccessToken",
            Api::UsersMe => "v1.0/contact/users/me",
            Api::UserByUnionId => "topapi/user/getbyunionid",
        }
    }

    /// The token endpoints, called without a token: the app tokens' and
    /// the user token's (`userAccessToken`, which takes a login code).
    pub fn issues_tokens(self) -> bool {
        matches!(
            self,
            Api::AccessToken
                | Api::CorpToken
                | Api::SuiteToken
                | Api::AuthCorpToken
                | Api::UserAccessToken
        )
    }

    /// Whether the call carries the app's token (fetched and cached by the
    /// client, refreshed when DingTalk rejects it). Not the token endpoints,
    /// nor `users/me`, which carries the token of the user who logged in.
    pub fn uses_app_token(self) -> bool {
        !self.issues_tokens() && !matches!(self, Api::UsersMe)
    }

    /// A topapi answer whose fields sit beside `errcode` instead of in a
    /// `result` (`auth/scopes`).
    pub fn flat_answer(self) -> bool {
        matches!(self, Api::AuthScopes)
    }

    /// Whether sending the same request twice has the same effect as once.
    /// The scopes POST changes state; the two calls that exchange a login
    /// code use it up (a code is single-use), so a second send after a 5xx
    /// or a timeout would be refused even when the first one worked.
    pub fn idempotent(self) -> bool {
        !matches!(
            self,
            Api::ScopesUpdate | Api::UserInfoByCode | Api::UserAccessToken
        )
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------- envelopes

/// The topapi envelope: HTTP 200 with `errcode` (0 on success) and `result`.
/// An `errcode` 88 carries its real cause in `sub_code`, a string.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopResponse<T> {
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_msg: Option<String>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The v1.0 error body, sent with HTTP 4xx/5xx.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct V1Error {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestid: Option<String>,
}

// ---------------------------------------------------------------- token

/// Body of `POST /v1.0/oauth2/accessToken`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenRequest {
    pub app_key: String,
    pub app_secret: Secret,
}

impl fmt::Debug for AccessTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenRequest")
            .field("app_key", &self.app_key)
            .field("app_secret", &self.app_secret)
            .finish()
    }
}

/// Answer of `POST /v1.0/oauth2/accessToken`: the token and its life in seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResponse {
    pub access_token: Secret,
    pub expire_in: i64,
}

/// Body of `POST /v1.0/oauth2/suiteAccessToken`: a marketplace app's (a
/// suite's) own token, for the calls about its installs. The answer is an
/// [`AccessTokenResponse`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteTokenRequest {
    pub suite_key: String,
    pub suite_secret: Secret,
    pub suite_ticket: Secret,
}

impl fmt::Debug for SuiteTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuiteTokenRequest")
            .field("suite_key", &self.suite_key)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1.0/oauth2/corpAccessToken`: the token a suite uses in one
/// enterprise that installed it. The answer is an [`AccessTokenResponse`];
/// each call gives a new token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCorpTokenRequest {
    pub suite_key: String,
    pub suite_secret: Secret,
    pub auth_corp_id: String,
    pub suite_ticket: Secret,
}

impl fmt::Debug for AuthCorpTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCorpTokenRequest")
            .field("suite_key", &self.suite_key)
            .field("auth_corp_id", &self.auth_corp_id)
            .finish_non_exhaustive()
    }
}

/// Answer of `GET /v1.0/oauth2/apps/authInfo?authCorpId=`: what an enterprise
/// installed of the suite. Every field is lenient (defaults when absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthInfo {
    #[serde(default)]
    pub auth_app_info: AuthAppInfo,
    #[serde(default)]
    pub auth_corp_info: AuthCorpInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user_info: Option<AuthUserInfo>,
}

impl AuthInfo {
    /// The installed app: the first agent of the list (a suite has one
    /// micro-app per enterprise).
    pub fn agent(&self) -> Option<&AuthAgent> {
        self.auth_app_info.agent_list.first()
    }
}

/// `authAppInfo`: the suite's apps in the enterprise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthAppInfo {
    #[serde(default)]
    pub agent_list: Vec<AuthAgent>,
}

/// One installed app: its agentId in the enterprise and its admins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthAgent {
    pub agent_id: i64,
    #[serde(default)]
    pub agent_name: String,
    #[serde(default)]
    pub app_id: i64,
    #[serde(default)]
    pub admin_list: Vec<String>,
}

/// `authCorpInfo`: the enterprise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCorpInfo {
    #[serde(default, alias = "corpid")]
    pub corp_id: String,
    #[serde(default)]
    pub corp_name: String,
}

/// `authUserInfo`: who installed the app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUserInfo {
    #[serde(default)]
    pub user_id: String,
}

/// Answer of `GET /auth/scopes` (its fields beside `errcode`): the contacts
/// a token may read. For a marketplace app this is the visible scope the
/// enterprise's admin set; `authed_dept: [1]` is everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthScopes {
    #[serde(default)]
    pub auth_org_scopes: AuthOrgScopes,
    #[serde(default)]
    pub auth_user_field: Vec<String>,
}

/// `auth_org_scopes`: departments (each with its sub-departments) and users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthOrgScopes {
    #[serde(default)]
    pub authed_dept: Vec<i64>,
    #[serde(default)]
    pub authed_user: Vec<String>,
}

/// Body of `POST /v1.0/oauth2/{corpId}/token`, the unified app token, which
/// fails unless the app belongs to organization `corpId`.
#[derive(Clone, Serialize, Deserialize)]
pub struct CorpTokenRequest {
    pub client_id: String,
    pub client_secret: Secret,
    pub grant_type: String,
}

impl fmt::Debug for CorpTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorpTokenRequest")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("grant_type", &self.grant_type)
            .finish()
    }
}

/// Answer of `POST /v1.0/oauth2/{corpId}/token` (snake_case, unlike `accessToken`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpTokenResponse {
    pub access_token: Secret,
    pub expires_in: i64,
}

// ---------------------------------------------------------------- departments

/// Body of `listsub` and `department/get`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeptRequest {
    pub dept_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A department as `listsub` returns it (one level of children), and as
/// `department/get` returns it (which adds `order`, managers and counts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub dept_id: i64,
    #[serde(default)]
    pub name: String,
    /// Parent department; unconfirmed for the root itself, so optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<i64>,
    #[serde(default)]
    pub create_dept_group: bool,
    #[serde(default)]
    pub auto_add_user: bool,
    /// Order within the parent: `department/get` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    /// Members including sub-departments: `department/get` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// Direct members: `department/get` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owning_member_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dept_manager_userid_list: Vec<String>,
}

// ---------------------------------------------------------------- users

/// Body of `topapi/v2/user/list`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserListRequest {
    pub dept_id: i64,
    pub cursor: i64,
    pub size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// `result` of `topapi/v2/user/list`: one page of direct members.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserListResult {
    #[serde(default)]
    pub has_more: bool,
    /// Cursor of the next page; may be absent on the last page (unconfirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
    #[serde(default)]
    pub list: Vec<User>,
}

/// Body of `topapi/v2/user/get`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserGetRequest {
    pub userid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Body of `topapi/user/listid`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserListIdRequest {
    pub dept_id: i64,
}

/// Result of `topapi/user/listid`: the userids of a department's direct
/// members, all in one answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserListIdResult {
    #[serde(default)]
    pub userid_list: Vec<String>,
}

/// A member as `v2/user/list` (list item) and `v2/user/get` (result) return it.
/// Fields the app has no permission for are absent, hence the options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub userid: String,
    #[serde(default)]
    pub unionid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_number: Option<String>,
    /// All of the user's departments (not only the listed one).
    #[serde(default)]
    pub dept_id_list: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hired_date: Option<i64>,
    /// Has activated DingTalk.
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub boss: bool,
    /// Leader of the listed department (`user/list` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
}

// ---------------------------------------------------------------- scopes

/// `result` of `GET /v1.0/microApp/apps/{agentId}/scopes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppScopes {
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub dept_ids: Vec<i64>,
    #[serde(default)]
    pub role_ids: Vec<i64>,
    #[serde(default)]
    pub only_admin_visible: bool,
}

/// Wrapper `{"result": …}` used by both scopes endpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResultWrapper<T> {
    pub result: T,
}

/// Body of `POST /v1.0/microApp/apps/{agentId}/scopes`: a delta, at most
/// [`SCOPE_IDS_PER_CALL`] ids per list per call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeDelta {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub del_user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_dept_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub del_dept_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_role_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub del_role_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_admin_visible: Option<bool>,
}

impl ScopeDelta {
    /// True when the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.add_user_ids.is_empty()
            && self.del_user_ids.is_empty()
            && self.add_dept_ids.is_empty()
            && self.del_dept_ids.is_empty()
            && self.add_role_ids.is_empty()
            && self.del_role_ids.is_empty()
            && self.only_admin_visible.is_none()
    }

    /// The largest list in the delta.
    pub fn max_list_len(&self) -> usize {
        [
            self.add_user_ids.len(),
            self.del_user_ids.len(),
            self.add_dept_ids.len(),
            self.del_dept_ids.len(),
            self.add_role_ids.len(),
            self.del_role_ids.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Splits the delta into calls of at most `per_call` ids per list. The
    /// `onlyAdminVisible` flag travels with the first call. An empty delta
    /// gives no calls.
    pub fn split(&self, per_call: usize) -> Vec<ScopeDelta> {
        let per_call = per_call.max(1);
        if self.is_empty() {
            return Vec::new();
        }
        let calls = self.max_list_len().div_ceil(per_call).max(1);
        fn chunk<T: Clone>(v: &[T], i: usize, n: usize) -> Vec<T> {
            v.iter().skip(i * n).take(n).cloned().collect()
        }
        (0..calls)
            .map(|i| ScopeDelta {
                add_user_ids: chunk(&self.add_user_ids, i, per_call),
                del_user_ids: chunk(&self.del_user_ids, i, per_call),
                add_dept_ids: chunk(&self.add_dept_ids, i, per_call),
                del_dept_ids: chunk(&self.del_dept_ids, i, per_call),
                add_role_ids: chunk(&self.add_role_ids, i, per_call),
                del_role_ids: chunk(&self.del_role_ids, i, per_call),
                only_admin_visible: if i == 0 {
                    self.only_admin_visible
                } else {
                    None
                },
            })
            .collect()
    }
}

// ---------------------------------------------------------------- apps

/// Answer of `GET /v1.0/microApp/allInnerApps`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InnerAppList {
    #[serde(default)]
    pub app_list: Vec<InnerApp>,
}

/// One internal app. `appStatus` 0 = disabled (停用), 1 = enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InnerApp {
    pub agent_id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub desc: String,
    #[serde(default)]
    pub app_id: i64,
    pub app_status: i64,
    #[serde(default)]
    pub develop_type: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified_app_id: Option<String>,
}

impl InnerApp {
    /// `appStatus == 1`.
    pub fn enabled(&self) -> bool {
        self.app_status == 1
    }
}

// ---------------------------------------------------------------- leavers

/// Query of `GET /v1.0/contact/empLeaveRecords`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRecordsQuery {
    pub start_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub max_results: u32,
}

/// Answer of `empLeaveRecords`: one page; the end is an absent or empty `nextToken`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRecordPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(default)]
    pub records: Vec<LeaveRecord>,
}

/// One employee who left. `leaveReason`: oapi, cancel, leave, unknown, delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRecord {
    pub user_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// ISO-8601, e.g. `2021-01-06T11:47:37Z`.
    pub leave_time: String,
    #[serde(default)]
    pub leave_reason: String,
}

// ---------------------------------------------------------------- login

/// `sys_level` of `v2/user/getuserinfo`: the organization's main admin (主管理员).
pub const SYS_LEVEL_MAIN_ADMIN: i64 = 1;
/// `sys_level`: a sub-admin (子管理员).
pub const SYS_LEVEL_SUB_ADMIN: i64 = 2;
/// `sys_level`: the boss (老板).
pub const SYS_LEVEL_BOSS: i64 = 100;
/// `sys_level`: anyone else.
pub const SYS_LEVEL_OTHER: i64 = 0;

/// Body of `topapi/v2/user/getuserinfo`: an in-app login code (JSAPI
/// `requestAuthCode`; five minutes, single use).
#[derive(Clone, Serialize, Deserialize)]
pub struct UserInfoByCodeRequest {
    pub code: Secret,
}

impl fmt::Debug for UserInfoByCodeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInfoByCodeRequest")
            .field("code", &self.code)
            .finish()
    }
}

/// `result` of `topapi/v2/user/getuserinfo`: who the code belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfoByCodeResult {
    pub userid: String,
    #[serde(default)]
    pub unionid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_unionid: Option<String>,
    #[serde(default)]
    pub name: String,
    /// An admin of the organization (main or sub).
    #[serde(default)]
    pub sys: bool,
    /// [`SYS_LEVEL_MAIN_ADMIN`], [`SYS_LEVEL_SUB_ADMIN`], [`SYS_LEVEL_BOSS`]
    /// or [`SYS_LEVEL_OTHER`].
    #[serde(default)]
    pub sys_level: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// Who an in-app login code belongs to, as [`AppClient::user_by_code`]
/// answers it: a member of the app's organization, in its visible scope or
/// an admin (DingTalk refuses the others with 40079).
///
/// [`AppClient::user_by_code`]: super::AppClient::user_by_code
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeUser {
    pub userid: String,
    pub unionid: String,
    /// The unionid of an associated account, when DingTalk gives one.
    pub associated_unionid: Option<String>,
    pub name: String,
    /// An admin of the organization (main or sub).
    pub sys: bool,
    /// 1 main admin, 2 sub-admin, 100 boss, 0 anyone else
    /// ([`SYS_LEVEL_MAIN_ADMIN`] …).
    pub sys_level: i64,
}

impl From<UserInfoByCodeResult> for CodeUser {
    fn from(r: UserInfoByCodeResult) -> Self {
        Self {
            userid: r.userid,
            unionid: r.unionid,
            associated_unionid: r.associated_unionid.filter(|u| !u.is_empty()),
            name: r.name,
            sys: r.sys,
            sys_level: r.sys_level,
        }
    }
}

/// Body of `POST /v1.0/oauth2/userAccessToken`. `clientId`/`clientSecret`
/// are the appKey/appSecret of an internal app, the suiteKey/suiteSecret of
/// a marketplace app; `grantType` is `authorization_code` with `code` (the
/// web login's `authCode`) or `refresh_token` with `refreshToken`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAccessTokenRequest {
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    pub grant_type: String,
}

/// The `grantType` that exchanges a login code.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";

impl fmt::Debug for UserAccessTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAccessTokenRequest")
            .field("client_id", &self.client_id)
            .field("grant_type", &self.grant_type)
            .finish_non_exhaustive()
    }
}

/// Answer of `POST /v1.0/oauth2/userAccessToken`. `corpId` only with the
/// login scope `openid corpid`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAccessTokenResponse {
    pub access_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub expire_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corp_id: Option<String>,
}

/// The token of a user who logged in on the web, as
/// [`AppClient::user_access_token`] answers it. Good for `users/me`; the
/// refresh token is not kept.
///
/// [`AppClient::user_access_token`]: super::AppClient::user_access_token
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserToken {
    pub access_token: Secret,
    /// The organization the user picked (login scope `openid corpid`).
    pub corp_id: Option<String>,
    /// Life in seconds.
    pub expire_in: i64,
}

/// What dingbind reads of `GET /v1.0/contact/users/me`: the identity of the
/// DingTalk account, nothing else. The answer also has `email` and
/// `mobile`, which are the account's (personal, across organizations), not
/// the organization's, and are never to be trusted for identity: they are
/// not decoded. Map `union_id` to the organization's member with
/// `getbyunionid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub union_id: String,
    /// The account's id for this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
}

/// Body of `topapi/user/getbyunionid`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnionIdRequest {
    pub unionid: String,
}

/// `contact_type` of `getbyunionid`: an employee (a member).
pub const CONTACT_TYPE_EMPLOYEE: i64 = 0;
/// `contact_type` of `getbyunionid`: an external contact (not a member).
pub const CONTACT_TYPE_EXTERNAL: i64 = 1;

/// `result` of `topapi/user/getbyunionid`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnionIdResult {
    #[serde(default)]
    pub contact_type: i64,
    #[serde(default)]
    pub userid: String,
}

impl UnionIdResult {
    /// The member's userid: `None` for an external contact (or no userid).
    pub fn member(self) -> Option<String> {
        (self.contact_type == CONTACT_TYPE_EMPLOYEE && !self.userid.is_empty())
            .then_some(self.userid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_list_page_without_next_cursor_decodes() {
        let body = r#"{"errcode":0,"errmsg":"ok","result":{"has_more":false,"list":[{"userid":"u1","name":"A","dept_id_list":[2]}]}}"#;
        let r: TopResponse<UserListResult> = serde_json::from_str(body).unwrap();
        let page = r.result.unwrap();
        assert_eq!(page.next_cursor, None);
        assert_eq!(page.list[0].dept_id_list, vec![2]);
    }

    #[test]
    fn throttle_envelope_keeps_sub_code_as_string() {
        let body = r#"{"errcode":88,"sub_code":"90018","sub_msg":"x","errmsg":"ding talk error[subcode=90018]","request_id":"r"}"#;
        let r: TopResponse<UserListResult> = serde_json::from_str(body).unwrap();
        assert_eq!(r.sub_code.as_deref(), Some("90018"));
        assert!(r.result.is_none());
    }

    #[test]
    fn scope_delta_splits_into_calls_of_at_most_100_ids_per_list() {
        let delta = ScopeDelta {
            add_user_ids: (0..250).map(|i| format!("u{i}")).collect(),
            del_dept_ids: (0..30).collect(),
            only_admin_visible: Some(false),
            ..Default::default()
        };
        let calls = delta.split(SCOPE_IDS_PER_CALL);
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|c| c.max_list_len() <= 100));
        assert_eq!(
            calls.iter().map(|c| c.add_user_ids.len()).sum::<usize>(),
            250
        );
        assert_eq!(calls[0].del_dept_ids.len(), 30);
        assert_eq!(calls[0].only_admin_visible, Some(false));
        assert_eq!(calls[1].only_admin_visible, None);
    }

    #[test]
    fn login_bodies_hide_the_code_and_the_secret_in_debug() {
        let by_code = UserInfoByCodeRequest {
            code: Secret::new("code-planted-1"),
        };
        let token = UserAccessTokenRequest {
            client_id: "acme-key".into(),
            client_secret: Secret::new("sec-planted-2"),
            code: Some(Secret::new("code-planted-3")),
            refresh_token: None,
            grant_type: GRANT_AUTHORIZATION_CODE.into(),
        };
        let answer: UserAccessTokenResponse = serde_json::from_str(
            r#"{"accessToken":"tok-planted-4","refreshToken":"ref-planted-5","expireIn":7200,"corpId":"dingacme"}"#,
        )
        .unwrap();
        let text = format!("{by_code:?} {token:?} {answer:?}");
        for planted in [
            "code-planted-1",
            "sec-planted-2",
            "code-planted-3",
            "tok-planted-4",
            "ref-planted-5",
        ] {
            assert!(!text.contains(planted), "{text}");
        }
        assert!(text.contains("acme-key"), "{text}");
        let wire = serde_json::to_value(&token).unwrap();
        assert_eq!(wire["code"], "code-planted-3");
        assert_eq!(wire["grantType"], "authorization_code");
        assert!(wire.get("refreshToken").is_none(), "{wire}");
    }

    #[test]
    fn users_me_decodes_the_identity_and_drops_email_and_mobile() {
        let me: Me = serde_json::from_str(
            r#"{"nick":"Zhang","avatarUrl":"https://a","mobile":"13900000000","openId":"oi","unionId":"un1","email":"zhang@personal.example","stateCode":"86"}"#,
        )
        .unwrap();
        assert_eq!(
            me,
            Me {
                union_id: "un1".into(),
                open_id: Some("oi".into()),
                nick: Some("Zhang".into()),
            }
        );
        let back = serde_json::to_string(&me).unwrap();
        assert!(
            !back.contains("personal") && !back.contains("139"),
            "{back}"
        );
        assert!(
            serde_json::from_str::<Me>(r#"{"nick":"x"}"#).is_err(),
            "no unionId"
        );
    }

    #[test]
    fn a_code_user_reads_an_empty_associated_unionid_as_none() {
        let r: TopResponse<UserInfoByCodeResult> = serde_json::from_str(
            r#"{"errcode":0,"errmsg":"ok","result":{"userid":"u1","unionid":"un1","associated_unionid":"","name":"A","sys":true,"sys_level":1,"device_id":"d"}}"#,
        )
        .unwrap();
        let user = CodeUser::from(r.result.unwrap());
        assert_eq!(user.associated_unionid, None);
        assert_eq!((user.sys, user.sys_level), (true, SYS_LEVEL_MAIN_ADMIN));
    }

    #[test]
    fn getbyunionid_gives_a_member_only_for_an_employee() {
        let employee = UnionIdResult {
            contact_type: CONTACT_TYPE_EMPLOYEE,
            userid: "u1".into(),
        };
        assert_eq!(employee.member().as_deref(), Some("u1"));
        let external = UnionIdResult {
            contact_type: CONTACT_TYPE_EXTERNAL,
            userid: "x1".into(),
        };
        assert_eq!(external.member(), None);
        assert_eq!(UnionIdResult::default().member(), None);
    }

    #[test]
    fn api_tables_agree() {
        for (i, api) in Api::ALL.iter().enumerate() {
            assert_eq!(api.index(), i, "{api:?}");
            let path = api.path();
            match api.family() {
                Family::Topapi => assert!(!path.starts_with("/v1.0/"), "{api:?}"),
                Family::V1 => assert!(path.starts_with("/v1.0/"), "{api:?}"),
            }
            assert!(
                api.name().ends_with(path.trim_start_matches('/')),
                "{api:?}"
            );
            if api.issues_tokens() {
                assert!(!api.uses_app_token(), "{api:?}");
            }
        }
        assert!(!Api::UsersMe.uses_app_token());
        assert!(Api::UserByUnionId.uses_app_token() && Api::UserInfoByCode.uses_app_token());
        for single_use in [Api::UserInfoByCode, Api::UserAccessToken] {
            assert!(!single_use.idempotent(), "{single_use:?}");
        }
        assert!(Api::UsersMe.idempotent() && Api::UserByUnionId.idempotent());
    }

    #[test]
    fn empty_scope_delta_gives_no_calls() {
        assert!(ScopeDelta::default().split(100).is_empty());
    }
}
