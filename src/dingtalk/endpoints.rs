//! The endpoint methods of [`AppClient`], one per DingTalk API.

use jiff::Timestamp;
use reqwest::Method;

use super::AppClient;
use super::error::{Error, ErrorKind};
use super::token::TokenSource;
use super::transport::Request;
use super::types::{
    Api, AppScopes, AuthInfo, AuthScopes, CorpTokenRequest, CorpTokenResponse, Department,
    DeptRequest, InnerApp, InnerAppList, LEAVE_RECORDS_MAX_RESULTS, LeaveRecord, LeaveRecordPage,
    ResultWrapper, SCOPE_IDS_PER_CALL, ScopeDelta, USER_LIST_MAX_SIZE, User, UserGetRequest,
    UserListIdRequest, UserListIdResult, UserListRequest, UserListResult,
};

/// Language asked of topapi calls.
pub const DEFAULT_LANGUAGE: &str = "zh_CN";

/// `Ok(None)` for a not-found error, the error otherwise.
fn none_if_not_found<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl AppClient {
    /// `POST /v1.0/oauth2/{corpId}/token` (the unified app token): whether this
    /// app's credentials belong to organization `corp_id`. An internal app's
    /// own token does not say which organization it is in; this one is refused
    /// (`unauthorized.client`) unless the app is in `corp_id`. The token itself
    /// is not kept.
    pub async fn belongs_to_corp(&self, corp_id: &str) -> Result<bool, Error> {
        let TokenSource::InternalApp {
            app_key,
            app_secret,
        } = &self.inner.source
        else {
            return Err(Error::Config(
                "the unified app token proves an internal app's organization; a marketplace app's install is read with authInfo".into(),
            ));
        };
        let body = CorpTokenRequest {
            client_id: app_key.clone(),
            client_secret: app_secret.clone(),
            grant_type: "client_credentials".into(),
        };
        let req = Request::new(Api::CorpToken, Method::POST)
            .path(format!("/v1.0/oauth2/{corp_id}/token"))
            .json(&body)?;
        match self.call::<CorpTokenResponse>(req).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("unauthorized.client") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1.0/oauth2/apps/authInfo?authCorpId=`, with a suite's own token
    /// ([`TokenSource::Suite`]): what enterprise `corp_id` installed of the
    /// suite. `None` when it has not installed it, uninstalled it, or does
    /// not exist (`orgNotAuthApp`, `orgNotExist`, `invalidCorpId`).
    pub async fn auth_info(&self, corp_id: &str) -> Result<Option<AuthInfo>, Error> {
        let req = Request::new(Api::AuthInfo, Method::GET).query("authCorpId", corp_id);
        match self.call::<AuthInfo>(req).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind() == ErrorKind::NotInstalled => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /auth/scopes`: the contacts this token may read. For a marketplace
    /// app in an enterprise ([`TokenSource::Marketplace`]) it is the visible
    /// scope the enterprise's admin set in DingTalk's console.
    pub async fn auth_scopes(&self) -> Result<AuthScopes, Error> {
        self.call(Request::new(Api::AuthScopes, Method::GET)).await
    }

    /// `topapi/v2/department/listsub`: the direct children of `dept_id` (no paging;
    /// a leaf gives an empty list).
    pub async fn list_sub_departments(&self, dept_id: i64) -> Result<Vec<Department>, Error> {
        let body = DeptRequest {
            dept_id,
            language: Some(DEFAULT_LANGUAGE.into()),
        };
        self.call(Request::new(Api::DeptListSub, Method::POST).json(&body)?)
            .await
    }

    /// `topapi/v2/department/get`: one department with `order`, managers and
    /// member counts. `None` when it does not exist (60003).
    pub async fn get_department(&self, dept_id: i64) -> Result<Option<Department>, Error> {
        let body = DeptRequest {
            dept_id,
            language: Some(DEFAULT_LANGUAGE.into()),
        };
        none_if_not_found(
            self.call(Request::new(Api::DeptGet, Method::POST).json(&body)?)
                .await,
        )
    }

    /// `topapi/v2/user/list`: one page of the direct members of `dept_id`.
    /// `size` is clamped to 1..=100. Pass `cursor` 0 first, then `next_cursor`.
    pub async fn list_users_page(
        &self,
        dept_id: i64,
        cursor: i64,
        size: u32,
    ) -> Result<UserListResult, Error> {
        let body = UserListRequest {
            dept_id,
            cursor,
            size: size.clamp(1, USER_LIST_MAX_SIZE),
            order_field: None,
            language: Some(DEFAULT_LANGUAGE.into()),
        };
        self.call(Request::new(Api::UserList, Method::POST).json(&body)?)
            .await
    }

    /// All direct members of `dept_id`, every page (100 per call). A user in
    /// several departments appears in each department's list.
    pub async fn list_department_users(&self, dept_id: i64) -> Result<Vec<User>, Error> {
        let mut users = Vec::new();
        let mut cursor = 0;
        loop {
            let page = self
                .list_users_page(dept_id, cursor, USER_LIST_MAX_SIZE)
                .await?;
            users.extend(page.list);
            match (page.has_more, page.next_cursor) {
                (true, Some(next)) if next != cursor => cursor = next,
                (true, _) => {
                    return Err(Error::Decode {
                        endpoint: Api::UserList,
                        http_status: 200,
                        message: format!(
                            "has_more without a new next_cursor (dept {dept_id}, cursor {cursor})"
                        ),
                    });
                }
                (false, _) => return Ok(users),
            }
        }
    }

    /// `topapi/v2/user/get`: one user. `None` when the userid does not exist or
    /// the user left (60121, or 33012 per the v2 doc).
    pub async fn get_user(&self, userid: &str) -> Result<Option<User>, Error> {
        let body = UserGetRequest {
            userid: userid.to_owned(),
            language: Some(DEFAULT_LANGUAGE.into()),
        };
        none_if_not_found(
            self.call(Request::new(Api::UserGet, Method::POST).json(&body)?)
                .await,
        )
    }

    /// `topapi/user/listid`: the userids of a department's direct members.
    pub async fn list_user_ids(&self, dept_id: i64) -> Result<Vec<String>, Error> {
        let body = UserListIdRequest { dept_id };
        let result: UserListIdResult = self
            .call(Request::new(Api::UserListId, Method::POST).json(&body)?)
            .await?;
        Ok(result.userid_list)
    }

    /// `GET /v1.0/microApp/apps/{agentId}/scopes`: the app's visible scope.
    /// "All employees" reads as `1 ∈ dept_ids`.
    pub async fn get_scopes(&self, agent_id: i64) -> Result<AppScopes, Error> {
        let req = Request::new(Api::ScopesGet, Method::GET).path(scopes_path(agent_id));
        let wrapped: ResultWrapper<AppScopes> = self.call(req).await?;
        Ok(wrapped.result)
    }

    /// `POST /v1.0/microApp/apps/{agentId}/scopes`: applies a delta, split into
    /// calls of at most 100 ids per list, in order. Returns the number of calls.
    ///
    /// Not retried after a 5xx or a timeout (see `retry.rs`): on error, some
    /// calls may have been applied; read the scope again and compute a new delta.
    pub async fn update_scopes(&self, agent_id: i64, delta: &ScopeDelta) -> Result<usize, Error> {
        let calls = delta.split(SCOPE_IDS_PER_CALL);
        for part in &calls {
            let req = Request::new(Api::ScopesUpdate, Method::POST)
                .path(scopes_path(agent_id))
                .json(part)?;
            let _: ResultWrapper<bool> = self.call(req).await?;
        }
        Ok(calls.len())
    }

    /// `GET /v1.0/microApp/allInnerApps`: every internal app of the org.
    pub async fn inner_apps(&self) -> Result<Vec<InnerApp>, Error> {
        let list: InnerAppList = self
            .call(Request::new(Api::AllInnerApps, Method::GET))
            .await?;
        Ok(list.app_list)
    }

    /// The app `agent_id` from `allInnerApps`: `Some(true)` enabled,
    /// `Some(false)` disabled (停用, appStatus 0), `None` not listed.
    pub async fn app_enabled(&self, agent_id: i64) -> Result<Option<bool>, Error> {
        Ok(self
            .inner_apps()
            .await?
            .iter()
            .find(|a| a.agent_id == agent_id)
            .map(InnerApp::enabled))
    }

    /// `GET /v1.0/contact/empLeaveRecords`: everyone who left between `start`
    /// and `end` (span ≤ 365 days), every page (50 per call).
    pub async fn leave_records(
        &self,
        start: Timestamp,
        end: Option<Timestamp>,
    ) -> Result<Vec<LeaveRecord>, Error> {
        let mut records = Vec::new();
        let mut next_token = "0".to_owned();
        loop {
            let mut req = Request::new(Api::EmpLeaveRecords, Method::GET)
                .query("startTime", format_time(start))
                .query("nextToken", next_token.clone())
                .query("maxResults", LEAVE_RECORDS_MAX_RESULTS.to_string());
            if let Some(end) = end {
                req = req.query("endTime", format_time(end));
            }
            let page: LeaveRecordPage = self.call(req).await?;
            records.extend(page.records);
            match page
                .next_token
                .filter(|t| !t.is_empty() && *t != next_token)
            {
                Some(t) => next_token = t,
                None => return Ok(records),
            }
        }
    }
}

fn scopes_path(agent_id: i64) -> String {
    Api::ScopesGet
        .path()
        .replace("{agentId}", &agent_id.to_string())
}

/// `YYYY-MM-DDTHH:mm:ssZ`, as empLeaveRecords wants it.
fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_record_times_have_second_precision_and_z() {
        let t: Timestamp = "2021-01-06T11:47:37.123Z".parse().unwrap();
        assert_eq!(format_time(t), "2021-01-06T11:47:37Z");
    }

    #[test]
    fn scopes_path_holds_the_agent_id() {
        assert_eq!(scopes_path(1001), "/v1.0/microApp/apps/1001/scopes");
    }
}
