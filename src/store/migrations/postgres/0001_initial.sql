-- dingbind store schema v1 (PostgreSQL).

-- Every tenant the store holds data for. Deleting a row cascades to the
-- tenant's directory, account, sync runs and documents; the ledger is keyed by
-- namespace/name on its own and survives it.
CREATE TABLE tenants (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    UNIQUE (namespace, name)
);

-- `version` starts at 1 and grows by one each time the row really changes.
CREATE TABLE departments (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    dept_id    BIGINT NOT NULL,
    parent_id  BIGINT,
    name       TEXT NOT NULL,
    sort_order BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, dept_id)
);

CREATE TABLE members (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
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
    version    BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, userid)
);

-- A member's departments (a member can be in several).
CREATE TABLE member_departments (
    tenant_id BIGINT NOT NULL,
    userid    TEXT NOT NULL,
    dept_id   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, userid, dept_id),
    FOREIGN KEY (tenant_id, userid) REFERENCES members (tenant_id, userid) ON DELETE CASCADE
);

CREATE TABLE accounts (
    tenant_id     BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    mode          TEXT NOT NULL CHECK (mode IN ('DingTalk', 'Public')),
    corp_id       TEXT,
    creator_email TEXT,
    creator_phone TEXT,
    password_set  BOOLEAN NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sync_runs (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('Succeeded', 'Failed', 'Held')),
    added          BIGINT NOT NULL,
    updated        BIGINT NOT NULL,
    removed        BIGINT NOT NULL,
    calls          BIGINT NOT NULL,
    held_deletions BIGINT NOT NULL,
    rows_written   BIGINT NOT NULL,
    message        TEXT
);
CREATE INDEX sync_runs_by_tenant ON sync_runs (tenant_id, id);

CREATE TABLE documents (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    body       JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
CREATE INDEX documents_by_kind ON documents (kind);

-- The binding ledger: append-only, enforced here as well as in the code.
CREATE TABLE ledger (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    event     TEXT NOT NULL CHECK (event IN ('Bound', 'Unbound')),
    at        TIMESTAMPTZ NOT NULL,
    corp_id   TEXT NOT NULL,
    reason    TEXT CHECK (reason IN ('Requested', 'TrialExpired')),
    CHECK ((event = 'Unbound') = (reason IS NOT NULL))
);
CREATE INDEX ledger_by_tenant ON ledger (namespace, name, seq);

CREATE FUNCTION dingbind_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dingbind ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER ledger_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION dingbind_ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION dingbind_ledger_append_only();

-- Appends for one tenant are serialized (transaction-scoped advisory lock), so
-- a Bound racing an Unbound cannot slip past the check.
CREATE FUNCTION dingbind_ledger_no_rebind() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('dingbind-ledger/' || NEW.namespace || '/' || NEW.name, 0));
    IF NEW.event = 'Bound' AND EXISTS (
        SELECT 1 FROM ledger WHERE namespace = NEW.namespace AND name = NEW.name AND event = 'Unbound'
    ) THEN
        RAISE EXCEPTION 'dingbind ledger: the tenant was unbound; it can never be bound to DingTalk again'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_no_rebind BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION dingbind_ledger_no_rebind();
