//! The organization schema shared by `--org FILE` (YAML or JSON) and the admin
//! API (`POST /_sim/corps`, `GET /_sim/corps/{corpId}`, the PUT bodies).
//! The names `corps`, `corpId`, `apps`, `agentId`, `appKey`, `appSecret`,
//! `enabled`, `visibleScope {deptIds, userIds}`, `departments {id, name, parentId}`
//! and `users {userid, name, deptIds, mobile, email}` are a contract with scripts:
//! keep them; add fields freely. `suites` declares marketplace apps and
//! the corps that installed them (`suites.rs`).

use serde::{Deserialize, Serialize};

use crate::dingtalk::types::{LeaveRecord, ROOT_DEPT_ID};

/// A whole file: one or more organizations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgFile {
    #[serde(default)]
    pub corps: Vec<CorpSpec>,
    /// Marketplace apps (suites), installed in corps of `corps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<SuiteSpec>,
}

/// A marketplace app (suite, 第三方企业应用): its credentials, how often
/// DingTalk pushes a new suite ticket, and the corps that installed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteSpec {
    pub suite_key: String,
    pub suite_secret: String,
    /// A new ticket this often on the suite's Stream connections; 0 = only
    /// the one sent on each connect.
    #[serde(default)]
    pub ticket_period_secs: u64,
    /// The app's name in the corps (`agentName`); defaults to the suite key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub installs: Vec<InstallSpec>,
}

/// One corp's install of a suite.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallSpec {
    pub corp_id: String,
    /// The app's agentId in the corp; allocated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
    /// The visible scope the corp's admin set; all employees (`deptIds: [1]`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSpec>,
    /// The admin who installed it (`authUserInfo.userId`); the corp's first
    /// admin when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_user_id: Option<String>,
}

/// One organization (corp) with its apps, departments, members and leavers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorpSpec {
    pub corp_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    /// Departments other than the root (id 1, which always exists and is named
    /// after the corp).
    #[serde(default)]
    pub departments: Vec<DeptSpec>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// People who left, newest last (as `empLeaveRecords` returns them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leave_records: Vec<LeaveRecord>,
}

/// An internal app of the corp, with its credentials and visible scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    pub agent_id: i64,
    pub app_key: String,
    pub app_secret: String,
    #[serde(default)]
    pub name: String,
    /// `false` = disabled (停用) by the corp's admin: `allInnerApps` shows appStatus 0.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub visible_scope: ScopeSpec,
}

/// An app's visible scope. "All employees" is `deptIds: [1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpec {
    #[serde(default)]
    pub dept_ids: Vec<i64>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub only_admin_visible: bool,
}

/// A department. `parentId` defaults to the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeptSpec {
    pub id: i64,
    pub name: String,
    #[serde(default = "root")]
    pub parent_id: i64,
    /// Order within the parent (`department/get`); defaults to 0.
    #[serde(default)]
    pub order: i64,
}

/// A member of the corp.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    pub userid: String,
    pub name: String,
    /// Defaults to a value derived from corp and userid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    #[serde(default)]
    pub dept_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_number: Option<String>,
    /// An admin of the corp; the main admin (主管理员, `sys_level` 1 in
    /// `v2/user/getuserinfo`) unless `subAdmin`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub admin: bool,
    /// A sub-admin (子管理员, `sys_level` 2); reads as `admin: true` in
    /// `v2/user/get` and `user/list`, as DingTalk has both kinds there.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sub_admin: bool,
    /// The boss (老板, `sys_level` 100 when not an admin).
    #[serde(default, skip_serializing_if = "is_false")]
    pub boss: bool,
    /// Has activated DingTalk; defaults to true.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn root() -> i64 {
    ROOT_DEPT_ID
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl OrgFile {
    /// Parses YAML (JSON is YAML too).
    pub fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
corps:
  - corpId: dingacme
    name: ACME
    apps:
      - {agentId: 1001, appKey: acme-key, appSecret: acme-secret, enabled: true, visibleScope: {deptIds: [1], userIds: []}}
    departments:            # root department 1 exists implicitly
      - {id: 2, name: Sales, parentId: 1}
    users:
      - {userid: u1, name: Zhang San, deptIds: [2], mobile: "13800000001", email: zs@acme.example}
"#;

    #[test]
    fn the_documented_example_parses() {
        let f = OrgFile::parse(EXAMPLE).unwrap();
        let corp = &f.corps[0];
        assert_eq!(corp.corp_id, "dingacme");
        assert_eq!(corp.apps[0].visible_scope.dept_ids, vec![1]);
        assert_eq!(corp.departments[0].parent_id, 1);
        assert_eq!(corp.users[0].mobile.as_deref(), Some("13800000001"));
        assert!(corp.users[0].active);
        assert!(f.suites.is_empty());
    }

    #[test]
    fn suites_and_their_installs_parse() {
        let f = OrgFile::parse(
            r#"
corps: []
suites:
  - suiteKey: sk
    suiteSecret: ss
    ticketPeriodSecs: 60
    installs:
      - {corpId: dingacme}
      - {corpId: dingglobex, agentId: 7001, scope: {deptIds: [2], userIds: [g1]}}
"#,
        )
        .unwrap();
        let s = &f.suites[0];
        assert_eq!((s.suite_key.as_str(), s.ticket_period_secs), ("sk", 60));
        assert_eq!(s.installs[0].agent_id, None);
        assert_eq!(s.installs[1].agent_id, Some(7001));
        assert_eq!(
            s.installs[1].scope.as_ref().map(|s| s.user_ids.clone()),
            Some(vec!["g1".to_string()])
        );
    }
}
