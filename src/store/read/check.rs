//! `crawler-agent db check`: SQLite's own integrity and foreign key checks.

use rusqlite::Connection;

/// Every problem `integrity_check` and `foreign_key_check` report, one line each;
/// empty when the database is sound.
pub fn problems(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let foreign: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |r| {
            Ok(format!(
                "{} row {} -> {}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut problems: Vec<String> = integrity.into_iter().filter(|l| l != "ok").collect();
    problems.extend(foreign.into_iter().map(|f| format!("foreign key: {f}")));
    Ok(problems)
}
