//! The agent's SQLite file, opened read-only beside the running agent, and the
//! assertions the tests make on it.

use super::agent::Agent;
use rusqlite::{Connection, OpenFlags};
use std::time::{Duration, Instant};

impl Agent {
    /// Read-only connection to the agent's database.
    pub fn db(&self) -> Connection {
        let c =
            Connection::open_with_flags(self.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// Waits until `sql` (returning one integer) yields `want`.
    pub fn wait_for(&self, sql: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(v) = self.db().query_row(sql, [], |r| r.get::<_, i64>(0)) {
                if v == want {
                    return;
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(20));
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
