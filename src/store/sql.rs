//! SQL text both backends run unchanged.
//!
//! Parameters are written `$1`, `$2`, ...: PostgreSQL's syntax, which SQLite
//! also accepts (a `$NNN` parameter there is a named one, and sqlx's SQLite
//! driver binds it by its number, exactly like `?NNN`; the store tests run
//! every query here on both backends). Only statements whose text is the same
//! for both belong here: bulk writes (multi-row `VALUES` + `json_each` on
//! SQLite, `UNNEST` arrays on PostgreSQL) and anything touching a timestamp
//! (microseconds in an `INTEGER` on SQLite, `timestamptz` on PostgreSQL) stay
//! in their backend.

/// Every tenant with data or a ledger: (namespace, name), sorted.
pub(crate) const TENANTS: &str =
    "SELECT namespace, name FROM tenants UNION SELECT namespace, name FROM ledger ORDER BY 1, 2";

/// The id of tenant ($1 namespace, $2 name).
pub(crate) const TENANT_ID: &str = "SELECT id FROM tenants WHERE namespace = $1 AND name = $2";

/// The departments of tenant id $1, as [`super::rows::DepartmentRow`].
pub(crate) const DEPARTMENTS: &str =
    "SELECT dept_id, parent_id, name, sort_order FROM departments WHERE tenant_id = $1";

/// The members of tenant id $1, as [`super::rows::MemberRow`].
pub(crate) const MEMBERS: &str = "SELECT userid, unionid, name, mobile, email, title, job_number, active, admin, boss \
     FROM members WHERE tenant_id = $1";

/// The member with userid $3 of tenant ($1 namespace, $2 name), one row per
/// department (ascending; one row with a NULL department for a member in
/// none), as [`super::rows::MemberRow`] and the department: one round trip.
pub(crate) const MEMBER: &str = "SELECT m.userid, m.unionid, m.name, m.mobile, m.email, m.title, m.job_number, m.active, m.admin, m.boss, md.dept_id \
     FROM members m JOIN tenants t ON t.id = m.tenant_id \
     LEFT JOIN member_departments md ON md.tenant_id = m.tenant_id AND md.userid = m.userid \
     WHERE t.namespace = $1 AND t.name = $2 AND m.userid = $3 ORDER BY md.dept_id";

/// The department links of tenant id $1, as [`super::rows::LinkRow`], ordered
/// so that each member's `dept_ids` come out ascending.
pub(crate) const MEMBER_DEPARTMENTS: &str =
    "SELECT userid, dept_id FROM member_departments WHERE tenant_id = $1 ORDER BY userid, dept_id";

/// Delete the members of tenant id $1 (cascades to their department links).
pub(crate) const DELETE_MEMBERS: &str = "DELETE FROM members WHERE tenant_id = $1";

/// Delete the departments of tenant id $1.
pub(crate) const DELETE_DEPARTMENTS: &str = "DELETE FROM departments WHERE tenant_id = $1";

/// Delete tenant ($1 namespace, $2 name); cascades to its directory, account,
/// sync runs and documents. The ledger is not linked to `tenants` and stays.
pub(crate) const DELETE_TENANT: &str = "DELETE FROM tenants WHERE namespace = $1 AND name = $2";

/// The account of tenant ($1 namespace, $2 name), as [`super::rows::AccountRow`].
pub(crate) const ACCOUNT: &str = "SELECT a.mode, a.corp_id, a.creator_email, a.creator_phone, a.password_set \
     FROM accounts a JOIN tenants t ON t.id = a.tenant_id WHERE t.namespace = $1 AND t.name = $2";

/// In one round trip, for tenant ($1 namespace, $2 name): its account's mode
/// (NULL: no account), whether the ledger records an unbind, and the bodies
/// (as JSON text) of its documents of kinds $3 and $4.
pub(crate) const LOGIN_FACTS: &str = "SELECT \
     (SELECT a.mode FROM accounts a JOIN tenants t ON t.id = a.tenant_id WHERE t.namespace = $1 AND t.name = $2), \
     EXISTS (SELECT 1 FROM ledger WHERE namespace = $1 AND name = $2 AND event = 'Unbound'), \
     (SELECT CAST(d.body AS TEXT) FROM documents d JOIN tenants t ON t.id = d.tenant_id WHERE t.namespace = $1 AND t.name = $2 AND d.kind = $3), \
     (SELECT CAST(d.body AS TEXT) FROM documents d JOIN tenants t ON t.id = d.tenant_id WHERE t.namespace = $1 AND t.name = $2 AND d.kind = $4)";

/// Whether the ledger of tenant ($1 namespace, $2 name) records an unbind.
pub(crate) const IS_UNBOUND: &str =
    "SELECT EXISTS (SELECT 1 FROM ledger WHERE namespace = $1 AND name = $2 AND event = 'Unbound')";

/// The body (as JSON text) of the document of kind $3 of tenant ($1
/// namespace, $2 name). `CAST(... AS TEXT)` is `jsonb` → text on PostgreSQL
/// and a no-op on SQLite's `TEXT` column.
pub(crate) const DOCUMENT: &str = "SELECT CAST(d.body AS TEXT) FROM documents d JOIN tenants t ON t.id = d.tenant_id \
     WHERE t.namespace = $1 AND t.name = $2 AND d.kind = $3";

/// The newest ticket of suite $1.
pub(crate) const SUITE_TICKET: &str = "SELECT ticket FROM suite_tickets WHERE suite_key = $1";

/// The userid of the member with unionid $3 in tenant ($1 namespace, $2 name)
/// (index `members_unionid`). A unionid is one person's; the first userid
/// is taken should a directory ever hold two.
pub(crate) const USERID_OF_UNIONID: &str = "SELECT m.userid FROM members m JOIN tenants t ON t.id = m.tenant_id \
     WHERE t.namespace = $1 AND t.name = $2 AND m.unionid = $3 ORDER BY m.userid LIMIT 1";

/// Every tenant's document of kind $1, as [`super::rows::DocumentRow`], sorted by tenant.
pub(crate) const DOCUMENTS: &str = "SELECT t.namespace, t.name, CAST(d.body AS TEXT) FROM documents d JOIN tenants t ON t.id = d.tenant_id \
     WHERE d.kind = $1 ORDER BY t.namespace, t.name";

/// Other tenants ($2 namespace, $3 name excluded) unbound from organization $1, sorted.
pub(crate) const UNBOUND_FROM_CORP: &str = "SELECT DISTINCT namespace, name FROM ledger \
     WHERE corp_id = $1 AND event = 'Unbound' AND NOT (namespace = $2 AND name = $3) ORDER BY 1, 2";

/// The fencing token in force.
pub(crate) const FENCE: &str = "SELECT token FROM fence WHERE id = 1";

/// Raise the fencing token to $1 (a new leadership term); never lowers it.
pub(crate) const ADVANCE_FENCE: &str = "UPDATE fence SET token = $1 WHERE id = 1 AND token < $1";

#[cfg(test)]
mod tests {
    use sqlx::Connection;
    use sqlx::sqlite::SqliteConnection;

    /// The statements above rely on sqlx's SQLite driver binding `$N` by its
    /// number, out of order and repeated, like `?N`.
    #[tokio::test]
    async fn sqlite_binds_dollar_parameters_by_number() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let row: (i64, String, i64, String) = sqlx::query_as("SELECT $2, $1, $2 + 1, $1 || $1")
            .bind("a")
            .bind(7_i64)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row, (7, "a".into(), 8, "aa".into()));
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM (SELECT 'ns' AS namespace, 'n' AS name) WHERE namespace = $1 AND name = $2)",
        )
        .bind("ns")
        .bind("n")
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(exists);
    }
}
