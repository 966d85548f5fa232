//! `crawler-agent db check`: SQLite's own integrity and foreign key checks, and a
//! recount of the trigger-kept `job_counts` against the jobs themselves.

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
    problems.extend(miscounted(conn)?);
    Ok(problems)
}

/// Where `job_counts` disagrees with a count of the jobs (reads every job: for the
/// operator's check, never a periodic path).
fn miscounted(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare(
        "WITH actual AS (SELECT credential_id, entity_type, status, count(*) AS jobs
                         FROM jobs GROUP BY 1, 2, 3),
              kept AS (SELECT credential_id, entity_type, status, jobs FROM job_counts
                       WHERE jobs != 0)
         SELECT a.credential_id, a.entity_type, a.status, a.jobs, coalesce(k.jobs, 0)
         FROM actual a LEFT JOIN kept k USING (credential_id, entity_type, status)
         WHERE a.jobs IS NOT coalesce(k.jobs, 0)
         UNION ALL
         SELECT k.credential_id, k.entity_type, k.status, 0, k.jobs
         FROM kept k LEFT JOIN actual a USING (credential_id, entity_type, status)
         WHERE a.jobs IS NULL",
    )?
    .query_map([], |r| {
        Ok(format!(
            "job_counts: credential {} {} {}: {} jobs, counted as {}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?
        ))
    })?
    .collect()
}
