//! The events DingTalk sends for each change the admin API makes, in the
//! payload shapes of an internal app's Stream push (lowerCamel `data`):
//! who receives one (every app of the organization for a directory change,
//! the app itself for a change of its scope or status), its type and its
//! data; and the marketplace (ISV) forms a suite installed in the
//! organization receives: full user and department records instead of ids,
//! and the install's lifecycle. Pure: `admin.rs` and `suite_admin.rs` hand
//! these to the gateway's hub.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::org_file::{AppSpec, ScopeSpec};
use super::suites::{AUTH_USER_FIELDS, Install, Suite};
use crate::dingtalk::types;

/// Who an event goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every internal app of the organization.
    Corp,
    /// One internal app (by agentId).
    App(i64),
    /// Every suite installed in the organization (stopped and removed ones
    /// too; not an uninstalled one).
    Suites,
    /// One suite (by suiteKey), about its install in the organization.
    Suite(String),
}

/// One event an admin change produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub audience: Audience,
    pub event_type: &'static str,
    pub data: Value,
}

/// The operator the simulator names in app events (`operatorUnionId`).
pub const OPERATOR_UNION_ID: &str = "sim-admin";

/// The unified app id the simulator gives an app (`eventUnifiedAppId`,
/// `unifiedAppId`).
pub fn unified_app_id(corp_id: &str, agent_id: i64) -> String {
    format!("{corp_id}-{agent_id}")
}

fn ms(now: Timestamp) -> String {
    now.as_millisecond().to_string()
}

/// A user was created (`existed: false`) or changed; `reactivated` when
/// they were inactive before and active now.
pub fn user_put(userid: &str, existed: bool, reactivated: bool, now: Timestamp) -> Vec<Change> {
    let mut out = Vec::new();
    if existed {
        out.push(Change {
            audience: Audience::Corp,
            event_type: "user_modify_org",
            data: json!({
                "timeStamp": ms(now),
                "userId": [userid],
                "diffInfo": {"userid": userid, "prev": {}, "curr": {}},
            }),
        });
    } else {
        out.push(Change {
            audience: Audience::Corp,
            event_type: "user_add_org",
            data: json!({"timeStamp": ms(now), "userId": [userid]}),
        });
    }
    if reactivated {
        out.push(Change {
            audience: Audience::Corp,
            event_type: "user_active_org",
            data: json!({"userId": [userid]}),
        });
    }
    out
}

/// A user left or was deleted.
pub fn user_left(userid: &str, now: Timestamp) -> Vec<Change> {
    vec![Change {
        audience: Audience::Corp,
        event_type: "user_leave_org",
        data: json!({"timeStamp": ms(now), "userId": [userid]}),
    }]
}

/// A department was created (`existed: false`) or changed (renamed, moved).
pub fn department_put(id: i64, existed: bool, now: Timestamp) -> Vec<Change> {
    vec![Change {
        audience: Audience::Corp,
        event_type: if existed {
            "org_dept_modify"
        } else {
            "org_dept_create"
        },
        data: json!({"timeStamp": ms(now), "deptId": [id]}),
    }]
}

/// A department was removed.
pub fn department_removed(id: i64, now: Timestamp) -> Vec<Change> {
    vec![Change {
        audience: Audience::Corp,
        event_type: "org_dept_remove",
        data: json!({"timeStamp": ms(now), "deptId": [id]}),
    }]
}

/// An app changed from `before` to `after`: a status event when it was
/// enabled or disabled, a scope event when its visible scope changed.
/// `event_id` is the payload's own id (DingTalk's differs from the header's).
pub fn app_changed(
    corp_id: &str,
    before: &AppSpec,
    after: &AppSpec,
    mut event_id: impl FnMut() -> String,
) -> Vec<Change> {
    let unified = unified_app_id(corp_id, after.agent_id);
    let mut out = Vec::new();
    if before.visible_scope != after.visible_scope {
        let ScopeSpec {
            dept_ids,
            user_ids,
            role_ids,
            ..
        } = &after.visible_scope;
        out.push(Change {
            audience: Audience::App(after.agent_id),
            event_type: "inner_app_scopes_change",
            data: json!({
                "eventId": event_id(),
                "roleIds": role_ids,
                "userIds": user_ids,
                "operatorUnionId": OPERATOR_UNION_ID,
                "deptIds": dept_ids,
                "unifiedAppId": unified,
            }),
        });
    }
    if before.enabled != after.enabled {
        out.push(Change {
            audience: Audience::App(after.agent_id),
            event_type: "inner_app_status_change",
            data: json!({
                "eventId": event_id(),
                "operatorUnionId": OPERATOR_UNION_ID,
                "unifiedAppId": unified,
                "status": if after.enabled { "enable" } else { "disable" },
            }),
        });
    }
    out
}

// ---------------------------------------------------------------- marketplace forms

/// A user's `dingId`, stable: derived from the corp and the userid
/// (DingTalk's look like `$:LWCP_v1:$…`).
pub fn ding_id(corp_id: &str, userid: &str) -> String {
    // FNV-1a, 64 bits: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in corp_id.bytes().chain([0]).chain(userid.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("$:LWCP_v1:${h:016x}")
}

/// The user record a suite's contact events carry: the ISV user snapshot
/// (`userid`, `unionid`, `name`, `department`, `active`, `isAdmin`, …;
/// `orderInDepts` and `isLeaderInDepts` as JSON strings, as DingTalk sends them).
pub fn suite_user_record(corp_id: &str, user: &types::User) -> Value {
    let per_dept = |v: Value| -> String {
        let map: Map<String, Value> = user
            .dept_id_list
            .iter()
            .map(|d| (d.to_string(), v.clone()))
            .collect();
        Value::Object(map).to_string()
    };
    let mut record = json!({
        "userid": user.userid,
        "unionid": user.unionid,
        "dingId": ding_id(corp_id, &user.userid),
        "name": user.name,
        "department": user.dept_id_list,
        "active": user.active,
        "isAdmin": user.admin,
        "isBoss": user.boss,
        "isHide": false,
        "isSenior": false,
        "avatar": user.avatar.clone().unwrap_or_default(),
        "orderInDepts": per_dept(json!(0)),
        "isLeaderInDepts": per_dept(json!(false)),
    });
    for (key, value) in [
        ("mobile", &user.mobile),
        ("stateCode", &user.state_code),
        ("email", &user.email),
        ("position", &user.title),
        ("jobnumber", &user.job_number),
    ] {
        if let (Some(v), Some(obj)) = (value, record.as_object_mut()) {
            obj.insert(key.into(), json!(v));
        }
    }
    record
}

/// The suites' form of [`user_put`]: the full record each time.
pub fn suite_user_put(record: &Value, existed: bool, reactivated: bool) -> Vec<Change> {
    let event = |event_type| Change {
        audience: Audience::Suites,
        event_type,
        data: record.clone(),
    };
    let mut out = vec![event(if existed {
        "user_modify_org"
    } else {
        "user_add_org"
    })];
    if reactivated {
        out.push(event("user_active_org"));
    }
    out
}

/// The suites' form of [`user_left`]: `unionid` and `dingId` only, no userid.
pub fn suite_user_left(unionid: &str, ding_id: &str) -> Vec<Change> {
    vec![Change {
        audience: Audience::Suites,
        event_type: "user_leave_org",
        data: json!({"unionid": unionid, "dingId": ding_id}),
    }]
}

/// The suites' form of [`department_put`]: the department's detail, with
/// `deptId: [id]` too.
pub fn suite_department_put(dept: &types::Department, existed: bool) -> Vec<Change> {
    let mut data = json!({
        "id": dept.dept_id,
        "name": dept.name,
        "order": dept.order.unwrap_or(0),
        "createDeptGroup": dept.create_dept_group,
        "autoAddUser": dept.auto_add_user,
        "deptId": [dept.dept_id],
    });
    if let (Some(parent), Some(obj)) = (dept.parent_id, data.as_object_mut()) {
        obj.insert("parentid".into(), json!(parent));
    }
    vec![Change {
        audience: Audience::Suites,
        event_type: if existed {
            "org_dept_modify"
        } else {
            "org_dept_create"
        },
        data,
    }]
}

/// The suites' form of [`department_removed`]: `{}`.
pub fn suite_department_removed() -> Vec<Change> {
    vec![Change {
        audience: Audience::Suites,
        event_type: "org_dept_remove",
        data: json!({}),
    }]
}

/// `org_suite_auth` (the first install) or `org_suite_change` (an update).
pub fn suite_authorized(
    first: bool,
    suite: &Suite,
    corp_id: &str,
    corp_name: &str,
    install: &Install,
) -> Change {
    let admin = install.admin_user_id.clone().unwrap_or_default();
    let admins: Vec<&str> = install.admin_user_id.as_deref().into_iter().collect();
    Change {
        audience: Audience::Suite(suite.suite_key.clone()),
        event_type: if first {
            "org_suite_auth"
        } else {
            "org_suite_change"
        },
        data: json!({
            "authCorpInfo": {"corpid": corp_id, "corpName": corp_name},
            "permanentCode": install.permanent_code,
            "authUserInfo": {"userId": admin},
            "authScope": {
                "authUserField": AUTH_USER_FIELDS,
                "authOrgScopes": {
                    "authedDept": install.scope.dept_ids,
                    "authedUser": install.scope.user_ids,
                },
            },
            "authInfo": {"agent": [{
                "agentid": install.agent_id,
                "appid": suite.app_id(),
                "agentName": suite.name,
                "adminList": admins,
            }]},
        }),
    }
}

/// `org_suite_relieve`: the corp uninstalled the suite.
pub fn suite_relieved(suite_key: &str) -> Change {
    Change {
        audience: Audience::Suite(suite_key.to_owned()),
        event_type: "org_suite_relieve",
        data: json!({}),
    }
}

/// `org_micro_app_stop` / `_restore` / `_remove` / `_scope_update`: `{agentId}`.
pub fn micro_app(suite_key: &str, event_type: &'static str, agent_id: i64) -> Change {
    Change {
        audience: Audience::Suite(suite_key.to_owned()),
        event_type,
        data: json!({ "agentId": agent_id }),
    }
}

/// The `data` of a `suite_ticket` event.
pub fn suite_ticket(ticket: &str) -> Value {
    json!({ "suiteTicket": ticket })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dirty::{self, Change as Marked};

    fn app(enabled: bool, depts: Vec<i64>) -> AppSpec {
        AppSpec {
            agent_id: 1001,
            app_key: "k".into(),
            app_secret: "s".into(),
            name: String::new(),
            enabled,
            visible_scope: ScopeSpec {
                dept_ids: depts,
                ..ScopeSpec::default()
            },
        }
    }

    #[test]
    fn each_change_gives_the_event_dingtalk_sends() {
        let now = Timestamp::UNIX_EPOCH;
        let types = |c: Vec<Change>| c.iter().map(|c| c.event_type).collect::<Vec<_>>();
        assert_eq!(types(user_put("u", false, false, now)), ["user_add_org"]);
        assert_eq!(
            types(user_put("u", true, true, now)),
            ["user_modify_org", "user_active_org"]
        );
        assert_eq!(types(user_left("u", now)), ["user_leave_org"]);
        assert_eq!(types(department_put(2, false, now)), ["org_dept_create"]);
        assert_eq!(types(department_put(2, true, now)), ["org_dept_modify"]);
        assert_eq!(types(department_removed(2, now)), ["org_dept_remove"]);
        let changed = app_changed("c", &app(true, vec![1]), &app(false, vec![2]), || {
            "e".into()
        });
        assert_eq!(
            types(changed.clone()),
            ["inner_app_scopes_change", "inner_app_status_change"]
        );
        assert!(changed.iter().all(|c| c.audience == Audience::App(1001)));
        assert!(
            app_changed("c", &app(true, vec![1]), &app(true, vec![1]), || "e".into()).is_empty()
        );
    }

    fn wire_user() -> types::User {
        types::User {
            userid: "u1".into(),
            unionid: "un1".into(),
            name: "A".into(),
            avatar: None,
            state_code: Some("86".into()),
            mobile: Some("138".into()),
            email: None,
            title: Some("SRE".into()),
            job_number: None,
            dept_id_list: vec![2, 3],
            hired_date: None,
            active: true,
            admin: false,
            boss: false,
            leader: None,
        }
    }

    #[test]
    fn suites_get_full_records_and_leavers_without_userid() {
        let record = suite_user_record("c", &wire_user());
        assert_eq!(record["userid"], "u1");
        assert_eq!(record["department"], json!([2, 3]));
        assert_eq!(record["position"], "SRE");
        assert_eq!(record["isAdmin"], false);
        assert!(record.get("email").is_none());
        let order: Value = serde_json::from_str(record["orderInDepts"].as_str().unwrap()).unwrap();
        assert_eq!(order, json!({"2": 0, "3": 0}));
        let types = |c: &[Change]| c.iter().map(|c| c.event_type).collect::<Vec<_>>();
        assert_eq!(
            types(&suite_user_put(&record, true, true)),
            ["user_modify_org", "user_active_org"]
        );
        let left = suite_user_left("un1", &ding_id("c", "u1"));
        assert_eq!(left[0].audience, Audience::Suites);
        let keys: Vec<&String> = left[0].data.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["dingId", "unionid"]);
        assert_eq!(ding_id("c", "u1"), record["dingId"].as_str().unwrap());
        assert_ne!(ding_id("c", "u1"), ding_id("c", "u2"));
        assert_eq!(suite_department_removed()[0].data, json!({}));
    }

    #[test]
    fn a_department_record_has_its_detail_and_its_id_list() {
        let dept = types::Department {
            dept_id: 7,
            name: "East".into(),
            parent_id: Some(2),
            create_dept_group: false,
            auto_add_user: false,
            order: Some(3),
            member_count: None,
            owning_member_count: None,
            dept_manager_userid_list: Vec::new(),
        };
        let c = &suite_department_put(&dept, false)[0];
        assert_eq!(c.event_type, "org_dept_create");
        assert_eq!(
            (&c.data["id"], &c.data["parentid"], &c.data["deptId"]),
            (&json!(7), &json!(2), &json!([7]))
        );
    }

    #[test]
    fn the_core_reads_what_each_event_marks() {
        let now = Timestamp::UNIX_EPOCH;
        let marked = |c: &Change| dirty::change(c.event_type, &c.data);
        assert_eq!(
            marked(&user_left("u1", now)[0]),
            Marked::Users(["u1".to_string()].into())
        );
        assert_eq!(
            marked(&user_put("u2", true, false, now)[0]),
            Marked::Users(["u2".to_string()].into())
        );
        assert_eq!(
            marked(&department_put(7, false, now)[0]),
            Marked::Departments([7].into())
        );
        let status = app_changed("c", &app(true, vec![1]), &app(false, vec![1]), || {
            "e".into()
        });
        assert_eq!(
            marked(&status[0]),
            Marked::AppStatus {
                status: Some("disable".into()),
                operator_union_id: Some(OPERATOR_UNION_ID.into())
            }
        );
    }
}
