//! Local mode end to end: `dingbind dev` runs as a process on a copy of
//! `examples/tenants/` with its embedded DingTalk simulator and a throwaway
//! SQLite store; the tests edit files, call the simulator's admin API and read
//! `dingbind status -o json` (and the directory in the store). Also: the
//! README's local-mode commands, and `dingbind plan`.
//!
//! Every wait is bounded by a deadline ([`WAIT`]) and fails with the log and
//! the last status; nothing asserts how fast something happened.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use dingbind::{api::TenantKey, store::Store};
use serde_json::Value;

/// Upper bound of every wait (the usual case is well under a second or two).
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dingbind")
}

/// A `dingbind` command with a clean environment (no store or log level
/// inherited from the person running the tests).
fn dingbind() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("DINGBIND_STORE")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Moves umbrella's trial end in a scratch copy of `examples/tenants/` to 30
/// days from now, so that the tests never depend on the date the example names.
fn renew_umbrella_trial(tenants: &Path) {
    let path = tenants.join("umbrella.yaml");
    let text = fs::read_to_string(&path).expect("umbrella.yaml in the copy");
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(30 * 24);
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.find("expiresAt: ") {
            Some(i) => {
                found = true;
                format!(
                    "{}expiresAt: \"{}\"",
                    &l[..i],
                    end.round(jiff::Unit::Second).expect("round")
                )
            }
            None => l.to_string(),
        })
        .collect();
    assert!(found, "umbrella.yaml has no trial.expiresAt:\n{text}");
    fs::write(&path, out.join("\n") + "\n").expect("write umbrella.yaml");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Log text without terminal colours, whatever the subscriber decided.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn key(name: &str) -> TenantKey {
    TenantKey {
        namespace: "tenants".into(),
        name: name.into(),
    }
}

/// `dingbind dev` running on a scratch folder; killed when dropped, even when
/// a test panics.
struct Dev {
    child: RefCell<Child>,
    /// The watched folder.
    dir: PathBuf,
    /// Where the process logs (stdout and stderr).
    log: PathBuf,
    store: String,
    sim: String,
    rt: tokio::runtime::Runtime,
    /// Scratch root of [`Dev::start`]: `tenants/`, `store.db`, `dev.log`.
    /// Declared last: removed once the process is gone.
    root: Option<tempfile::TempDir>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!("--- dingbind dev log ---\n{}", self.log());
        }
    }
}

impl Dev {
    /// Starts `dingbind dev` on a copy of `examples/tenants/` and waits until
    /// every example tenant has a status.
    fn start() -> Dev {
        Dev::start_with(&[])
    }

    /// `dingbind dev` on a copy of the examples, with `args` added.
    fn start_with(args: &[&str]) -> Dev {
        let root = tempfile::tempdir().unwrap();
        copy_dir(
            &Path::new(MANIFEST_DIR).join("examples/tenants"),
            &root.path().join("tenants"),
        );
        renew_umbrella_trial(&root.path().join("tenants"));
        let store = format!("sqlite://{}", root.path().join("store.db").display());
        let addr = format!("127.0.0.1:{}", free_port());
        let log = fs::File::create(root.path().join("dev.log")).unwrap();
        let child = dingbind()
            .arg("dev")
            .arg("--dir")
            .arg(root.path().join("tenants"))
            .arg("--org")
            .arg(Path::new(MANIFEST_DIR).join("examples/org.yaml"))
            .args(["--store", &store, "--sim-listen", &addr])
            .args(["--login-listen", "127.0.0.1:0"])
            .args(args)
            // The login token file lands here.
            .current_dir(root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dingbind dev");
        let dev = Dev {
            child: RefCell::new(child),
            dir: root.path().join("tenants"),
            log: root.path().join("dev.log"),
            store,
            sim: format!("http://{addr}"),
            rt: runtime(),
            root: Some(root),
        };
        dev.wait_started();
        dev.wait("every example tenant has a status", |d| {
            (d.statuses().len() == EXPECTED.len()).then_some(())
        });
        dev
    }

    /// Waits until dev has opened (and created) its store and watches the
    /// folder. Only then do the tests open the store themselves: two processes
    /// creating the same SQLite file at once can fail with "database is
    /// locked" (a store issue, not local mode's).
    fn wait_started(&self) {
        self.wait_for_log("watching the folder", |l| l.contains("watching Tenants"));
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A scratch folder that lives as long as this `dingbind dev`.
    fn scratch(&self) -> &Path {
        self.root.as_ref().expect("started by Dev::start").path()
    }

    fn log(&self) -> String {
        plain(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// `dingbind status -o json`, parsed.
    fn status_json(&self) -> Value {
        let out = dingbind()
            .args(["status", "--store", &self.store, "-o", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status -o json is JSON")
    }

    /// Every tenant's status, by `namespace/name`.
    fn statuses(&self) -> Vec<(String, Value)> {
        self.status_json()["tenants"]
            .as_array()
            .expect("tenants array")
            .iter()
            .map(|t| {
                (
                    format!(
                        "{}/{}",
                        t["namespace"].as_str().unwrap(),
                        t["name"].as_str().unwrap()
                    ),
                    t["status"].clone(),
                )
            })
            .collect()
    }

    fn status(&self, name: &str) -> Value {
        self.statuses()
            .into_iter()
            .find(|(k, _)| k == &format!("tenants/{name}"))
            .map(|(_, s)| s)
            .unwrap_or(Value::Null)
    }

    /// The userids in a tenant's directory, as `dingbind directory -o json` prints them.
    fn members(&self, name: &str) -> BTreeSet<String> {
        let out = dingbind()
            .args(["directory", &format!("tenants/{name}"), "-o", "json"])
            .args(["--store", &self.store])
            .output()
            .unwrap();
        assert!(out.status.success(), "directory failed: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("directory -o json is JSON");
        // A missing array fails: it must never read as an empty directory.
        v["members"]
            .as_array()
            .unwrap_or_else(|| panic!("no members array in `dingbind directory -o json`: {v}"))
            .iter()
            .map(|m| {
                m["userid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a member without a userid: {m}"))
                    .to_string()
            })
            .collect()
    }

    /// The last accepted version of a Tenant, as local mode stored it.
    fn accepted(&self, name: &str) -> Value {
        self.rt.block_on(async {
            let store = Store::connect(&self.store).await.unwrap();
            let doc = store
                .document(&key(name), dingbind::validate::admission::ACCEPTED)
                .await
                .unwrap();
            store.close().await;
            doc.unwrap_or(Value::Null)
        })
    }

    /// Waits until `f` answers, or fails after [`WAIT`] with the log and status.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&Dev) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if let Ok(Some(exit)) = self.child.borrow_mut().try_wait() {
                panic!("dingbind dev exited ({exit}) while waiting for: {what}");
            }
            if Instant::now() > deadline {
                panic!(
                    "gave up waiting for: {what}\n--- status ---\n{:#}",
                    self.status_json()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn wait_for_status(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.wait(&format!("tenants/{name}: {what}"), |d| {
            let s = d.status(name);
            f(&s).then_some(s)
        })
    }

    fn wait_for_log(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        self.wait(&format!("the log: {what}"), |d| {
            d.log().lines().find(|l| f(l)).map(str::to_string)
        })
    }

    /// Replaces `from` by `to` in a file of the watched folder, as an editor would.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.file(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} does not contain {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// A call to the simulator's admin API; answers the JSON body.
    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.sim);
        self.rt.block_on(async {
            let client = reqwest::Client::new();
            let mut req = client.request(method.parse().unwrap(), &url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("simulator admin API reachable");
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert!(status.is_success(), "{method} {url}: {status}: {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ready(s: &Value) -> (&str, &str) {
    let c = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    (
        c.and_then(|c| c["status"].as_str()).unwrap_or(""),
        c.and_then(|c| c["reason"].as_str()).unwrap_or(""),
    )
}

fn members_count(s: &Value) -> Option<u64> {
    s["directory"]["members"].as_u64()
}

/// What an example tenant settles to, from `examples/tenants/` and `examples/org.yaml`.
struct Expected {
    name: &'static str,
    mode: &'static str,
    corp: Option<&'static str>,
    members: Option<u64>,
    departments: Option<u64>,
    /// The Ready condition's status and reason (one of these).
    ready: &'static [(&'static str, &'static str)],
}

const EXPECTED: &[Expected] = &[
    // allEmployees: 6 people, minus the creator (owner@acme.example); 4 departments.
    Expected {
        name: "acme",
        mode: "DingTalk",
        corp: Some("dingacme"),
        members: Some(5),
        departments: Some(4),
        ready: &[("True", "Reconciled")],
    },
    // Engineering (with Backend) and Finance, plus g-ceo and g-counsel.
    Expected {
        name: "globex",
        mode: "DingTalk",
        corp: Some("dingglobex"),
        members: Some(6),
        departments: Some(3),
        ready: &[("True", "Reconciled")],
    },
    Expected {
        name: "initech",
        mode: "Public",
        corp: None,
        members: None,
        departments: None,
        ready: &[("True", "PublicMode")],
    },
    // Research: 2 people (the tests' copy moves its trial's end to 30 days from now).
    Expected {
        name: "umbrella",
        mode: "DingTalk",
        corp: Some("dingumbrella"),
        members: Some(2),
        departments: Some(1),
        ready: &[("True", "Reconciled")],
    },
    // The marketplace app is not installed yet: the tenant waits for it
    // (for the suite's ticket first, which only events bring).
    Expected {
        name: "wayne",
        mode: "DingTalk",
        corp: None,
        members: None,
        departments: None,
        ready: &[
            ("False", "NotInstalled"),
            ("False", "WaitingForSuiteTicket"),
        ],
    },
];

fn settled(name: &str, s: &Value) -> bool {
    let e = EXPECTED
        .iter()
        .find(|e| e.name == name)
        .expect("an example tenant");
    s["mode"] == e.mode
        && s["boundCorpId"].as_str() == e.corp
        && members_count(s) == e.members
        && s["directory"]["departments"].as_u64() == e.departments
        && e.ready.contains(&ready(s))
}

fn wait_until_settled(dev: &Dev) {
    for e in EXPECTED {
        dev.wait_for_status(e.name, "settles as the example says", |s| {
            settled(e.name, s)
        });
    }
}

// ---------------------------------------------------------------------------
// dingbind dev
// ---------------------------------------------------------------------------

#[test]
fn every_example_tenant_reaches_its_expected_status() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    let statuses = dev.statuses();
    let names: Vec<&str> = statuses.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenants/acme",
            "tenants/globex",
            "tenants/initech",
            "tenants/umbrella",
            "tenants/wayne"
        ]
    );
    for (key, s) in &statuses {
        let name = key.trim_start_matches("tenants/");
        assert!(settled(name, s), "{key}: {s:#}");
        assert_eq!(s["observedGeneration"], 1, "{key}");
    }
    // The directory in the store matches the counts in the status; the
    // creator is never in it.
    let acme = dev.members("acme");
    assert_eq!(acme.len(), 5);
    assert!(!acme.contains("a-owner"), "{acme:?}");
    assert_eq!(
        dev.members("globex"),
        ["g-ceo", "g-counsel", "g-eng1", "g-eng2", "g-eng3", "g-fin"]
            .map(String::from)
            .into()
    );
    // The scope was pushed to DingTalk as declared.
    let globex = dev.status("globex");
    assert_eq!(globex["visibleScope"]["deptIds"], serde_json::json!([2, 5]));
    // The table form lists the same tenants.
    let table = dingbind()
        .args(["status", "--store", &dev.store])
        .output()
        .unwrap();
    assert!(table.status.success());
    for (key, _) in &statuses {
        assert!(stdout(&table).contains(key.as_str()), "{}", stdout(&table));
    }
}

#[test]
fn a_scope_edit_is_followed_by_the_directory() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    // Globex drops Finance (department 5): Qian Wu (g-fin) leaves the
    // directory; Zheng San stays (also in Backend, under Engineering).
    dev.edit("globex.yaml", "departments: [2, 5]", "departments: [2]");
    dev.wait("globex's directory follows the new scope", |d| {
        (!d.members("globex").contains("g-fin")).then_some(())
    });
    assert_eq!(
        dev.members("globex"),
        ["g-ceo", "g-counsel", "g-eng1", "g-eng2", "g-eng3"]
            .map(String::from)
            .into()
    );
    let s = dev.wait_for_status("globex", "5 members at generation 2", |s| {
        members_count(s) == Some(5) && s["observedGeneration"] == 2
    });
    assert_eq!(s["visibleScope"]["deptIds"], serde_json::json!([2]));
    assert!(dev.log().contains("Corrected the app's visible scope"));
}

#[test]
fn a_member_who_left_is_removed_by_the_event_without_a_sync_request() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    // The app's first Stream connection asks for one more full sync (events
    // from before it are unknown): wait for it, so that only the event can
    // bring the leave in.
    dev.wait("globex's full sync after its first connection", |d| {
        let full_syncs = d
            .log()
            .lines()
            .filter(|l| {
                l.contains("tenant=tenants/globex")
                    && l.contains("reconcile::sync: directory synced")
            })
            .count();
        (full_syncs >= 2).then_some(())
    });
    let before = dev.status("globex");
    dev.admin("POST", "/_sim/corps/dingglobex/users/g-eng2/leave", None);
    dev.wait("g-eng2 gone from globex's directory", |d| {
        (!d.members("globex").contains("g-eng2")).then_some(())
    });
    let s = dev.wait_for_status("globex", "the count follows", |s| {
        members_count(s) == Some(5)
    });
    // No request handled: the event brought the change, read by an
    // incremental sync.
    assert_eq!(
        s["lastHandledSyncRequest"],
        before["lastHandledSyncRequest"]
    );
    dev.wait_for_log("the incremental sync", |l| {
        l.contains("tenant=tenants/globex")
            && l.contains("directory updated from events")
            && l.contains("removed=1")
    });
}

#[test]
fn a_member_who_left_is_removed_on_a_requested_sync() {
    // Without events: only the request brings the change in.
    let dev = Dev::start_with(&["--events", "off"]);
    wait_until_settled(&dev);
    let record = dev.admin("POST", "/_sim/corps/dingglobex/users/g-eng1/leave", None);
    assert_eq!(record["userId"], "g-eng1", "{record}");
    dev.edit(
        "globex.yaml",
        "dingbind.dev/sync-requested-at: \"initial\"",
        "dingbind.dev/sync-requested-at: \"after-zhou-yi-left\"",
    );
    dev.wait("g-eng1 gone from globex's directory", |d| {
        (!d.members("globex").contains("g-eng1")).then_some(())
    });
    assert_eq!(dev.members("globex").len(), 5);
    let s = dev.wait_for_status("globex", "the request handled", |s| {
        s["lastHandledSyncRequest"] == "after-zhou-yi-left" && members_count(s) == Some(5)
    });
    assert_eq!(s["directory"]["removed"], 1);
    // An annotation is not a spec change.
    assert_eq!(s["observedGeneration"], 1);
}

/// Switches acme to Public, checks it waits for its app to be disabled, then
/// disables the app through the admin API and waits for the unbind.
fn unbind_acme(dev: &Dev) {
    dev.edit("acme.yaml", "mode: DingTalk", "mode: Public");
    // acme's creator is complete (email and password): the unbind waits for the app.
    let s = dev.wait_for_status("acme", "waits on AppStillEnabled", |s| {
        ready(s) == ("False", "AppStillEnabled")
    });
    assert_eq!(
        s["mode"], "DingTalk",
        "only requested, not carried out: {s:#}"
    );
    dev.admin(
        "PUT",
        "/_sim/corps/dingacme/apps/1001",
        Some(serde_json::json!({"enabled": false})),
    );
    dev.wait_for_status("acme", "unbound", |s| s["mode"] == "Public");
}

#[test]
fn switching_to_public_waits_on_a_precondition_then_unbinds_once_the_app_is_disabled() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    // globex's creator has a phone but no password: the unbind waits for it.
    dev.edit("globex.yaml", "mode: DingTalk", "mode: Public");
    dev.wait_for_status("globex", "waits on CreatorAccountIncomplete", |s| {
        ready(s) == ("False", "CreatorAccountIncomplete") && s["mode"] == "DingTalk"
    });
    unbind_acme(&dev);
    let s = dev.status("acme");
    assert_eq!(s["mode"], "Public");
    assert_eq!(s["unbindReason"], "Requested");
    assert!(s["unboundAt"].is_string(), "{s:#}");
    assert_eq!(ready(&s), ("True", "PublicMode"));
    assert!(s["directory"].is_null(), "{s:#}");
    assert!(
        dev.members("acme").is_empty(),
        "the DingTalk-synced directory is cleared"
    );
    // globex is still only waiting (its creator has no password).
    let g = dev.status("globex");
    assert_eq!(ready(&g), ("False", "CreatorAccountIncomplete"));
    assert_eq!(g["mode"], "DingTalk");
}

#[test]
fn switching_back_to_dingtalk_after_the_unbind_is_refused_and_public_stays() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    unbind_acme(&dev);
    let before = dev.accepted("acme");
    assert_eq!(before["manifest"]["spec"]["mode"], "Public");

    dev.edit("acme.yaml", "mode: Public", "mode: DingTalk");
    let file = dev.file("acme.yaml").display().to_string();
    let line = dev.wait_for_log("the edit refused, naming the file", |l| {
        l.contains("refused") && l.contains(&file) && l.contains("cannot return")
    });
    assert!(line.contains("spec.mode"), "{line}");
    dev.wait_for_log("the last accepted version stays in force", |l| {
        l.contains("stays in force") && l.contains(&file) && l.contains("tenants/acme")
    });
    // The last accepted version is still the Public one, and in force.
    assert_eq!(dev.accepted("acme"), before);
    let s = dev.status("acme");
    assert_eq!(s["mode"], "Public", "{s:#}");
    assert_eq!(ready(&s), ("True", "PublicMode"));
}

#[test]
fn a_broken_file_is_reported_and_the_others_go_on() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    fs::write(dev.file("broken.yaml"), "kind: Tenant\nspec: [unclosed\n").unwrap();
    // A Tenant's own file broken mid-edit: globex is not deleted (its
    // deletionPolicy is Delete, so that would drop its directory).
    let globex = fs::read_to_string(dev.file("globex.yaml")).unwrap();
    fs::write(
        dev.file("globex.yaml"),
        globex.replace("visibleScope:", "visibleScope: ]"),
    )
    .unwrap();
    // Another tenant's edit still goes through.
    dev.edit("umbrella.yaml", "departments: [2]", "departments: [1]");
    dev.wait_for_status("umbrella", "its new scope pushed", |s| {
        s["visibleScope"]["deptIds"] == serde_json::json!([1]) && s["observedGeneration"] == 2
    });

    for name in ["broken.yaml", "globex.yaml"] {
        let file = dev.file(name).display().to_string();
        dev.wait_for_log(&format!("{name} reported"), |l| {
            l.contains("ERROR") && l.contains(&file) && l.contains("not valid YAML")
        });
    }
    dev.wait_for_log("globex kept", |l| {
        l.contains("tenants/globex") && l.contains("stays in force")
    });
    assert!(!dev.log().contains("tenant removed"), "{}", dev.log());
    assert_eq!(dev.members("globex").len(), 6);
    assert!(settled("globex", &dev.status("globex")));

    // Fixed again: back to normal, nothing lost.
    fs::write(dev.file("globex.yaml"), globex).unwrap();
    fs::remove_file(dev.file("broken.yaml")).unwrap();
    dev.edit("acme.yaml", "interval: 10m", "interval: 11m");
    dev.wait_for_status("acme", "generation 2 reconciled", |s| {
        s["observedGeneration"] == 2
    });
    assert!(settled("globex", &dev.status("globex")));
    assert_eq!(dev.members("globex").len(), 6);
}

#[test]
fn a_secret_edited_in_the_folder_is_picked_up() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    // A wrong app secret: the binding check fails.
    dev.edit(
        "umbrella.yaml",
        "appSecret: umbrella-secret",
        "appSecret: not-the-secret",
    );
    let s = dev.wait_for_status("umbrella", "InvalidCredentials", |s| {
        ready(s) == ("False", "InvalidCredentials")
    });
    let bound = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Bound")
        .unwrap();
    assert_eq!(bound["status"], "False");
    // The right one again, as base64 `data` this time.
    dev.edit(
        "umbrella.yaml",
        "stringData:\n  appKey: umbrella-key\n  appSecret: not-the-secret",
        // umbrella-key / umbrella-secret
        "data:\n  appKey: dW1icmVsbGEta2V5\n  appSecret: dW1icmVsbGEtc2VjcmV0",
    );
    dev.wait_for_status("umbrella", "ready again", |s| settled("umbrella", s));
    // The secret itself never shows in the log.
    assert!(!dev.log().contains("not-the-secret"));
}

// ---------------------------------------------------------------------------
// dingbind plan
// ---------------------------------------------------------------------------

/// A copy of the watched folder to plan against (dev does not see it).
fn plan_copy(dev: &Dev) -> PathBuf {
    let to = dev.scratch().join("proposed");
    copy_dir(&dev.dir, &to);
    to
}

fn plan(dev: &Dev, path: &Path) -> Output {
    dingbind()
        .arg("plan")
        .arg("-f")
        .arg(path)
        .args(["--store", &dev.store, "--dingtalk-url", &dev.sim])
        .output()
        .unwrap()
}

fn plan_in(cwd: &Path, args: &[&str]) -> Output {
    dingbind()
        .current_dir(cwd)
        .arg("plan")
        .arg("-f")
        .arg(Path::new(MANIFEST_DIR).join("examples/tenants"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn plan_without_a_dingtalk_url_reads_no_dingtalk_and_creates_no_store() {
    let cwd = tempfile::tempdir().unwrap();
    let out = plan_in(cwd.path(), &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("DingTalk is not read"), "{text}");
    assert!(text.contains("does not exist yet"), "{text}");
    assert!(!text.contains("reading DingTalk"), "{text}");
    let left: Vec<_> = fs::read_dir(cwd.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "plan created {left:?} (the default store)");
}

#[test]
fn plan_told_to_read_an_unreachable_dingtalk_exits_non_zero() {
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = plan_in(cwd.path(), &["--dingtalk-url", &url]);
    let text = stdout(&out);
    assert!(
        !out.status.success(),
        "exits 0 though DingTalk was unreachable:\n{text}"
    );
    assert!(text.contains("ERROR: reading DingTalk"), "{text}");
}

#[test]
fn plan_leaves_an_existing_store_unchanged() {
    let cwd = tempfile::tempdir().unwrap();
    let path = cwd.path().join("store.db");
    let url = format!("sqlite://{}", path.display());
    runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        store.close().await;
    });
    let before = fs::read(&path).unwrap();
    let out = plan_in(cwd.path(), &["--store", &url]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("does not exist yet"));
    assert_eq!(fs::read(&path).unwrap(), before, "plan wrote to the store");
}

/// The plan's lines for one tenant (from its header to the next one).
fn section(plan: &str, tenant: &str) -> String {
    let header = format!("Tenant tenants/{tenant} ");
    let start = plan
        .find(&header)
        .unwrap_or_else(|| panic!("no {header:?} in:\n{plan}"));
    let rest = &plan[start + header.len()..];
    let end = rest.find("\nTenant ").map_or(rest.len(), |i| i + 1);
    plan[start..start + header.len() + end].to_string()
}

#[test]
fn plan_shows_scope_changes_and_member_adds_and_removes() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    let proposed = plan_copy(&dev);
    // Finance out, Sales in: Qian Wu goes, Feng Si comes (Chen Jing is
    // already named on her own).
    let globex = proposed.join("globex.yaml");
    let text = fs::read_to_string(&globex).unwrap();
    fs::write(
        &globex,
        text.replace("departments: [2, 5]", "departments: [2, 4]"),
    )
    .unwrap();
    let out = plan(&dev, &proposed);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let g = section(&text, "globex");
    assert!(g.contains("visible scope: departments +[4] -[5]"), "{g}");
    // One added, one removed (and the members whose departments in the
    // directory change are updated).
    assert!(g.contains("directory: members +1 ~"), "{g}");
    assert!(g.contains(" -1, departments +1 "), "{g}");
    assert!(g.contains("+ Feng Si (g-sales)"), "{g}");
    assert!(g.contains("- g-fin"), "{g}");
    assert!(g.contains("-> 6 members"), "{g}");
    // Untouched tenants: nothing to do.
    let a = section(&text, "acme");
    assert!(a.contains("unchanged"), "{a}");
    assert!(a.contains("members +0 ~0 -0"), "{a}");
    // Nothing was done: the directory is as before.
    assert!(dev.members("globex").contains("g-fin"));
    assert!(!dev.members("globex").contains("g-sales"));
}

#[test]
fn plan_marks_an_unbind_request_irreversible() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    let proposed = plan_copy(&dev);
    let acme = proposed.join("acme.yaml");
    let text = fs::read_to_string(&acme).unwrap();
    fs::write(&acme, text.replace("mode: DingTalk", "mode: Public")).unwrap();
    let out = plan(&dev, &acme);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let a = section(&text, "acme");
    assert!(a.contains("UNBIND requested (irreversible"), "{a}");
    assert!(
        a.contains("warning:") && a.contains("never be undone"),
        "{a}"
    );
    // Planned, not done.
    assert_eq!(dev.status("acme")["mode"], "DingTalk");
}

#[test]
fn plan_refuses_a_return_to_dingtalk_with_a_non_zero_exit() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    unbind_acme(&dev);
    // The folder as dev has it now (acme Public), with acme back to DingTalk.
    let proposed = plan_copy(&dev);
    let acme = proposed.join("acme.yaml");
    let text = fs::read_to_string(&acme).unwrap();
    fs::write(&acme, text.replace("mode: Public", "mode: DingTalk")).unwrap();
    let out = plan(&dev, &proposed);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let a = section(&text, "acme");
    assert!(a.contains("REFUSED"), "{a}");
    assert!(a.contains("cannot return"), "{a}");
    // The other tenants are still planned.
    assert!(section(&text, "globex").contains("DingTalk mode"), "{text}");
}

#[test]
fn a_typo_in_the_agent_id_while_an_unbind_waits_is_refused_by_dev_and_by_plan() {
    let dev = Dev::start();
    wait_until_settled(&dev);
    dev.edit("acme.yaml", "mode: DingTalk", "mode: Public");
    dev.wait_for_status("acme", "waits on AppStillEnabled", |s| {
        ready(s) == ("False", "AppStillEnabled")
    });
    let before = dev.accepted("acme");
    dev.edit("acme.yaml", "agentId: 1001", "agentId: 1010");
    let file = dev.file("acme.yaml").display().to_string();
    dev.wait_for_log("the typo refused, naming the file", |l| {
        l.contains("refused")
            && l.contains(&file)
            && l.contains("cannot change while the tenant is bound")
    });
    assert_eq!(dev.accepted("acme"), before, "the bound app stays in force");
    // plan says the same of the folder, and exits 1.
    let out = plan(&dev, &dev.file("acme.yaml"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    // Nothing was unbound on the typo; the real app, once disabled, is.
    assert_eq!(dev.status("acme")["mode"], "DingTalk");
    dev.admin(
        "PUT",
        "/_sim/corps/dingacme/apps/1001",
        Some(serde_json::json!({"enabled": false})),
    );
    dev.wait_for_status("acme", "unbound", |s| s["mode"] == "Public");
}

// ---------------------------------------------------------------------------
// The README's commands
// ---------------------------------------------------------------------------

/// The shell commands in README.md's `sh` blocks between
/// `<!-- readme-test:begin -->` and `<!-- readme-test:end -->`, in order.
fn readme_commands() -> Vec<String> {
    let readme = fs::read_to_string(Path::new(MANIFEST_DIR).join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut rest = readme.as_str();
    while let Some(begin) = rest.find("<!-- readme-test:begin -->") {
        let after = &rest[begin..];
        let end = after
            .find("<!-- readme-test:end -->")
            .expect("readme-test:end after readme-test:begin");
        let mut in_sh = false;
        for line in after[..end].lines() {
            let t = line.trim();
            if t.starts_with("```") {
                in_sh = !in_sh && t == "```sh";
            } else if in_sh && !t.is_empty() && !t.starts_with('#') {
                commands.push(t.to_string());
            }
        }
        rest = &after[end..];
    }
    commands
}

/// The command without its trailing `# comment`, and the comment.
fn split_comment(cmd: &str) -> (&str, &str) {
    match cmd.find("   #").or_else(|| cmd.find("  #")) {
        Some(i) => (cmd[..i].trim(), cmd[i..].trim().trim_start_matches('#')),
        None => (cmd.trim(), ""),
    }
}

#[test]
fn readme_local_mode_commands_work() {
    let commands = readme_commands();
    assert!(
        commands.iter().any(|c| c.starts_with("scripts/test.sh")),
        "the README's second command is scripts/test.sh: {commands:#?}"
    );
    assert_eq!(
        commands.first().map(|c| split_comment(c).0),
        Some("cargo run --release -- dev"),
        "the README's first command runs dingbind dev"
    );
    // A scratch copy of what the commands touch; the default store
    // (dingbind.db) lands there too. The simulator gets a free port instead of 8089.
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(MANIFEST_DIR).join("examples"),
        &scratch.path().join("examples"),
    );
    renew_umbrella_trial(&scratch.path().join("examples/tenants"));
    copy_dir(
        &Path::new(MANIFEST_DIR).join("tests/fixtures/validate"),
        &scratch.path().join("tests/fixtures/validate"),
    );
    let port = free_port();
    let login_port = free_port();
    let shell = |cmd: &str| -> String {
        let cmd = cmd
            .replace("cargo run --release --", &format!("'{}'", bin()))
            .replace("cargo run --", &format!("'{}'", bin()))
            .replace("127.0.0.1:8089", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:8090", &format!("127.0.0.1:{login_port}"));
        cmd.replace(
            &format!("'{}' dev", bin()),
            &format!(
                "'{}' dev --sim-listen 127.0.0.1:{port} --login-listen 127.0.0.1:{login_port}",
                bin()
            ),
        )
    };
    let run = |cmd: &str| -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(shell(cmd))
            .current_dir(scratch.path())
            .env_remove("DINGBIND_STORE")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };

    // What each step must lead to, matched in order on the README's commands;
    // every one must be met, so a README that drops or reorders a step fails.
    struct Step {
        matches: &'static str,
        check: fn(&Dev),
        done: bool,
    }
    fn globex_members(n: u64) -> impl Fn(&Value) -> bool {
        move |s| members_count(s) == Some(n)
    }
    let mut steps = [
        Step {
            matches: "-- dev",
            check: |d| {
                d.wait_started();
                wait_until_settled(d);
            },
            done: false,
        },
        Step {
            matches: "globex.yaml",
            check: |d| {
                d.wait_for_status("globex", "5 members", globex_members(5));
            },
            done: false,
        },
        Step {
            matches: "/leave",
            check: |d| {
                d.wait_for_status("globex", "4 members", globex_members(4));
            },
            done: false,
        },
        Step {
            matches: "dingbind-suite -H",
            check: |d| {
                d.wait_for_status("wayne", "bound with 2 members", |s| {
                    s["mode"] == "DingTalk" && members_count(s) == Some(2)
                });
            },
            done: false,
        },
        Step {
            matches: "dingbind-suite/scope",
            check: |d| {
                d.wait_for_status("wayne", "3 members", |s| members_count(s) == Some(3));
            },
            done: false,
        },
        Step {
            matches: "examples/tenants/wayne.yaml",
            check: |d| {
                d.wait_for_status("wayne", "waits on AppStillEnabled", |s| {
                    ready(s) == ("False", "AppStillEnabled")
                });
            },
            done: false,
        },
        Step {
            matches: "dingbind-suite/stop",
            check: |d| {
                d.wait_for_status("wayne", "unbound", |s| s["mode"] == "Public");
            },
            done: false,
        },
        Step {
            matches: "s/mode: DingTalk/mode: Public/",
            check: |d| {
                d.wait_for_status("acme", "waits on AppStillEnabled", |s| {
                    ready(s) == ("False", "AppStillEnabled")
                });
            },
            done: false,
        },
        Step {
            matches: "apps/1001",
            check: |d| {
                d.wait_for_status("acme", "unbound", |s| s["mode"] == "Public");
            },
            done: false,
        },
        Step {
            matches: "s/mode: Public/mode: DingTalk/",
            check: |d| {
                d.wait_for_log("the return to DingTalk refused", |l| {
                    l.contains("refused") && l.contains("examples/tenants/acme.yaml")
                });
                assert_eq!(d.status("acme")["mode"], "Public");
            },
            done: false,
        },
    ];

    let mut dev: Option<Dev> = None;
    let mut ran = BTreeSet::new();
    for cmd in &commands {
        let (command, comment) = split_comment(cmd);
        if command.starts_with("scripts/test.sh") {
            continue; // the suite itself
        }
        if command.ends_with("-- dev") {
            assert!(dev.is_none(), "one dev at a time: {command}");
            let log = fs::File::create(scratch.path().join("dev.log")).unwrap();
            let child = Command::new("sh")
                .arg("-c")
                .arg(format!("exec {}", shell(command)))
                .current_dir(scratch.path())
                .env_remove("DINGBIND_STORE")
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            dev = Some(Dev {
                child: RefCell::new(child),
                dir: scratch.path().join("examples/tenants"),
                log: scratch.path().join("dev.log"),
                // The README relies on the default store, `dingbind.db`.
                store: format!("sqlite://{}", scratch.path().join("dingbind.db").display()),
                sim: format!("http://127.0.0.1:{port}"),
                rt: runtime(),
                root: None,
            });
        } else {
            let out = run(command);
            let dingbind_cmd = command.starts_with("cargo run");
            let refused =
                dingbind_cmd && (comment.contains("refused") || comment.contains("exits 1"));
            assert_eq!(
                out.status.success(),
                !refused,
                "{command}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                stdout(&out),
                stderr(&out)
            );
        }
        if let Some(step) = steps
            .iter_mut()
            .find(|s| !s.done && command.contains(s.matches))
        {
            let d = dev.as_ref().expect("dev runs before the other steps");
            (step.check)(d);
            step.done = true;
        }
        let verb = command
            .split_whitespace()
            .skip_while(|w| *w != "--")
            .nth(1)
            .unwrap_or("")
            .to_string();
        ran.insert(verb);
    }
    let missed: Vec<&str> = steps
        .iter()
        .filter(|s| !s.done)
        .map(|s| s.matches)
        .collect();
    assert!(missed.is_empty(), "README steps missing: {missed:?}");
    for verb in ["dev", "status", "plan", "validate"] {
        assert!(ran.contains(verb), "the README shows no `dingbind {verb}`");
    }
}

// ---------------------------------------------------------------------------
// docs/status-json.md
// ---------------------------------------------------------------------------

#[test]
fn status_json_doc_example_has_the_format_of_status_json() {
    let doc = fs::read_to_string(Path::new(MANIFEST_DIR).join("docs/status-json.md")).unwrap();
    let start = doc.find("```json\n").expect("a json example") + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let example: Value = serde_json::from_str(&doc[start..end]).expect("the example is JSON");
    let rows = example["tenants"].as_array().expect("tenants");
    assert!(!rows.is_empty());
    for row in rows {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, BTreeSet::from(["namespace", "name", "status"]));
        // Every field of the example is a field of the status, spelled the same.
        let status: dingbind::api::TenantStatus =
            serde_json::from_value(row["status"].clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            row["status"],
            "{row:#}"
        );
    }
}
