-- Staging for directory syncs: what DingTalk answered, written page by page
-- (COPY) while a sync reads, then compared with the directory and applied in
-- one transaction, so that a sync holds pages in flight in memory, never the
-- whole organization. A run's rows are deleted when it ends. The rows of a run
-- that never ended (a killed process) are deleted when the tenant's next sync
-- starts, and any run older than a day when the store is opened.
--
-- UNLOGGED: staging is scratch data, never worth a WAL write; after a server
-- crash PostgreSQL empties these tables, every run with its rows, which only
-- makes the interrupted syncs start again. (Unlogged tables are not replicated
-- to standbys either: a sync runs against the primary.)
CREATE UNLOGGED TABLE staging_runs (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set once the read is complete and the rows are normalized: only then
    -- can the run be compared or applied.
    finished   BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX staging_runs_by_tenant ON staging_runs (tenant_id);

-- Departments as read, `seq` in the order read; COPY cannot skip duplicates,
-- so a department read twice is reduced to its last copy when the read ends.
CREATE UNLOGGED TABLE staging_departments (
    run_id     BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    dept_id    BIGINT NOT NULL,
    parent_id  BIGINT,
    name       TEXT NOT NULL,
    sort_order BIGINT NOT NULL
);
CREATE INDEX staging_departments_by_run ON staging_departments (run_id, dept_id, seq);

-- Members as read; a member read twice is reduced to its first copy when the
-- read ends. `dept_ids` are the member's departments, as DingTalk gave them.
CREATE UNLOGGED TABLE staging_members (
    run_id     BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    userid     TEXT NOT NULL,
    unionid    TEXT NOT NULL,
    name       TEXT NOT NULL,
    mobile     TEXT,
    email      TEXT,
    title      TEXT,
    job_number TEXT,
    active     BOOLEAN NOT NULL,
    admin      BOOLEAN NOT NULL,
    boss       BOOLEAN NOT NULL,
    dept_ids   BIGINT[] NOT NULL
);
CREATE INDEX staging_members_by_run ON staging_members (run_id, userid, seq);

-- The members' departments that are in the staged directory, filled when the
-- read ends.
CREATE UNLOGGED TABLE staging_links (
    run_id  BIGINT NOT NULL,
    userid  TEXT NOT NULL,
    dept_id BIGINT NOT NULL,
    PRIMARY KEY (run_id, userid, dept_id)
);

-- PostgreSQL checks a foreign key with a trigger per inserted row (a lookup
-- and a row lock on the referenced row, WAL included): for a full load of
-- 100,000 members and their 120,000 department links that was most of the
-- time. Members and links no longer carry one; the store deletes what the
-- cascades deleted itself, in the same transaction (a member's links with the
-- member, a tenant's members and links with the tenant), and a link to an
-- unknown member reads as corrupt data.
ALTER TABLE member_departments DROP CONSTRAINT IF EXISTS member_departments_tenant_id_userid_fkey;
ALTER TABLE members DROP CONSTRAINT IF EXISTS members_tenant_id_fkey;
