//! Streams over a whole organization: a breadth-first walk of the department
//! tree (`listsub`, one call per department) and the members of departments
//! (`v2/user/list`, page by page), with bounded concurrency per API.
//!
//! - A department reached twice (a scope listing a department and its
//!   descendant) is walked once.
//! - [`AppClient::walk_org_pages`] yields what each call answered, as it
//!   arrives: memory holds the pages in flight and the department frontier,
//!   whatever the size of the organization. A user in k departments comes
//!   once per department: the consumer de-duplicates (the store does).
//! - [`AppClient::walk_org`] and [`AppClient::department_users`] yield items
//!   and **de-duplicate users here, by userid** (a user in k departments is
//!   yielded once; each copy carries the same complete `dept_id_list`), which
//!   keeps every userid seen in memory.
//! - The first error ends the stream: a partial walk cannot tell "left" from
//!   "not fetched", so the caller must not act on it. Retries happen below,
//!   per call.
//! - The streams are lazy: calls are made while the stream is polled.

use std::collections::{HashSet, VecDeque};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};

use super::AppClient;
use super::error::Error;
use super::types::{Api, Department, USER_LIST_MAX_SIZE, User, UserListResult};

/// One thing found by [`AppClient::walk_org`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrgItem {
    /// A department below one of the roots (the roots themselves are not yielded).
    Department(Department),
    /// A member of a root or of a department below it, once per userid.
    User(User),
}

/// One answer of [`AppClient::walk_org_pages`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrgPage {
    /// Sub-departments newly reached (each department once; never a root).
    Departments(Vec<Department>),
    /// One page of a department's direct members (a user in several
    /// departments appears in the page of each).
    Users(Vec<User>),
}

/// The answer of one in-flight call.
enum Done {
    Children(Result<Vec<Department>, Error>),
    Members {
        dept: i64,
        cursor: i64,
        page: Result<UserListResult, Error>,
    },
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
    /// (department, cursor) of the member pages to read.
    members_queue: VecDeque<(i64, i64)>,
    listsub_running: usize,
    members_running: usize,
    inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    seen_depts: HashSet<i64>,
    /// `Some` when users are de-duplicated here.
    seen_users: Option<HashSet<String>>,
    ready: VecDeque<OrgPage>,
    failed: bool,
}

impl Walker {
    fn new(
        app: &AppClient,
        roots: impl IntoIterator<Item = i64>,
        reach: Reach,
        dedup_users: bool,
    ) -> Self {
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
            seen_users: dedup_users.then(HashSet::new),
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
        self.members_queue.push_back((dept_id, 0));
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
            let Some((dept, cursor)) = self.members_queue.pop_front() else {
                break;
            };
            let app = self.app.clone();
            self.members_running += 1;
            self.inflight.push(Box::pin(async move {
                let page = app.list_users_page(dept, cursor, USER_LIST_MAX_SIZE).await;
                Done::Members { dept, cursor, page }
            }));
        }
    }

    /// The next page, or `None` at the end (or after an error was yielded).
    async fn next_page(&mut self) -> Option<Result<OrgPage, Error>> {
        loop {
            if let Some(page) = self.ready.pop_front() {
                return Some(Ok(page));
            }
            if self.failed {
                return None;
            }
            self.start_calls();
            let done = self.inflight.next().await?;
            let failed = match done {
                Done::Children(Ok(children)) => {
                    self.listsub_running -= 1;
                    let new: Vec<Department> = children
                        .into_iter()
                        .filter(|c| self.reach(c.dept_id))
                        .collect();
                    if !new.is_empty() {
                        self.ready.push_back(OrgPage::Departments(new));
                    }
                    None
                }
                Done::Members {
                    dept,
                    cursor,
                    page: Ok(page),
                } => {
                    self.members_running -= 1;
                    match (page.has_more, page.next_cursor) {
                        // The department's next page goes first: a department
                        // is finished before others are started.
                        (true, Some(next)) if next != cursor => {
                            self.members_queue.push_front((dept, next))
                        }
                        (true, _) => {
                            self.failed = true;
                            self.inflight = FuturesUnordered::new();
                            return Some(Err(Error::Decode {
                                endpoint: Api::UserList,
                                http_status: 200,
                                message: format!(
                                    "has_more without a new next_cursor (dept {dept}, cursor {cursor})"
                                ),
                            }));
                        }
                        (false, _) => {}
                    }
                    let mut users = page.list;
                    if let Some(seen) = &mut self.seen_users {
                        users.retain(|u| seen.insert(u.userid.clone()));
                    }
                    if !users.is_empty() {
                        self.ready.push_back(OrgPage::Users(users));
                    }
                    None
                }
                Done::Children(Err(e)) | Done::Members { page: Err(e), .. } => Some(e),
            };
            if let Some(e) = failed {
                self.failed = true;
                self.inflight = FuturesUnordered::new();
                return Some(Err(e));
            }
        }
    }

    fn into_pages(self) -> impl Stream<Item = Result<OrgPage, Error>> + Send + 'static {
        futures::stream::unfold(self, |mut w| async move {
            w.next_page().await.map(|page| (page, w))
        })
    }

    fn into_items(self) -> impl Stream<Item = Result<OrgItem, Error>> + Send + 'static {
        self.into_pages().flat_map(|page| {
            let items: Vec<Result<OrgItem, Error>> = match page {
                Ok(OrgPage::Departments(ds)) => {
                    ds.into_iter().map(|d| Ok(OrgItem::Department(d))).collect()
                }
                Ok(OrgPage::Users(us)) => us.into_iter().map(|u| Ok(OrgItem::User(u))).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
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
        Walker::new(self, dept_ids, Reach::Given, true)
            .into_items()
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
        Walker::new(self, roots, Reach::Subtrees, true).into_items()
    }

    /// [`AppClient::walk_org`] as the pages DingTalk answered, without
    /// de-duplicating users: a full sync's read, which streams them into the
    /// store.
    pub fn walk_org_pages(
        &self,
        roots: impl IntoIterator<Item = i64>,
    ) -> impl Stream<Item = Result<OrgPage, Error>> + Send + 'static {
        Walker::new(self, roots, Reach::Subtrees, false).into_pages()
    }
}
