//! Streams over a whole organization: a breadth-first walk of the department
//! tree (`listsub`, one call per department) and the members of departments
//! (`v2/user/list`, every page), with bounded concurrency per API.
//!
//! - A department reached twice (a scope listing a department and its
//!   descendant) is walked once.
//! - Users are **de-duplicated here, by userid**: a user in k departments is
//!   yielded once (each copy carries the same complete `dept_id_list`).
//! - The first error ends the stream: a partial walk cannot tell "left" from
//!   "not fetched", so the caller must not act on it. Retries happen below,
//!   per call.
//! - The streams are lazy: calls are made while the stream is polled.

use std::collections::{HashSet, VecDeque};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};

use super::AppClient;
use super::error::Error;
use super::types::{Department, User};

/// One thing found by [`AppClient::walk_org`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrgItem {
    /// A department below one of the roots (the roots themselves are not yielded).
    Department(Department),
    /// A member of a root or of a department below it, once per userid.
    User(User),
}

/// The answer of one in-flight call.
enum Done {
    Children(Result<Vec<Department>, Error>),
    Members(Result<Vec<User>, Error>),
}

/// Which departments a walk lists the members of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The departments given, not their sub-departments.
    Given,
    /// The departments given and their whole subtrees (`listsub`).
    Subtrees,
}

/// State of a walk: the members of every department it reaches.
struct Walker {
    app: AppClient,
    reach: Reach,
    concurrency: usize,
    listsub_queue: VecDeque<i64>,
    members_queue: VecDeque<i64>,
    listsub_running: usize,
    members_running: usize,
    inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    seen_depts: HashSet<i64>,
    seen_users: HashSet<String>,
    ready: VecDeque<OrgItem>,
    failed: bool,
}

impl Walker {
    fn new(app: &AppClient, roots: impl IntoIterator<Item = i64>, reach: Reach) -> Self {
        let concurrency = app.client().config().concurrency.max(1);
        let mut w = Walker {
            app: app.clone(),
            reach,
            concurrency,
            listsub_queue: VecDeque::new(),
            members_queue: VecDeque::new(),
            listsub_running: 0,
            members_running: 0,
            inflight: FuturesUnordered::new(),
            seen_depts: HashSet::new(),
            seen_users: HashSet::new(),
            ready: VecDeque::new(),
            failed: false,
        };
        for root in roots {
            w.reach(root);
        }
        w
    }

    /// Queues the calls for a newly reached department; false if seen before.
    fn reach(&mut self, dept_id: i64) -> bool {
        if !self.seen_depts.insert(dept_id) {
            return false;
        }
        if self.reach == Reach::Subtrees {
            self.listsub_queue.push_back(dept_id);
        }
        self.members_queue.push_back(dept_id);
        true
    }

    /// Starts queued calls up to the concurrency bound of each API.
    fn start_calls(&mut self) {
        while self.listsub_running < self.concurrency {
            let Some(id) = self.listsub_queue.pop_front() else {
                break;
            };
            let app = self.app.clone();
            self.listsub_running += 1;
            self.inflight.push(Box::pin(async move {
                Done::Children(app.list_sub_departments(id).await)
            }));
        }
        while self.members_running < self.concurrency {
            let Some(id) = self.members_queue.pop_front() else {
                break;
            };
            let app = self.app.clone();
            self.members_running += 1;
            self.inflight.push(Box::pin(async move {
                Done::Members(app.list_department_users(id).await)
            }));
        }
    }

    /// The next item, or `None` at the end (or after an error was yielded).
    async fn next_item(&mut self) -> Option<Result<OrgItem, Error>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.failed {
                return None;
            }
            self.start_calls();
            let done = self.inflight.next().await?;
            match done {
                Done::Children(Ok(children)) => {
                    self.listsub_running -= 1;
                    for child in children {
                        if self.reach(child.dept_id) {
                            self.ready.push_back(OrgItem::Department(child));
                        }
                    }
                }
                Done::Members(Ok(users)) => {
                    self.members_running -= 1;
                    for user in users {
                        if self.seen_users.insert(user.userid.clone()) {
                            self.ready.push_back(OrgItem::User(user));
                        }
                    }
                }
                Done::Children(Err(e)) | Done::Members(Err(e)) => {
                    self.failed = true;
                    self.inflight = FuturesUnordered::new();
                    return Some(Err(e));
                }
            }
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<OrgItem, Error>> + Send + 'static {
        futures::stream::unfold(self, |mut w| async move {
            w.next_item().await.map(|item| (item, w))
        })
    }
}

impl AppClient {
    /// The direct members of each of `dept_ids` (every page), once per userid,
    /// departments listed concurrently up to `config.concurrency`.
    pub fn department_users(
        &self,
        dept_ids: impl IntoIterator<Item = i64>,
    ) -> impl Stream<Item = Result<User, Error>> + Send + 'static {
        Walker::new(self, dept_ids, Reach::Given)
            .into_stream()
            .filter_map(|item| async move {
                match item {
                    Ok(OrgItem::User(u)) => Some(Ok(u)),
                    Ok(OrgItem::Department(_)) => None,
                    Err(e) => Some(Err(e)),
                }
            })
    }

    /// The whole subtree of `roots`: departments and their members, with the
    /// department walk and the member listing overlapping (they are limited
    /// per API, so they do not slow each other down). This is a full sync's read.
    pub fn walk_org(
        &self,
        roots: impl IntoIterator<Item = i64>,
    ) -> impl Stream<Item = Result<OrgItem, Error>> + Send + 'static {
        Walker::new(self, roots, Reach::Subtrees).into_stream()
    }
}
