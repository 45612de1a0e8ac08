//! The store's hand-written statements on either engine.
//!
//! They are written once, for SQLite, in SQL both engines read the same way, with two
//! differences that [`statement`] takes care of when the connection is PostgreSQL:
//!
//! - placeholders: `?` for each bound value on SQLite; PostgreSQL numbers them (`$1`,
//!   `$2`, ...);
//! - SQLite's planner hints, which PostgreSQL has no counterpart for and would refuse:
//!   `INDEXED BY <index>` (use that index) is dropped, and `CROSS JOIN ... ON` (join in
//!   the order written) becomes `JOIN ... ON`. PostgreSQL's planner picks for itself.
//!
//! Where the engines differ in more than that, the caller picks the text by
//! [`DbBackend`].

use sea_orm::sea_query::Value;
use sea_orm::{DbBackend, Statement};

/// `sql` with `values` bound, for `backend`: on PostgreSQL every `?` outside a quoted
/// literal or identifier becomes `$1`, `$2`, ... in order.
pub(crate) fn statement(
    backend: DbBackend,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Statement {
    match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(backend, postgres_text(sql), values),
        _ => Statement::from_sql_and_values(backend, sql, values),
    }
}

/// PostgreSQL's text of a statement written for SQLite (see the module's comment).
pub(crate) fn postgres_text(sql: &str) -> String {
    without_hints(&numbered(sql))
}

/// A statement without bound values.
pub(crate) fn plain(backend: DbBackend, sql: &str) -> Statement {
    statement(backend, sql, Vec::new())
}

/// `sql` without SQLite's planner hints. Statements use them outside literals only.
fn without_hints(sql: &str) -> String {
    let mut out = sql.replace("CROSS JOIN", "JOIN");
    while let Some(at) = out.find(" INDEXED BY ") {
        let name_at = at + " INDEXED BY ".len();
        let name_len = out[name_at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(out.len() - name_at);
        out.replace_range(at..name_at + name_len, "");
    }
    out
}

/// `sql` with its `?` placeholders numbered, PostgreSQL's way.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0u32;
    // The quote we are inside of, if any: ' for a literal, " for an identifier.
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            // A doubled quote closes and reopens: the state comes out the same.
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let cases = [
            ("SELECT 1", "SELECT 1"),
            (
                "SELECT * FROM t WHERE a = ? AND b IN (?, ?)",
                "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)",
            ),
            ("SELECT '?' || ?", "SELECT '?' || $1"),
            ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"),
            (
                r#"SELECT "a?b" FROM t WHERE c = ?"#,
                r#"SELECT "a?b" FROM t WHERE c = $1"#,
            ),
            ("VALUES (?, ?), (?, ?)", "VALUES ($1, $2), ($3, $4)"),
        ];
        for (sqlite, postgres) in cases {
            assert_eq!(numbered(sqlite), postgres, "{sqlite}");
            let kept = statement(DbBackend::Sqlite, sqlite, Vec::<Value>::new());
            assert_eq!(kept.sql, sqlite);
            let renumbered = statement(DbBackend::Postgres, sqlite, Vec::<Value>::new());
            assert_eq!(renumbered.sql, postgres);
        }
    }

    #[test]
    fn sqlite_planner_hints_are_dropped_for_postgres() {
        let sqlite = "SELECT s.seq FROM deployment_events s INDEXED BY events_by_deployment \
                      WHERE s.id = ? UNION ALL SELECT d.* FROM environments e CROSS JOIN \
                      deployments d ON d.id = e.id INDEXED BY x";
        let postgres = statement(DbBackend::Postgres, sqlite, Vec::<Value>::new());
        assert_eq!(
            postgres.sql,
            "SELECT s.seq FROM deployment_events s WHERE s.id = $1 UNION ALL SELECT d.* \
             FROM environments e JOIN deployments d ON d.id = e.id"
        );
        assert_eq!(
            statement(DbBackend::Sqlite, sqlite, Vec::<Value>::new()).sql,
            sqlite
        );
    }

    #[test]
    fn ten_and_more_placeholders_keep_their_order() {
        let sql = ["?"; 12].join(",");
        let want: Vec<String> = (1..=12).map(|n| format!("${n}")).collect();
        assert_eq!(numbered(&sql), want.join(","));
    }
}
