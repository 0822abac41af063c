-- dingbind store schema v1 (SQLite).
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC).

-- Every tenant the store holds data for. Deleting a row cascades to the
-- tenant's directory, account, sync runs and documents; the ledger is keyed by
-- namespace/name on its own and survives it.
CREATE TABLE tenants (
    id        INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    UNIQUE (namespace, name)
);

-- `version` starts at 1 and grows by one each time the row really changes.
CREATE TABLE departments (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    dept_id    INTEGER NOT NULL,
    parent_id  INTEGER,
    name       TEXT NOT NULL,
    sort_order INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, dept_id)
) WITHOUT ROWID;

CREATE TABLE members (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    userid     TEXT NOT NULL,
    unionid    TEXT NOT NULL,
    name       TEXT NOT NULL,
    mobile     TEXT,
    email      TEXT,
    title      TEXT,
    job_number TEXT,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    admin      INTEGER NOT NULL CHECK (admin IN (0, 1)),
    boss       INTEGER NOT NULL CHECK (boss IN (0, 1)),
    version    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, userid)
) WITHOUT ROWID;

-- A member's departments (a member can be in several).
CREATE TABLE member_departments (
    tenant_id INTEGER NOT NULL,
    userid    TEXT NOT NULL,
    dept_id   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, userid, dept_id),
    FOREIGN KEY (tenant_id, userid) REFERENCES members (tenant_id, userid) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE accounts (
    tenant_id     INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    mode          TEXT NOT NULL CHECK (mode IN ('DingTalk', 'Public')),
    corp_id       TEXT,
    creator_email TEXT,
    creator_phone TEXT,
    password_set  INTEGER NOT NULL CHECK (password_set IN (0, 1)),
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sync_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('Succeeded', 'Failed', 'Held')),
    added          INTEGER NOT NULL,
    updated        INTEGER NOT NULL,
    removed        INTEGER NOT NULL,
    calls          INTEGER NOT NULL,
    held_deletions INTEGER NOT NULL,
    rows_written   INTEGER NOT NULL,
    message        TEXT
);
CREATE INDEX sync_runs_by_tenant ON sync_runs (tenant_id, id);

CREATE TABLE documents (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL CHECK (json_valid(body)),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
CREATE INDEX documents_by_kind ON documents (kind);

-- The binding ledger: append-only, enforced here as well as in the code.
CREATE TABLE ledger (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    event     TEXT NOT NULL CHECK (event IN ('Bound', 'Unbound')),
    at        INTEGER NOT NULL,
    corp_id   TEXT NOT NULL,
    reason    TEXT CHECK (reason IN ('Requested', 'TrialExpired')),
    CHECK ((event = 'Unbound') = (reason IS NOT NULL))
);
CREATE INDEX ledger_by_tenant ON ledger (namespace, name, seq);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'dingbind ledger is append-only: entries cannot be updated');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'dingbind ledger is append-only: entries cannot be deleted');
END;

CREATE TRIGGER ledger_no_rebind BEFORE INSERT ON ledger
WHEN NEW.event = 'Bound'
 AND EXISTS (SELECT 1 FROM ledger WHERE namespace = NEW.namespace AND name = NEW.name AND event = 'Unbound')
BEGIN
    SELECT RAISE(ABORT, 'dingbind ledger: the tenant was unbound; it can never be bound to DingTalk again');
END;
