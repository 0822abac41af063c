//! The events DingTalk sends for each change the admin API makes, in the
//! payload shapes of an internal app's Stream push (lowerCamel `data`):
//! who receives one (every app of the organization for a directory change,
//! the app itself for a change of its scope or status), its type and its
//! data. Pure: `admin.rs` hands these to the gateway's hub.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::org_file::{AppSpec, ScopeSpec};

/// Who an event goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every app of the organization.
    Corp,
    /// One app (by agentId).
    App(i64),
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
