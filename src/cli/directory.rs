//! `dingbind directory NAMESPACE/NAME [--store URL] [-o table|json|yaml]`: print
//! a tenant's directory as the store holds it.
//!
//! Rendering is pure ([`view`], [`render_table`]); [`run`] only opens the store,
//! reads, and writes. The JSON/YAML shape ([`DirectoryView`]) is a stable,
//! versioned contract for scripts, documented in `docs/store.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::api::TenantKey;
use crate::core::directory::{Department, Directory};
use crate::store::{DEFAULT_URL, Error, Store};

/// Arguments of `dingbind directory`.
#[derive(clap::Args, Debug, Clone)]
pub struct DirectoryArgs {
    /// The tenant, as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE/NAME")]
    pub tenant: TenantKey,

    /// The store: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, value_name = "URL", env = "DINGBIND_STORE", hide_env_values = true, default_value = DEFAULT_URL)]
    pub store: String,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Output formats of `dingbind directory`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Departments as an indented tree with member counts, then members.
    Table,
    /// The stable `dingbind.dev/directory/v1` document.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Run `dingbind directory`, writing to `out`.
pub async fn run(args: DirectoryArgs, out: &mut impl std::io::Write) -> Result<(), Error> {
    let store = Store::connect(&args.store).await?;
    let result = print(&store, &args, out).await;
    store.close().await;
    result
}

async fn print(
    store: &Store,
    args: &DirectoryArgs,
    out: &mut impl std::io::Write,
) -> Result<(), Error> {
    if !store.tenants().await?.contains(&args.tenant) {
        return Err(Error::UnknownTenant {
            tenant: args.tenant.clone(),
            store: store.url().to_string(),
        });
    }
    let dir = store.directory(&args.tenant).await?;
    let text = match args.output {
        OutputFormat::Table => render_table(&dir),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&view(&args.tenant, &dir))
                .map_err(|e| Error::Serialize(e.to_string()))?;
            s.push('\n');
            s
        }
        OutputFormat::Yaml => serde_yaml::to_string(&view(&args.tenant, &dir))
            .map_err(|e| Error::Serialize(e.to_string()))?,
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The version tag of the JSON/YAML document.
pub const API_VERSION: &str = "dingbind.dev/directory/v1";

/// The `-o json|yaml` document. Every key is always present (`null` when
/// unset); departments come in tree order, members sorted by `userid`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryView {
    pub api_version: &'static str,
    /// `NAMESPACE/NAME`.
    pub tenant: String,
    pub counts: Counts,
    pub departments: Vec<DepartmentView>,
    pub members: Vec<MemberView>,
}

/// Totals of the directory.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub departments: usize,
    pub members: usize,
}

/// A department, in tree order.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentView {
    pub id: i64,
    /// `null` for a top department of the directory.
    pub parent_id: Option<i64>,
    pub name: String,
    pub order: i64,
    /// 0 for a top department (including one whose parent is outside the directory).
    pub depth: usize,
    /// Members directly in this department.
    pub member_count: usize,
    /// Members in this department and all its sub-departments, each counted once.
    pub total_member_count: usize,
}

/// A member.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub userid: String,
    pub unionid: String,
    pub name: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub title: Option<String>,
    pub job_number: Option<String>,
    pub active: bool,
    pub admin: bool,
    pub boss: bool,
    pub dept_ids: Vec<i64>,
}

/// Departments in tree order with their depth: roots (no parent, or a parent
/// outside the directory) first, children under their parent, siblings by
/// `order` then id. Departments caught in a parent cycle come last, at depth 0.
fn tree_order(dir: &Directory) -> Vec<(&Department, usize)> {
    let mut children: BTreeMap<Option<i64>, Vec<&Department>> = BTreeMap::new();
    for d in dir.departments.values() {
        let parent = d
            .parent_id
            .filter(|p| dir.departments.contains_key(p) && *p != d.id);
        children.entry(parent).or_default().push(d);
    }
    for list in children.values_mut() {
        list.sort_by_key(|d| (d.order, d.id));
    }
    let mut out = Vec::with_capacity(dir.departments.len());
    let mut seen = BTreeSet::new();
    let mut stack: Vec<(&Department, usize)> = children
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|d| (*d, 0))
        .collect();
    while let Some((d, depth)) = stack.pop() {
        if !seen.insert(d.id) {
            continue;
        }
        out.push((d, depth));
        stack.extend(
            children
                .get(&Some(d.id))
                .into_iter()
                .flatten()
                .rev()
                .map(|c| (*c, depth + 1)),
        );
    }
    out.extend(
        dir.departments
            .values()
            .filter(|d| !seen.contains(&d.id))
            .map(|d| (d, 0)),
    );
    out
}

/// Direct and subtree member counts per department.
fn member_counts(dir: &Directory, order: &[(&Department, usize)]) -> BTreeMap<i64, (usize, usize)> {
    let mut direct: BTreeMap<i64, usize> = BTreeMap::new();
    for m in dir.members.values() {
        for d in &m.dept_ids {
            *direct.entry(*d).or_default() += 1;
        }
    }
    // Subtree: the distinct members of each department and its descendants.
    // Walk the tree order backwards so that children are done before parents.
    let mut subtree: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for m in dir.members.values() {
        for d in &m.dept_ids {
            subtree.entry(*d).or_default().insert(&m.userid);
        }
    }
    let mut totals = BTreeMap::new();
    for (d, depth) in order.iter().rev() {
        let own = subtree.remove(&d.id).unwrap_or_default();
        totals.insert(d.id, (direct.get(&d.id).copied().unwrap_or(0), own.len()));
        let parent = d
            .parent_id
            .filter(|p| *depth > 0 && dir.departments.contains_key(p));
        if let Some(p) = parent {
            subtree.entry(p).or_default().extend(own);
        }
    }
    totals
}

/// The `-o json|yaml` document for `dir`.
pub fn view(tenant: &TenantKey, dir: &Directory) -> DirectoryView {
    let order = tree_order(dir);
    let counts = member_counts(dir, &order);
    DirectoryView {
        api_version: API_VERSION,
        tenant: tenant.to_string(),
        counts: Counts {
            departments: dir.departments.len(),
            members: dir.members.len(),
        },
        departments: order
            .iter()
            .map(|(d, depth)| {
                let (direct, total) = counts.get(&d.id).copied().unwrap_or((0, 0));
                DepartmentView {
                    id: d.id,
                    parent_id: d.parent_id,
                    name: d.name.clone(),
                    order: d.order,
                    depth: *depth,
                    member_count: direct,
                    total_member_count: total,
                }
            })
            .collect(),
        members: dir
            .members
            .values()
            .map(|m| MemberView {
                userid: m.userid.clone(),
                unionid: m.unionid.clone(),
                name: m.name.clone(),
                mobile: m.mobile.clone(),
                email: m.email.clone(),
                title: m.title.clone(),
                job_number: m.job_number.clone(),
                active: m.active,
                admin: m.admin,
                boss: m.boss,
                dept_ids: m.dept_ids.clone(),
            })
            .collect(),
    }
}

/// Display width of `s` in a terminal: CJK and full-width characters take two
/// columns (DingTalk names are mostly Chinese).
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x20000..=0x3FFFD => 2,
            _ => 1,
        })
        .sum()
}

/// Rows as aligned columns (two spaces apart, last column unpadded).
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(v: &Option<String>) -> String {
    v.clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// The table form: the department tree (indented by depth) with direct and
/// subtree member counts, then the members.
pub fn render_table(dir: &Directory) -> String {
    let order = tree_order(dir);
    let counts = member_counts(dir, &order);
    let mut out = String::new();
    let _ = writeln!(out, "DEPARTMENTS ({})", dir.departments.len());
    let mut rows = vec![vec![
        "NAME".to_string(),
        "ID".into(),
        "MEMBERS".into(),
        "TOTAL".into(),
    ]];
    for (d, depth) in &order {
        let (direct, total) = counts.get(&d.id).copied().unwrap_or((0, 0));
        rows.push(vec![
            format!("{}{}", "  ".repeat(*depth), d.name),
            d.id.to_string(),
            direct.to_string(),
            total.to_string(),
        ]);
    }
    out.push_str(&columns(&rows));
    let _ = writeln!(out, "\nMEMBERS ({})", dir.members.len());
    let mut rows = vec![vec![
        "USERID".to_string(),
        "NAME".into(),
        "DEPARTMENTS".into(),
        "TITLE".into(),
        "MOBILE".into(),
        "EMAIL".into(),
        "FLAGS".into(),
    ]];
    for m in dir.members.values() {
        let flags: Vec<&str> = [
            (!m.active, "inactive"),
            (m.admin, "admin"),
            (m.boss, "boss"),
        ]
        .into_iter()
        .filter_map(|(on, f)| on.then_some(f))
        .collect();
        let depts: Vec<String> = m.dept_ids.iter().map(i64::to_string).collect();
        rows.push(vec![
            m.userid.clone(),
            m.name.clone(),
            if depts.is_empty() {
                "-".into()
            } else {
                depts.join(",")
            },
            or_dash(&m.title),
            or_dash(&m.mobile),
            or_dash(&m.email),
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            },
        ]);
    }
    out.push_str(&columns(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directory::Member;

    fn dept(id: i64, parent: Option<i64>, name: &str, order: i64) -> Department {
        Department {
            id,
            parent_id: parent,
            name: name.into(),
            order,
        }
    }

    fn member(userid: &str, name: &str, depts: &[i64]) -> Member {
        Member {
            userid: userid.into(),
            unionid: format!("un-{userid}"),
            name: name.into(),
            active: true,
            dept_ids: depts.to_vec(),
            ..Default::default()
        }
    }

    fn sample() -> Directory {
        Directory::new(
            [
                dept(1, None, "Acme", 0),
                dept(3, Some(1), "研发部", 2),
                dept(2, Some(1), "Sales", 1),
                dept(4, Some(3), "Platform", 0),
            ],
            [
                member("u1", "张三", &[1]),
                member("u2", "Li Si", &[2, 4]),
                member("u3", "Wang Wu", &[4]),
            ],
        )
    }

    #[test]
    fn departments_come_in_tree_order_with_depth_and_counts() {
        let v = view(
            &TenantKey {
                namespace: "acme".into(),
                name: "main".into(),
            },
            &sample(),
        );
        let got: Vec<(i64, usize, usize, usize)> = v
            .departments
            .iter()
            .map(|d| (d.id, d.depth, d.member_count, d.total_member_count))
            .collect();
        assert_eq!(
            got,
            vec![(1, 0, 1, 3), (2, 1, 1, 1), (3, 1, 0, 2), (4, 2, 2, 2)]
        );
        assert_eq!(
            v.counts,
            Counts {
                departments: 4,
                members: 3
            }
        );
        assert_eq!(v.tenant, "acme/main");
    }

    #[test]
    fn json_document_has_every_key_even_when_unset() {
        let v = view(
            &TenantKey {
                namespace: "a".into(),
                name: "b".into(),
            },
            &sample(),
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["members"][0]["mobile"], serde_json::Value::Null);
        assert_eq!(json["members"][1]["deptIds"], serde_json::json!([2, 4]));
        assert_eq!(json["departments"][0]["parentId"], serde_json::Value::Null);
    }

    #[test]
    fn table_indents_the_tree_and_aligns_wide_names() {
        let table = render_table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "DEPARTMENTS (4)");
        assert!(lines[2].starts_with("Acme "), "{table}");
        assert!(lines[3].starts_with("  Sales "), "{table}");
        assert!(lines[4].starts_with("  研发部 "), "{table}");
        assert!(lines[5].starts_with("    Platform "), "{table}");
        // The ID column starts at the same display column on every row.
        let id_col = |l: &str| width(&l[..l.find(|c: char| c.is_ascii_digit()).unwrap()]);
        assert_eq!(id_col(lines[4]), id_col(lines[5]));
        assert!(table.contains("MEMBERS (3)"));
        assert!(table.contains("2,4"));
    }

    #[test]
    fn parent_cycles_and_orphans_do_not_lose_departments() {
        let dir = Directory::new(
            [
                dept(5, Some(6), "A", 0),
                dept(6, Some(5), "B", 0),
                dept(7, Some(99), "Orphan", 0),
            ],
            [],
        );
        let ids: Vec<i64> = tree_order(&dir).iter().map(|(d, _)| d.id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], 7);
    }
}
