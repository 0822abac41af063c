//! Synthetic DingTalk organizations for the store tests and benchmark.
//! Deterministic: the same arguments give the same directory.

#![allow(dead_code)]

use dingbind::core::directory::{Department, Directory, Member};

/// An organization of `depts` departments (a tree under the root, 1) and
/// `members` members, each in one or two departments. `generation` is mixed
/// into names and titles, so that two generations differ in every row.
pub fn org(depts: usize, members: usize, generation: u64) -> Directory {
    let depts = depts.max(1) as i64;
    let departments = (1..=depts).map(|id| Department {
        id,
        parent_id: if id == 1 {
            None
        } else {
            Some((id - 2) / 8 + 1)
        },
        name: format!("Department {id} g{generation}"),
        order: id % 7,
    });
    let members = (0..members as i64).map(|i| {
        let home = i % depts + 1;
        let mut dept_ids = vec![home];
        if i % 5 == 0 && depts > 1 {
            let second = (i / 5) % depts + 1;
            if second != home {
                dept_ids.push(second);
            }
        }
        dept_ids.sort_unstable();
        Member {
            userid: format!("user{i:07}"),
            unionid: format!("union{i:07}"),
            name: format!("Member {i} g{generation}"),
            mobile: (i % 3 != 0).then(|| format!("+86-138{i:08}")),
            email: (i % 4 != 0).then(|| format!("user{i}@example.com")),
            title: Some(format!("Engineer g{generation}")),
            job_number: (i % 2 == 0).then(|| format!("J{i:06}")),
            active: i % 11 != 0,
            admin: i % 97 == 0,
            boss: i % 499 == 0,
            dept_ids,
        }
    });
    Directory::new(departments, members)
}

/// `dir` with about `percent`% of its members changed: a third updated (new
/// title), a third removed, a third added; and one department renamed.
pub fn churn(dir: &Directory, percent: f64) -> Directory {
    let mut next = dir.clone();
    let n = ((dir.members.len() as f64) * percent / 100.0).round() as usize;
    let step = (dir.members.len() / n.max(1)).max(1);
    let picked: Vec<String> = dir.members.keys().step_by(step).take(n).cloned().collect();
    for (i, userid) in picked.iter().enumerate() {
        match i % 3 {
            0 => {
                if let Some(m) = next.members.get_mut(userid) {
                    m.title = Some("Senior Engineer".into());
                }
            }
            1 => {
                next.members.remove(userid);
            }
            _ => {
                let mut m = dir.members[userid].clone();
                m.userid = format!("new-{userid}");
                m.unionid = format!("new-{}", m.unionid);
                next.members.insert(m.userid.clone(), m);
            }
        }
    }
    if let Some(d) = next.departments.values_mut().nth(1) {
        d.name.push_str(" (renamed)");
    }
    next
}
