-- Marketplace apps (suites). DingTalk pushes a suite ticket about every five
-- hours on the suite's Stream connection; the newest replaces the old (a
-- ticket has no expiry of its own), and every token the suite asks for names
-- it. Kept here so that a restart does not wait hours for the next one.
CREATE TABLE suite_tickets (
    suite_key   TEXT PRIMARY KEY,
    ticket      TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);

-- A marketplace app's leaver is known by unionid only (user_leave_org).
CREATE INDEX members_unionid ON members (tenant_id, unionid);
