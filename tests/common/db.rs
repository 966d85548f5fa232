//! The agent's SQLite file, opened read-only beside the running agent, and the
//! assertions the tests make on it.

use super::agent::Agent;
use super::wait::wait_until;
use rusqlite::{Connection, OpenFlags};
use std::time::Duration;

impl Agent {
    /// Read-only connection to the agent's database.
    pub fn db(&self) -> Connection {
        self.try_db().unwrap()
    }

    /// [`Agent::db`], or why it cannot be opened yet (the agent binds its socket
    /// before it creates the database).
    fn try_db(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(self.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.busy_timeout(Duration::from_secs(10))?;
        Ok(c)
    }

    /// Waits until `sql` (returning one integer) yields `want`.
    pub fn wait_for(&self, sql: &str, want: i64) {
        let mut last = None;
        let reached = wait_until(
            Duration::from_secs(15),
            Duration::from_millis(20),
            || match self
                .try_db()
                .and_then(|db| db.query_row(sql, [], |r| r.get::<_, i64>(0)))
            {
                Ok(v) if v == want => true,
                Ok(v) => {
                    last = Some(v);
                    false
                }
                Err(_) => false,
            },
        );
        if reached {
            return;
        }
        panic!("`{sql}` gave {last:?}, wanted {want}\n{}", self.log());
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn job_status(&self, id: &str) -> String {
        self.db()
            .query_row("SELECT status FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    }
}
