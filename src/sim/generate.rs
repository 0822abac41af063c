//! Deterministic large organizations for benchmarks and demos, from a spec such
//! as `departments=2000,users=100000,seed=7`.
//!
//! Shape: department 1 is the root; department `i` hangs under a random earlier
//! department between `i/8` and `i/2`, which gives a tree about five or six
//! levels deep with bushy upper levels. Department sizes are skewed (weights
//! drawn as `r⁴`, 3 % of departments 25 times heavier), so a few departments
//! hold hundreds or thousands of members and many hold a handful or none.
//! About 10 % of users belong to a second department and 2 % to a third. The same spec always gives the same org.
//!
//! Users are made on demand from the seed and their number ([`Generated`]): a
//! simulator keeps only the department index of a generated org (a few bytes
//! per user), so it serves millions of users in little memory.

use std::collections::HashMap;
use std::str::FromStr;

use super::org_file::{AppSpec, CorpSpec, DeptSpec, ScopeSpec, UserSpec};

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenSpec {
    /// Departments in all, the root included.
    pub departments: usize,
    pub users: usize,
    pub seed: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        Self {
            departments: 50,
            users: 1000,
            seed: 7,
        }
    }
}

/// Corp id of a generated org.
pub const GEN_CORP_ID: &str = "dinggen";
/// Its app: agent id, key and secret.
pub const GEN_AGENT_ID: i64 = 1001;
pub const GEN_APP_KEY: &str = "gen-key";
pub const GEN_APP_SECRET: &str = "gen-secret";

impl FromStr for GenSpec {
    type Err = String;

    /// `key=value` pairs separated by commas; keys `departments`, `users`, `seed`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = GenSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{value}` is not a number"))?;
            match key.trim() {
                "departments" => {
                    spec.departments = usize::try_from(n).map_err(|e| e.to_string())?.max(1)
                }
                "users" => spec.users = usize::try_from(n).map_err(|e| e.to_string())?,
                "seed" => spec.seed = n,
                other => return Err(format!("unknown key `{other}` (departments, users, seed)")),
            }
        }
        Ok(spec)
    }
}

const SURNAMES: [&str; 16] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo",
];
const GIVEN: [&str; 16] = [
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Qiang", "Jun", "Yang", "Yong", "Yan", "Jie", "Tao",
    "Ming", "Chao", "Xia",
];
const UNITS: [&str; 10] = [
    "Sales",
    "R&D",
    "Ops",
    "Finance",
    "HR",
    "Support",
    "Marketing",
    "Legal",
    "Design",
    "QA",
];
const TITLES: [&str; 6] = [
    "Engineer",
    "Manager",
    "Specialist",
    "Analyst",
    "Director",
    "Assistant",
];

/// A generated organization's users, made on demand from the seed and their
/// number: nothing is kept per user but its place in the department index
/// (about 5 bytes), so a simulator holds millions of them.
#[derive(Clone, Debug)]
pub struct Generated {
    seed: u64,
    users: u32,
    /// Digits of a userid (`u000042`): at least 6, more for 1,000,000 users
    /// and up, so that userids sort as their numbers do.
    width: usize,
    /// Cumulative department weights, for sampling a department.
    cumulative: Vec<f64>,
    total: f64,
    /// Department → its direct members' numbers, ascending.
    by_dept: HashMap<i64, Vec<u32>>,
}

/// splitmix64: one user's seed from the org's seed and the user's number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Generated {
    fn new(spec: GenSpec, cumulative: Vec<f64>, total: f64) -> Self {
        let users = u32::try_from(spec.users).unwrap_or(u32::MAX);
        let mut g = Generated {
            seed: spec.seed,
            users,
            width: users.to_string().len().max(6),
            cumulative,
            total,
            by_dept: HashMap::new(),
        };
        let mut by_dept: HashMap<i64, Vec<u32>> = HashMap::new();
        for n in 1..=users {
            for d in g.departments_of(&mut g.rng(n)) {
                by_dept.entry(d).or_default().push(n);
            }
        }
        g.by_dept = by_dept;
        g
    }

    fn rng(&self, n: u32) -> fastrand::Rng {
        fastrand::Rng::with_seed(mix(self.seed ^ mix(u64::from(n))))
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> i64 {
        let x = rng.f64() * self.total;
        let idx = self
            .cumulative
            .partition_point(|c| *c < x)
            .min(self.cumulative.len().saturating_sub(1));
        idx as i64 + 1
    }

    /// The first draws of a user: its departments, without repeats.
    fn departments_of(&self, rng: &mut fastrand::Rng) -> Vec<i64> {
        let mut depts = vec![self.pick(rng)];
        let extra = match rng.u32(..100) {
            0..2 => 2,
            2..12 => 1,
            _ => 0,
        };
        for _ in 0..extra {
            let d = self.pick(rng);
            if !depts.contains(&d) {
                depts.push(d);
            }
        }
        depts
    }

    /// How many users were generated.
    pub fn len(&self) -> usize {
        self.users as usize
    }

    pub fn is_empty(&self) -> bool {
        self.users == 0
    }

    /// The userid of user `n` (1-based).
    pub fn userid(&self, n: u32) -> String {
        format!("u{n:0width$}", width = self.width)
    }

    /// The number of the generated user `userid`, if it is one.
    pub fn number(&self, userid: &str) -> Option<u32> {
        let digits = userid.strip_prefix('u')?;
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|n| (1..=self.users).contains(n))
    }

    /// User `n` (1-based), always the same for the same spec.
    pub fn user(&self, n: u32) -> UserSpec {
        let mut rng = self.rng(n);
        let dept_ids = self.departments_of(&mut rng);
        let name = format!(
            "{} {}{}",
            SURNAMES[rng.usize(..16)],
            GIVEN[rng.usize(..16)],
            GIVEN[rng.usize(..16)].to_lowercase()
        );
        let userid = self.userid(n);
        UserSpec {
            unionid: Some(format!("un{:016x}", rng.u64(..))),
            name,
            dept_ids,
            mobile: Some(format!("138{:08}", rng.u32(..100_000_000))),
            email: Some(format!("{userid}@gen.example")),
            title: Some(TITLES[rng.usize(..TITLES.len())].to_owned()),
            job_number: Some(format!("E{n:06}")),
            admin: n <= 3,
            sub_admin: false,
            boss: n == 1,
            active: rng.u32(..100) < 95,
            userid,
        }
    }

    /// The direct members of `dept_id`, by number, ascending (= by userid).
    pub fn members_of(&self, dept_id: i64) -> &[u32] {
        self.by_dept
            .get(&dept_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every department with members, and how many it holds directly.
    pub fn department_sizes(&self) -> impl Iterator<Item = (i64, usize)> + '_ {
        self.by_dept.iter().map(|(d, m)| (*d, m.len()))
    }
}

/// Generates one corp with one enabled app whose visible scope is everyone:
/// the corp without its users, and the users, made on demand.
pub fn generate_lazily(spec: GenSpec) -> (CorpSpec, Generated) {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let count = spec.departments.max(1) as i64;
    let departments: Vec<DeptSpec> = (2..=count)
        .map(|i| {
            let lo = (i / 8).max(1);
            let hi = (i / 2).max(1);
            let parent = rng.i64(lo..=hi);
            DeptSpec {
                id: i,
                name: format!("{} {i}", UNITS[rng.usize(..UNITS.len())]),
                parent_id: parent,
                order: i,
            }
        })
        .collect();
    // Skewed sizes: cumulative weights r^4, 3 % of departments 25 times
    // heavier; sampled by binary search.
    let mut cumulative = Vec::with_capacity(count as usize);
    let mut total = 0.0;
    for _ in 0..count {
        let r = rng.f64();
        let big = if rng.u32(..100) < 3 { 25.0 } else { 1.0 };
        total += big * r.powi(4) + 1e-6;
        cumulative.push(total);
    }
    let corp = CorpSpec {
        corp_id: GEN_CORP_ID.into(),
        name: format!("Generated {}x{}", spec.departments, spec.users),
        apps: vec![AppSpec {
            agent_id: GEN_AGENT_ID,
            app_key: GEN_APP_KEY.into(),
            app_secret: GEN_APP_SECRET.into(),
            name: "dingbind".into(),
            enabled: true,
            visible_scope: ScopeSpec {
                dept_ids: vec![1],
                ..Default::default()
            },
        }],
        departments,
        users: Vec::new(),
        leave_records: Vec::new(),
    };
    (corp, Generated::new(spec, cumulative, total))
}

/// [`generate_lazily`] with every user made: for small organizations.
pub fn generate(spec: GenSpec) -> CorpSpec {
    let (mut corp, users) = generate_lazily(spec);
    corp.users = (1..=users.users).map(|n| users.user(n)).collect();
    corp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::Corp;

    #[test]
    fn spec_parses_and_rejects_unknown_keys() {
        let s: GenSpec = "departments=2000,users=100000,seed=7".parse().unwrap();
        assert_eq!(
            s,
            GenSpec {
                departments: 2000,
                users: 100_000,
                seed: 7
            }
        );
        assert!("depts=3".parse::<GenSpec>().is_err());
        assert!("users=x".parse::<GenSpec>().is_err());
    }

    #[test]
    fn same_spec_gives_the_same_org() {
        let spec = GenSpec {
            departments: 30,
            users: 200,
            seed: 3,
        };
        assert_eq!(generate(spec), generate(spec));
        assert_ne!(generate(spec), generate(GenSpec { seed: 4, ..spec }));
    }

    #[test]
    fn generated_org_is_valid_deep_uneven_and_has_multi_department_users() {
        let spec = generate(GenSpec {
            departments: 500,
            users: 5000,
            seed: 7,
        });
        assert_eq!(spec.departments.len(), 499);
        let depth = |mut id: i64| {
            let mut d = 0;
            while id != 1 {
                id = spec.departments[(id - 2) as usize].parent_id;
                d += 1;
            }
            d
        };
        let max_depth = (2..=500).map(depth).max().unwrap_or(0);
        assert!(max_depth >= 4, "depth {max_depth}");
        assert!(spec.users.iter().any(|u| u.dept_ids.len() > 1));
        let mut sizes = std::collections::HashMap::new();
        for u in &spec.users {
            for d in &u.dept_ids {
                *sizes.entry(*d).or_insert(0usize) += 1;
            }
        }
        assert!(
            sizes.values().any(|n| *n > 100),
            "some department has more than one page"
        );
        assert!(Corp::from_spec(spec).is_ok());
    }
}
