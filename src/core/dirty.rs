//! What an event means for a tenant, and what is waiting to be re-read.
//! An event is a hint, never the truth: [`change`] only says which users or
//! departments to look at again (or that the scope or the binding must be
//! checked); [`Dirty`] gathers those hints, and [`Pending`] batches the ones
//! that arrive while a sync runs into the next one. Payloads are read
//! leniently (`docs/events.md` lists the readings chosen).

use std::collections::BTreeSet;

use serde_json::Value;

/// More dirty users and departments than this and a tenant gets a full sync
/// instead: re-reading 1,000 ids one by one costs about as many calls as a
/// full sync of an organization of 50,000 people, and the set stays small in
/// memory.
pub const MAX_DIRTY_IDS: usize = 1_000;

/// Who changed the scope, kept per batch for the Event naming them; more are
/// dropped.
pub const MAX_OPERATORS: usize = 10;

/// What one event asks of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Re-read these users (`user_add_org`, `user_modify_org`,
    /// `user_leave_org`, `user_active_org`).
    Users(BTreeSet<String>),
    /// A marketplace app's leavers, known by unionid only (`user_leave_org`
    /// carries `unionid` and `dingId`): the shell resolves them through the
    /// directory, then re-reads those users.
    UnionIds(BTreeSet<String>),
    /// Re-read these departments (`org_dept_create`, `org_dept_modify`,
    /// `org_dept_remove`).
    Departments(BTreeSet<i64>),
    /// `inner_app_scopes_change`: re-read the app's scope and correct drift;
    /// the users and departments the payload names are re-read too.
    Scope {
        operator_union_id: Option<String>,
        users: BTreeSet<String>,
        departments: BTreeSet<i64>,
    },
    /// `inner_app_status_change`: check the binding now (`status` as sent:
    /// `disable`, …).
    AppStatus {
        status: Option<String>,
        operator_union_id: Option<String>,
    },
    /// A marketplace app was installed, changed, uninstalled, stopped,
    /// restored or removed in an organization (`org_suite_auth`,
    /// `org_suite_change`, `org_suite_relieve`, `org_micro_app_stop`,
    /// `org_micro_app_restore`, `org_micro_app_remove`): check the binding
    /// and read the scope now.
    Install { event_type: String },
    /// A directory event whose ids could not be read: only a full sync is
    /// sure to see what it was about.
    Unreadable { event_type: String },
    /// An event type dingbind does not act on.
    Ignored,
}

/// Decides what an event of `event_type` with payload `data` asks for.
pub fn change(event_type: &str, data: &Value) -> Change {
    let unreadable = || Change::Unreadable {
        event_type: event_type.to_string(),
    };
    match event_type {
        "user_add_org" | "user_modify_org" | "user_leave_org" | "user_active_org"
        | "user_dept_change" => {
            // An internal app's payload lists `userId`s; a marketplace app's
            // is the user's whole record, with its `userid`.
            let mut users = strings(field(data, &["userid", "userids"]));
            // user_modify_org carries the user in diffInfo too.
            if let Some(diff) = field(data, &["diffinfo"]) {
                users.extend(strings(field(diff, &["userid", "userids"])));
            }
            if !users.is_empty() {
                return Change::Users(users);
            }
            // A marketplace app's leaver: `unionid` and `dingId` only.
            let unionids = strings(field(data, &["unionid", "unionids"]));
            if unionids.is_empty() {
                unreadable()
            } else {
                Change::UnionIds(unionids)
            }
        }
        "org_dept_create" | "org_dept_modify" | "org_dept_remove" => {
            // A marketplace app's create/modify payload is the department's
            // record (`id`); its remove payload is empty: unreadable.
            let mut departments = numbers(field(data, &["deptid", "deptids"]));
            if departments.is_empty() {
                departments = numbers(field(data, &["id"]));
            }
            if departments.is_empty() {
                unreadable()
            } else {
                Change::Departments(departments)
            }
        }
        "inner_app_scopes_change" => Change::Scope {
            operator_union_id: text(field(data, &["operatorunionid"])),
            users: strings(field(data, &["userids", "userid"])),
            departments: numbers(field(data, &["deptids", "deptid"])),
        },
        // A marketplace app's scope, set in DingTalk's console (`{agentId}`).
        "org_micro_app_scope_update" => Change::Scope {
            operator_union_id: None,
            users: BTreeSet::new(),
            departments: BTreeSet::new(),
        },
        "org_suite_auth"
        | "org_suite_change"
        | "org_suite_relieve"
        | "org_micro_app_stop"
        | "org_micro_app_restore"
        | "org_micro_app_remove" => Change::Install {
            event_type: event_type.to_string(),
        },
        "inner_app_status_change" => Change::AppStatus {
            status: text(field(data, &["status"])),
            operator_union_id: text(field(data, &["operatorunionid"])),
        },
        _ => Change::Ignored,
    }
}

/// The ticket of a `suite_ticket` event (`{"suiteTicket": …}`; HTTP's
/// `SuiteTicket` too).
pub fn suite_ticket(data: &Value) -> Option<String> {
    text(field(data, &["suiteticket"]))
}

/// The first field of `data` whose name, in lower case, is one of `names`
/// (Stream sends lowerCamel, HTTP push PascalCase).
fn field<'a>(data: &'a Value, names: &[&str]) -> Option<&'a Value> {
    let object = data.as_object()?;
    names.iter().find_map(|name| {
        object
            .iter()
            .find(|(key, _)| key.to_ascii_lowercase() == *name)
            .map(|(_, v)| v)
    })
}

/// A single value or a list of them, where a string may also hold a JSON
/// list (`"[\"a\",\"b\"]"`).
fn items(value: Option<&Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(Value::String(s)) if s.trim_start().starts_with('[') => {
            match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(list)) => list,
                _ => Vec::new(),
            }
        }
        Some(other) => vec![other.clone()],
    }
}

/// Non-empty strings (numbers taken as their text).
fn strings(value: Option<&Value>) -> BTreeSet<String> {
    items(value).iter().filter_map(|v| text(Some(v))).collect()
}

/// Integers, written as numbers or as strings.
fn numbers(value: Option<&Value>) -> BTreeSet<i64> {
    items(value)
        .iter()
        .filter_map(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect()
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a tenant must look at again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Users to re-read (`v2/user/get`).
    pub users: BTreeSet<String>,
    /// A marketplace app's leavers by unionid, resolved to users by the shell.
    pub unionids: BTreeSet<String>,
    /// Departments to re-read (`department/get`, `listsub`, `user/list`).
    pub departments: BTreeSet<i64>,
    /// Only a full sync will do: too many ids, an unreadable event, or a
    /// connection gap. The id sets are then empty.
    pub full_sync: bool,
    /// The app's scope must be read again (drift, the scope-change Event).
    pub scope: bool,
    /// Who changed the scope in DingTalk (`operatorUnionId`), for the Event.
    pub scope_operators: BTreeSet<String>,
    /// The binding must be checked now (the app was disabled or enabled).
    pub binding: bool,
    /// A marketplace app's state in the organization, as its latest event
    /// told (`org_micro_app_stop`, `_restore`, `_remove`, `org_suite_relieve`).
    pub install: Option<InstallState>,
}

/// A marketplace app's state in an organization, as DingTalk's events tell it
/// on the suite's own connection (`authInfo` shows no state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InstallState {
    /// Installed (`org_suite_auth`, `org_suite_change`) or restored (`org_micro_app_restore`).
    Running,
    /// Stopped (停用, `org_micro_app_stop`).
    Stopped,
    /// The micro-app deleted, the authorization kept (`org_micro_app_remove`).
    Removed,
    /// Uninstalled (`org_suite_relieve`).
    Uninstalled,
}

impl InstallState {
    /// The state an install event tells, if it tells one.
    pub fn of_event(event_type: &str) -> Option<Self> {
        match event_type {
            "org_suite_auth" | "org_suite_change" | "org_micro_app_restore" => {
                Some(InstallState::Running)
            }
            "org_micro_app_stop" => Some(InstallState::Stopped),
            "org_micro_app_remove" => Some(InstallState::Removed),
            "org_suite_relieve" => Some(InstallState::Uninstalled),
            _ => None,
        }
    }

    /// Whether the app no longer runs there: what an unbind's precondition asks.
    pub fn stopped(self) -> bool {
        self != InstallState::Running
    }
}

impl Dirty {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.unionids.is_empty()
            && self.departments.is_empty()
            && !self.full_sync
            && !self.scope
            && !self.binding
            && self.install.is_none()
    }

    /// Whether the directory needs a sync of some kind.
    pub fn needs_sync(&self) -> bool {
        self.full_sync
            || !self.users.is_empty()
            || !self.unionids.is_empty()
            || !self.departments.is_empty()
    }

    /// Adds what `change` asks for.
    pub fn mark(&mut self, change: &Change) {
        match change {
            Change::Users(users) => self.users.extend(users.iter().cloned()),
            Change::UnionIds(ids) => self.unionids.extend(ids.iter().cloned()),
            Change::Departments(departments) => self.departments.extend(departments),
            Change::Scope {
                operator_union_id,
                users,
                departments,
            } => {
                self.scope = true;
                if let Some(op) = operator_union_id
                    && self.scope_operators.len() < MAX_OPERATORS
                {
                    self.scope_operators.insert(op.clone());
                }
                self.users.extend(users.iter().cloned());
                self.departments.extend(departments);
            }
            Change::AppStatus { .. } => self.binding = true,
            Change::Install { event_type } => {
                self.binding = true;
                self.scope = true;
                // Events of one connection arrive in order: the latest wins.
                if let Some(state) = InstallState::of_event(event_type) {
                    self.install = Some(state);
                }
            }
            Change::Unreadable { .. } => self.mark_full_sync(),
            Change::Ignored => {}
        }
        self.escalate();
    }

    /// Only a full sync will do (a connection gap, a failed incremental).
    pub fn mark_full_sync(&mut self) {
        self.full_sync = true;
        self.users.clear();
        self.unionids.clear();
        self.departments.clear();
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: Dirty) {
        self.users.extend(other.users);
        self.unionids.extend(other.unionids);
        self.departments.extend(other.departments);
        self.full_sync |= other.full_sync;
        self.scope |= other.scope;
        for op in other.scope_operators {
            if self.scope_operators.len() >= MAX_OPERATORS {
                break;
            }
            self.scope_operators.insert(op);
        }
        self.binding |= other.binding;
        // `other` arrived later, unless it is a failed batch handed back:
        // then what came meanwhile (self) is the newer.
        self.install = self.install.or(other.install);
        self.escalate();
    }

    /// A full sync replaces the ids when there are too many, or when one is
    /// due anyway.
    fn escalate(&mut self) {
        if self.full_sync
            || self.users.len() + self.unionids.len() + self.departments.len() > MAX_DIRTY_IDS
        {
            self.mark_full_sync();
        }
    }
}

/// One tenant's dirty set and whether a sync of it is running: what
/// arrives meanwhile waits for the next one, so there is at most one
/// running, and each picks up everything that arrived before it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    waiting: Dirty,
    running: bool,
}

impl Pending {
    /// Adds what an event asks for.
    pub fn mark(&mut self, change: &Change) {
        self.waiting.mark(change);
    }

    /// Asks for a full sync (a connection gap).
    pub fn mark_full_sync(&mut self) {
        self.waiting.mark_full_sync();
    }

    /// The batch to work on now, if none is running and something waits;
    /// until [`Pending::finish`], what arrives waits for the next batch.
    pub fn start(&mut self) -> Option<Dirty> {
        if self.running || self.waiting.is_empty() {
            return None;
        }
        self.running = true;
        Some(std::mem::take(&mut self.waiting))
    }

    /// The batch from [`Pending::start`] is done. When it failed, what it
    /// held waits again with what arrived meanwhile.
    pub fn finish(&mut self, batch: Dirty, succeeded: bool) {
        self.running = false;
        if !succeeded {
            self.waiting.merge(batch);
        }
    }

    /// What waits for the next batch.
    pub fn waiting(&self) -> &Dirty {
        &self.waiting
    }

    pub fn is_running(&self) -> bool {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn users(ids: &[&str]) -> Change {
        Change::Users(ids.iter().map(|s| s.to_string()).collect())
    }

    fn departments(ids: &[i64]) -> Change {
        Change::Departments(ids.iter().copied().collect())
    }

    #[test]
    fn user_events_mark_their_users() {
        for t in [
            "user_add_org",
            "user_modify_org",
            "user_leave_org",
            "user_active_org",
        ] {
            assert_eq!(
                change(t, &json!({"timeStamp": "1", "userId": ["u1", "u2"]})),
                users(&["u1", "u2"]),
                "{t}"
            );
        }
    }

    #[test]
    fn a_suite_ticket_is_read_in_either_case() {
        assert_eq!(
            suite_ticket(&json!({"suiteTicket": "t1"})).as_deref(),
            Some("t1")
        );
        assert_eq!(
            suite_ticket(&json!({"SuiteTicket": "t2", "EventType": "suite_ticket"})).as_deref(),
            Some("t2")
        );
        assert_eq!(suite_ticket(&json!({})), None);
        assert_eq!(
            change("suite_ticket", &json!({"suiteTicket": "t1"})),
            Change::Ignored
        );
    }

    #[test]
    fn marketplace_payloads_mark_what_they_name() {
        // A whole user record.
        let record = json!({"userid": "u1", "unionid": "un1", "name": "Zhang San", "department": [2], "active": true});
        for t in [
            "user_add_org",
            "user_modify_org",
            "user_active_org",
            "user_dept_change",
        ] {
            assert_eq!(change(t, &record), users(&["u1"]), "{t}");
        }
        // A leaver: unionid and dingId only.
        assert_eq!(
            change("user_leave_org", &json!({"unionid": "un1", "dingId": "d1"})),
            Change::UnionIds(["un1".to_string()].into())
        );
        // A department's record; a removal names nothing.
        assert_eq!(
            change(
                "org_dept_create",
                &json!({"id": 7, "name": "R&D", "parentid": 1})
            ),
            departments(&[7])
        );
        assert!(matches!(
            change("org_dept_remove", &json!({})),
            Change::Unreadable { .. }
        ));
        // The scope set in DingTalk's console, and the install's state.
        assert!(matches!(
            change("org_micro_app_scope_update", &json!({"agentId": 5})),
            Change::Scope { .. }
        ));
        let mut d = Dirty::default();
        d.mark(&change("org_micro_app_stop", &json!({"agentId": 5})));
        assert!(d.binding && d.scope && !d.needs_sync());
        assert_eq!(d.install, Some(InstallState::Stopped));
        d.mark(&change("org_micro_app_restore", &json!({"agentId": 5})));
        assert_eq!(d.install, Some(InstallState::Running), "the latest wins");
        let mut d = Dirty::default();
        d.mark(&change("user_leave_org", &json!({"unionid": "un1"})));
        assert!(d.needs_sync() && d.unionids.contains("un1"));
        d.mark_full_sync();
        assert!(d.unionids.is_empty());
    }

    #[test]
    fn user_payloads_are_read_leniently() {
        let c = |data| change("user_modify_org", &data);
        assert_eq!(c(json!({"UserId": ["u1"]})), users(&["u1"]), "HTTP case");
        assert_eq!(c(json!({"userId": "u1"})), users(&["u1"]), "one string");
        assert_eq!(c(json!({"userIds": ["u1"]})), users(&["u1"]));
        assert_eq!(c(json!({"userId": [123, "", null]})), users(&["123"]));
        assert_eq!(
            c(json!({"userId": "[\"u1\",\"u2\"]"})),
            users(&["u1", "u2"])
        );
        assert_eq!(
            c(json!({"diffInfo": {"userid": "u3", "prev": {}, "curr": {}}})),
            users(&["u3"])
        );
        // No user to be found: only a full sync is sure to see the change.
        for data in [
            json!({}),
            json!({"userId": []}),
            json!("garbage"),
            Value::Null,
        ] {
            assert_eq!(
                change("user_leave_org", &data),
                Change::Unreadable {
                    event_type: "user_leave_org".into()
                }
            );
        }
    }

    #[test]
    fn department_events_mark_their_departments() {
        for t in ["org_dept_create", "org_dept_modify", "org_dept_remove"] {
            assert_eq!(
                change(t, &json!({"deptId": [5, "6", "x", 7.5]})),
                departments(&[5, 6]),
                "{t}"
            );
        }
        assert_eq!(
            change("org_dept_remove", &json!({"deptId": 9})),
            departments(&[9])
        );
        assert!(matches!(
            change("org_dept_create", &json!({"deptid": []})),
            Change::Unreadable { .. }
        ));
    }

    #[test]
    fn app_events_ask_for_a_scope_or_binding_check() {
        assert_eq!(
            change(
                "inner_app_scopes_change",
                &json!({"eventId": "x", "roleIds": [], "userIds": ["u1"],
                        "operatorUnionId": "op", "deptIds": [3], "unifiedAppId": "a"})
            ),
            Change::Scope {
                operator_union_id: Some("op".into()),
                users: ["u1".to_string()].into(),
                departments: [3].into(),
            }
        );
        assert_eq!(
            change("inner_app_scopes_change", &json!({})),
            Change::Scope {
                operator_union_id: None,
                users: BTreeSet::new(),
                departments: BTreeSet::new(),
            },
            "a scope check needs no ids"
        );
        assert_eq!(
            change(
                "inner_app_status_change",
                &json!({"status": "disable", "operatorUnionId": "op"})
            ),
            Change::AppStatus {
                status: Some("disable".into()),
                operator_union_id: Some("op".into()),
            }
        );
        assert_eq!(change("label_user_change", &json!({})), Change::Ignored);
    }

    #[test]
    fn dirty_gathers_changes_and_escalates_past_the_limit() {
        let mut d = Dirty::default();
        assert!(d.is_empty());
        d.mark(&users(&["u1"]));
        d.mark(&users(&["u1", "u2"]));
        d.mark(&departments(&[4]));
        assert_eq!(d.users.len(), 2, "a set: duplicates count once");
        assert!(d.needs_sync() && !d.full_sync);
        let many: Vec<String> = (0..MAX_DIRTY_IDS).map(|i| format!("x{i}")).collect();
        d.mark(&Change::Users(many.into_iter().collect()));
        assert!(d.full_sync, "over the limit");
        assert!(d.users.is_empty() && d.departments.is_empty());
        d.mark(&users(&["u9"]));
        assert!(d.users.is_empty(), "a full sync covers it");
    }

    #[test]
    fn an_unreadable_event_asks_for_a_full_sync() {
        let mut d = Dirty::default();
        d.mark(&users(&["u1"]));
        d.mark(&Change::Unreadable {
            event_type: "user_leave_org".into(),
        });
        assert!(d.full_sync && d.users.is_empty());
    }

    #[test]
    fn scope_and_binding_checks_are_flags() {
        let mut d = Dirty::default();
        d.mark(&Change::AppStatus {
            status: None,
            operator_union_id: None,
        });
        assert!(d.binding && !d.needs_sync() && !d.is_empty());
        for i in 0..MAX_OPERATORS + 5 {
            d.mark(&Change::Scope {
                operator_union_id: Some(format!("op{i}")),
                users: BTreeSet::new(),
                departments: BTreeSet::new(),
            });
        }
        assert!(d.scope);
        assert_eq!(d.scope_operators.len(), MAX_OPERATORS);
    }

    #[test]
    fn events_during_a_sync_wait_for_the_next_one() {
        let mut p = Pending::default();
        assert_eq!(p.start(), None, "nothing waits");
        p.mark(&users(&["u1"]));
        let first = p.start().expect("a batch");
        assert_eq!(first.users.len(), 1);
        p.mark(&users(&["u2"]));
        assert_eq!(p.start(), None, "one at a time");
        p.finish(first, true);
        let second = p.start().expect("the next batch");
        assert_eq!(second.users, ["u2".to_string()].into());
        p.mark(&users(&["u3"]));
        p.finish(second, false);
        assert!(!p.is_running());
        assert_eq!(
            p.waiting().users,
            ["u2".to_string(), "u3".to_string()].into(),
            "a failed batch waits again"
        );
    }
}
