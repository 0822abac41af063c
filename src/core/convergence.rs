//! Tests only: an organization in DingTalk as data ([`World`]), the reads
//! of the full and the incremental sync answered from it, and the property
//! that the directory follows it through events dropped (which dingbind only
//! sees as a connection gap, hence a full sync), duplicated, delayed and
//! reordered, with changes made while a sync runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::absence::{absence, keep_unconfirmed};
use super::desired::{CreatorIdentity, desired_directory};
use super::directory::{Department, Directory, Member, apply, diff};
use super::dirty::{Dirty, Pending, change};
use super::events::{Action, Seen, decide, parse_frame};
use super::guard::guard;
use super::incremental::{
    Answer, DepartmentRead, Escalation, Incremental, Next, Read, full_sync_calls,
};
use super::scope::DesiredScope;

/// A department as DingTalk holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dept {
    pub parent: Option<i64>,
    pub name: String,
    pub order: i64,
}

/// An organization in DingTalk: departments (1 is the root) and users, each
/// with all their departments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    pub departments: BTreeMap<i64, Dept>,
    pub users: BTreeMap<String, Member>,
}

impl World {
    /// `department/get`.
    fn get_department(&self, id: i64) -> Option<Department> {
        self.departments.get(&id).map(|d| Department {
            id,
            parent_id: d.parent,
            name: d.name.clone(),
            order: d.order,
        })
    }

    /// `listsub`: no order, as DingTalk's.
    fn listsub(&self, id: i64) -> Vec<Department> {
        self.departments
            .iter()
            .filter(|(_, d)| d.parent == Some(id))
            .map(|(&child, d)| Department {
                id: child,
                parent_id: Some(id),
                name: d.name.clone(),
                order: 0,
            })
            .collect()
    }

    /// `v2/user/list`: the direct members.
    fn user_list(&self, id: i64) -> Vec<Member> {
        self.users
            .values()
            .filter(|u| u.dept_ids.contains(&id))
            .cloned()
            .collect()
    }

    /// DingTalk's answer to an incremental read.
    pub fn answer(&self, read: &Read) -> Answer {
        match read {
            Read::User(userid) => Answer::User {
                userid: userid.clone(),
                found: self.users.get(userid).cloned(),
            },
            Read::Locate(id) => Answer::Located {
                id: *id,
                found: self.get_department(*id),
            },
            Read::Department(id) => Answer::Department {
                id: *id,
                found: self.get_department(*id).map(|department| DepartmentRead {
                    department,
                    children: self.listsub(*id),
                    members: self.user_list(*id),
                }),
            },
        }
    }

    /// What a full read of `scope` gives, as `reconcile::read` reads it: the
    /// roots by `department/get`, the walk by `listsub` (each department once,
    /// never a root again), the members of every department reached, then the
    /// users listed by userid.
    pub fn full_read(&self, scope: &DesiredScope, creator: &CreatorIdentity) -> Directory {
        let mut departments: Vec<Department> = scope
            .dept_ids
            .iter()
            .filter_map(|&root| self.get_department(root))
            .collect();
        let mut seen: BTreeSet<i64> = scope.dept_ids.clone();
        let mut reached: Vec<i64> = scope
            .dept_ids
            .iter()
            .copied()
            .filter(|d| self.departments.contains_key(d))
            .collect();
        let mut frontier: VecDeque<i64> = reached.iter().copied().collect();
        while let Some(id) = frontier.pop_front() {
            for child in self.listsub(id) {
                if seen.insert(child.id) {
                    frontier.push_back(child.id);
                    reached.push(child.id);
                    departments.push(child);
                }
            }
        }
        let mut users = Vec::new();
        let mut listed = BTreeSet::new();
        for &id in &reached {
            for user in self.user_list(id) {
                if listed.insert(user.userid.clone()) {
                    users.push(user);
                }
            }
        }
        for userid in &scope.user_ids {
            if !listed.contains(userid)
                && let Some(user) = self.users.get(userid)
            {
                users.push(user.clone());
            }
        }
        desired_directory(departments, users, creator)
    }

    /// A full sync: the full read, diffed with the stored directory, absences
    /// confirmed by `user/get`, no removal held.
    pub fn full_sync(
        &self,
        stored: &Directory,
        scope: &DesiredScope,
        creator: &CreatorIdentity,
    ) -> Directory {
        let desired = self.full_read(scope, creator);
        let full = diff(stored, &desired);
        let inside: BTreeSet<i64> = desired.departments.keys().copied().collect();
        let verdicts = full
            .remove_members
            .iter()
            .map(|u| {
                let found = self.users.get(u);
                (u.clone(), absence(found, scope, &inside, creator))
            })
            .collect();
        let (confirmed, _) = keep_unconfirmed(full, stored, &verdicts);
        apply(stored, &guard(confirmed, u64::MAX, None).diff)
    }

    /// Runs `plan` to its end against this world: the directory it leaves, or
    /// why it gave way to a full sync.
    pub fn run(&self, plan: &mut Incremental<'_>) -> Result<Directory, Escalation> {
        loop {
            match plan.next_read() {
                Next::Read(read) => plan.answer(self.answer(&read)),
                Next::Done => break,
                Next::FullSync(why) => return Err(why),
            }
        }
        Ok(plan.desired())
    }

    /// Whether `id` is `ancestor` or below it.
    fn is_below(&self, id: i64, ancestor: i64) -> bool {
        let mut at = Some(id);
        let mut steps = 0;
        while let Some(d) = at {
            if d == ancestor {
                return true;
            }
            steps += 1;
            if steps > self.departments.len() {
                return false;
            }
            at = self.departments.get(&d).and_then(|x| x.parent);
        }
        false
    }
}

/// One change made in DingTalk's console; picks index the existing ones.
#[derive(Clone, Debug)]
enum Op {
    AddUser(usize, Vec<usize>),
    RemoveUser(usize),
    EditUser(usize, u8, Vec<usize>),
    AddDept(i64, usize),
    RemoveDept(usize),
    RenameDept(usize, u8),
    MoveDept(usize, usize),
    ReorderDept(usize, i64),
}

const USERS: usize = 12;

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

impl World {
    fn dept_ids(&self) -> Vec<i64> {
        self.departments.keys().copied().collect()
    }

    fn departments_of(&self, picks: &[usize]) -> Vec<i64> {
        let ids = self.dept_ids();
        let mut depts: Vec<i64> = picks.iter().filter_map(|&p| pick(&ids, p)).collect();
        depts.sort_unstable();
        depts.dedup();
        if depts.is_empty() {
            depts.push(1);
        }
        depts
    }

    /// Makes `op` if DingTalk allows it, and says which event it produces.
    fn make(&mut self, op: &Op) -> Option<(&'static str, Value)> {
        let users: Vec<String> = self.users.keys().cloned().collect();
        let depts: Vec<i64> = self.dept_ids().into_iter().filter(|&d| d != 1).collect();
        match op {
            Op::AddUser(n, picks) => {
                let userid = format!("u{}", n % USERS);
                if self.users.contains_key(&userid) {
                    return None;
                }
                let member = Member {
                    unionid: format!("un-{userid}"),
                    name: userid.clone(),
                    email: Some(format!("{userid}@x")),
                    active: true,
                    dept_ids: self.departments_of(picks),
                    userid: userid.clone(),
                    ..Default::default()
                };
                self.users.insert(userid.clone(), member);
                Some((
                    "user_add_org",
                    json!({"timeStamp": "1", "userId": [userid]}),
                ))
            }
            Op::RemoveUser(p) => {
                let userid = pick(&users, *p)?;
                self.users.remove(&userid);
                Some((
                    "user_leave_org",
                    json!({"timeStamp": "1", "userId": [userid]}),
                ))
            }
            Op::EditUser(p, name, picks) => {
                let userid = pick(&users, *p)?;
                let dept_ids = self.departments_of(picks);
                let user = self.users.get_mut(&userid)?;
                user.name = format!("{userid}-{name}");
                user.active = name % 2 == 0;
                user.dept_ids = dept_ids;
                Some((
                    "user_modify_org",
                    json!({"timeStamp": "1", "userId": [userid],
                           "diffInfo": {"userid": userid, "prev": {}, "curr": {}}}),
                ))
            }
            Op::AddDept(id, parent) => {
                let parent = pick(&self.dept_ids(), *parent)?;
                if self.departments.contains_key(id) {
                    return None;
                }
                self.departments.insert(
                    *id,
                    Dept {
                        parent: Some(parent),
                        name: format!("d{id}"),
                        order: 0,
                    },
                );
                Some(("org_dept_create", json!({"deptId": [id]})))
            }
            Op::RemoveDept(p) => {
                let id = pick(&depts, *p)?;
                let empty = !self.departments.values().any(|d| d.parent == Some(id))
                    && !self.users.values().any(|u| u.dept_ids.contains(&id));
                if !empty {
                    return None;
                }
                self.departments.remove(&id);
                Some(("org_dept_remove", json!({"deptId": [id]})))
            }
            Op::RenameDept(p, name) => {
                let id = pick(&depts, *p)?;
                self.departments.get_mut(&id)?.name = format!("d{id}-{name}");
                Some(("org_dept_modify", json!({"deptId": [id]})))
            }
            Op::MoveDept(p, to) => {
                let id = pick(&depts, *p)?;
                let to = pick(&self.dept_ids(), *to)?;
                if self.is_below(to, id) {
                    return None;
                }
                self.departments.get_mut(&id)?.parent = Some(to);
                Some(("org_dept_modify", json!({"deptId": [id]})))
            }
            Op::ReorderDept(p, order) => {
                let id = pick(&depts, *p)?;
                self.departments.get_mut(&id)?.order = *order;
                Some(("org_dept_modify", json!({"deptId": [id]})))
            }
        }
    }
}

/// How one event reaches dingbind.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Lost: dingbind sees only the connection gap, so a full sync.
    Dropped,
    Delivered,
    Duplicated,
}

/// A world, a scope, and what happens: the changes, each event's fate and
/// delays, when syncs start and how many reads they make between changes.
#[derive(Clone, Debug)]
struct Scenario {
    world: World,
    scope: DesiredScope,
    creator: CreatorIdentity,
    ops: Vec<Op>,
    fates: Vec<(Fate, u8, u8)>,
    sync_at: Vec<bool>,
    reads_per_step: Vec<u8>,
    /// Whether the plan's budget is a full sync's cost (else unbounded).
    budgeted: bool,
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((0usize..100, 0i64..3), 1..10),
        prop::collection::vec(
            (0usize..USERS, prop::collection::vec(0usize..100, 1..3)),
            0..10,
        ),
    )
        .prop_map(|(depts, users)| {
            let mut world = World::default();
            world.departments.insert(
                1,
                Dept {
                    parent: None,
                    name: "root".into(),
                    order: 0,
                },
            );
            for (i, (parent, order)) in depts.into_iter().enumerate() {
                let parent = pick(&world.dept_ids(), parent).unwrap_or(1);
                world.departments.insert(
                    i as i64 + 2,
                    Dept {
                        parent: Some(parent),
                        name: format!("d{}", i + 2),
                        order,
                    },
                );
            }
            for (n, picks) in users {
                world.make(&Op::AddUser(n, picks));
            }
            world
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    let picks = || prop::collection::vec(0usize..100, 1..3);
    prop_oneof![
        (0usize..USERS, picks()).prop_map(|(n, p)| Op::AddUser(n, p)),
        (0usize..100).prop_map(Op::RemoveUser),
        (0usize..100, any::<u8>(), picks()).prop_map(|(u, n, p)| Op::EditUser(u, n, p)),
        (2i64..20, 0usize..100).prop_map(|(id, p)| Op::AddDept(id, p)),
        (0usize..100).prop_map(Op::RemoveDept),
        (0usize..100, any::<u8>()).prop_map(|(d, n)| Op::RenameDept(d, n)),
        (0usize..100, 0usize..100).prop_map(|(d, p)| Op::MoveDept(d, p)),
        (0usize..100, 0i64..3).prop_map(|(d, o)| Op::ReorderDept(d, o)),
    ]
}

fn arb_fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        1 => Just(Fate::Dropped),
        6 => Just(Fate::Delivered),
        2 => Just(Fate::Duplicated),
    ]
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        arb_world(),
        prop::collection::btree_set(1i64..14, 1..3),
        prop::collection::btree_set((0usize..USERS).prop_map(|n| format!("u{n}")), 0..3),
        prop::option::of(0usize..USERS),
        prop::collection::vec(arb_op(), 1..25),
        prop::collection::vec((arb_fate(), 0u8..6, 0u8..6), 25),
        prop::collection::vec(any::<bool>(), 1..8),
        prop::collection::vec(0u8..4, 1..8),
        any::<bool>(),
    )
        .prop_map(
            |(
                world,
                dept_ids,
                user_ids,
                creator,
                ops,
                fates,
                sync_at,
                reads_per_step,
                budgeted,
            )| {
                let creator = CreatorIdentity {
                    email: creator.map(|n| format!("u{n}@x")),
                    phone: None,
                };
                Scenario {
                    world,
                    scope: DesiredScope { dept_ids, user_ids },
                    creator,
                    ops,
                    fates,
                    sync_at,
                    reads_per_step,
                    budgeted,
                }
            },
        )
}

/// A frame DingTalk would send for event `n`, delivery `copy`.
fn frame(n: usize, copy: u8, event_type: &str, data: &Value) -> Value {
    json!({
        "specVersion": "1.0",
        "type": "EVENT",
        "headers": {
            "topic": "*",
            "messageId": format!("msg-{n}-{copy}"),
            "eventId": format!("ev-{n}"),
            "eventType": event_type,
            "eventBornTime": "1800000000000",
            "eventCorpId": "corp",
        },
        "data": data.to_string(),
    })
}

/// What reaches dingbind at one step.
enum Delivery {
    Frame(Value),
    Gap,
}

/// DingTalk, the events in flight and dingbind's side of the channel.
struct Sim {
    world: World,
    step: usize,
    ops: Vec<Op>,
    fates: Vec<(Fate, u8, u8)>,
    /// Deliveries by the step they arrive at.
    in_flight: BTreeMap<usize, Vec<Delivery>>,
    seen: Seen,
    pending: Pending,
    /// Counts, to check the scenarios reach every path.
    stats: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + self.step as i64).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn done(&self) -> bool {
        self.step >= self.ops.len() && self.in_flight.is_empty()
    }

    /// One step: the next change in DingTalk, then what arrives now.
    fn advance(&mut self) {
        if let Some(op) = self.ops.get(self.step).cloned()
            && let Some((event_type, data)) = self.world.make(&op)
        {
            let (fate, delay, again) = self.fates[self.step % self.fates.len()];
            let at = self.step + delay as usize;
            let mut send = |at: usize, d: Delivery| self.in_flight.entry(at).or_default().push(d);
            match fate {
                Fate::Dropped => send(at, Delivery::Gap),
                Fate::Delivered => {
                    send(at, Delivery::Frame(frame(self.step, 0, event_type, &data)))
                }
                Fate::Duplicated => {
                    send(at, Delivery::Frame(frame(self.step, 0, event_type, &data)));
                    send(
                        at + again as usize,
                        Delivery::Frame(frame(self.step, 1, event_type, &data)),
                    );
                }
            }
        }
        let now = self.now();
        for delivery in self.in_flight.remove(&self.step).unwrap_or_default() {
            match delivery {
                Delivery::Gap => self.pending.mark_full_sync(),
                Delivery::Frame(f) => {
                    let Ok(frame) = parse_frame(&f) else {
                        *self.stats.entry("unreadable frame").or_default() += 1;
                        continue;
                    };
                    match decide(frame, &mut self.seen, now) {
                        Action::Ack { event: Some(e), .. } => {
                            let kind = e.event_type.unwrap_or_default();
                            self.pending.mark(&change(&kind, &e.data));
                        }
                        Action::Ack { event: None, .. } => {
                            *self.stats.entry("duplicate dropped").or_default() += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        self.step += 1;
    }
}

/// Runs one batch on `stored`: a full sync, or an incremental one whose
/// reads interleave with changes in DingTalk.
fn run_batch(
    sim: &mut Sim,
    batch: &Dirty,
    stored: &Directory,
    scenario: &Scenario,
    round: &mut usize,
) -> Directory {
    let (scope, creator) = (&scenario.scope, &scenario.creator);
    if batch.full_sync {
        *sim.stats.entry("full sync").or_default() += 1;
        return sim.world.full_sync(stored, scope, creator);
    }
    let budget = if scenario.budgeted {
        full_sync_calls(stored.departments.len(), stored.members.len())
    } else {
        u64::MAX
    };
    let mut plan = Incremental::new(
        &batch.users,
        &batch.departments,
        stored,
        scope,
        creator,
        budget,
    );
    let mut reads = 0u8;
    loop {
        match plan.next_read() {
            Next::Read(read) => {
                plan.answer(sim.world.answer(&read));
                reads += 1;
                let per_step = scenario.reads_per_step[*round % scenario.reads_per_step.len()];
                if per_step > 0 && reads >= per_step {
                    reads = 0;
                    *round += 1;
                    sim.advance();
                }
            }
            Next::Done => break,
            Next::FullSync(_) => {
                *sim.stats.entry("escalated").or_default() += 1;
                return sim.world.full_sync(stored, scope, creator);
            }
        }
    }
    let settled = plan.finish();
    *sim.stats.entry("incremental").or_default() += 1;
    if !settled.diff.remove_members.is_empty() {
        *sim.stats.entry("incremental removal").or_default() += 1;
    }
    if !settled.diff.add_members.is_empty() || !settled.diff.add_departments.is_empty() {
        *sim.stats.entry("incremental addition").or_default() += 1;
    }
    apply(stored, &guard(settled.diff, u64::MAX, None).diff)
}

/// Plays a scenario: the directory dingbind ends with once every event
/// arrived and every batch ran, the truth, and the counts.
fn play(scenario: &Scenario) -> (Directory, Directory, BTreeMap<&'static str, u64>) {
    let (scope, creator) = (&scenario.scope, &scenario.creator);
    let mut stored = scenario.world.full_read(scope, creator);
    let mut sim = Sim {
        world: scenario.world.clone(),
        step: 0,
        ops: scenario.ops.clone(),
        fates: scenario.fates.clone(),
        in_flight: BTreeMap::new(),
        seen: Seen::default(),
        pending: Pending::default(),
        stats: BTreeMap::new(),
    };
    let mut round = 0;
    let mut tick = 0;
    loop {
        let quiet = sim.done();
        if !quiet {
            sim.advance();
        }
        tick += 1;
        let sync_now = quiet || scenario.sync_at[tick % scenario.sync_at.len()];
        if sync_now && let Some(batch) = sim.pending.start() {
            stored = run_batch(&mut sim, &batch, &stored, scenario, &mut round);
            sim.pending.finish(batch, true);
        } else if quiet {
            break;
        }
    }
    let truth = sim.world.full_read(scope, creator);
    (stored, truth, sim.stats)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Events dropped (seen as a gap: a full sync), duplicated, delayed and
    /// reordered, changes made while a batch reads: once the events are in,
    /// the directory is the one a full read of DingTalk gives.
    #[test]
    fn the_directory_converges_to_dingtalk(scenario in arb_scenario()) {
        let (stored, truth, _) = play(&scenario);
        prop_assert_eq!(stored, truth);
    }
}

/// The scenarios reach every path, so the property above cannot pass on
/// full syncs alone.
#[test]
fn the_scenarios_reach_every_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for _ in 0..300 {
        let scenario = arb_scenario()
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        for (k, v) in play(&scenario).2 {
            *totals.entry(k).or_default() += v;
        }
    }
    for path in [
        "full sync",
        "escalated",
        "incremental",
        "incremental removal",
        "incremental addition",
        "duplicate dropped",
    ] {
        assert!(
            totals.get(path).is_some_and(|&n| n > 0),
            "never: {path} ({totals:?})"
        );
    }
    assert!(!totals.contains_key("unreadable frame"));
}
