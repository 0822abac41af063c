-- Staging for directory syncs: what DingTalk answered, written page by page
-- while a sync reads, then compared with the directory and applied in one
-- transaction, so that a sync holds pages in flight in memory, never the whole
-- organization. A run's rows are deleted when it ends. The rows of a run that
-- never ended (a killed process) are deleted when the tenant's next sync
-- starts, and any run older than a day when the store is opened.
CREATE TABLE staging_runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    started_at INTEGER NOT NULL,
    -- Set once the read is complete and the rows are normalized: only then
    -- can the run be compared or applied.
    finished   INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1))
);
CREATE INDEX staging_runs_by_tenant ON staging_runs (tenant_id);

-- Departments as read; a department read twice keeps its last copy.
CREATE TABLE staging_departments (
    run_id     INTEGER NOT NULL,
    dept_id    INTEGER NOT NULL,
    parent_id  INTEGER,
    name       TEXT NOT NULL,
    sort_order INTEGER NOT NULL,
    PRIMARY KEY (run_id, dept_id)
) WITHOUT ROWID;

-- Members as read; a member read twice keeps the first copy. `dept_ids` is
-- the JSON array of the member's departments, as DingTalk gave them.
CREATE TABLE staging_members (
    run_id     INTEGER NOT NULL,
    userid     TEXT NOT NULL,
    unionid    TEXT NOT NULL,
    name       TEXT NOT NULL,
    mobile     TEXT,
    email      TEXT,
    title      TEXT,
    job_number TEXT,
    active     INTEGER NOT NULL,
    admin      INTEGER NOT NULL,
    boss       INTEGER NOT NULL,
    dept_ids   TEXT NOT NULL,
    PRIMARY KEY (run_id, userid)
) WITHOUT ROWID;

-- The members' departments that are in the staged directory, filled when the
-- read ends.
CREATE TABLE staging_links (
    run_id  INTEGER NOT NULL,
    userid  TEXT NOT NULL,
    dept_id INTEGER NOT NULL,
    PRIMARY KEY (run_id, userid, dept_id)
) WITHOUT ROWID;
