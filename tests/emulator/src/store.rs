//! The job store: SQLite (one file in the emulator's directory) so jobs survive a restart. One row per job
//! holds the job as the customer sent it (secrets included: the later import step needs the storage key and
//! the BitLocker keys; the file is created 0600) plus its state and timestamps. The store also keeps the
//! emulator's clock offset, so a test that moved time forward sees the same time after a restart.
//!
//! Callers serialise access through one `Mutex<Store>`; every change runs in an IMMEDIATE transaction, so two
//! concurrent Put Job calls with the same name produce one job.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use seedship_shared::api::{Job, JobState};
use std::path::{Path, PathBuf};

/// Jobs left in Creating are deleted this long after their last Put or Update.
pub const CREATING_EXPIRY_SECS: i64 = 14 * 24 * 3600;
/// Completed and Closed jobs are deleted this long after they finished.
pub const FINISHED_EXPIRY_SECS: i64 = 90 * 24 * 3600;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job database {path}: {source}")]
    Db { path: PathBuf, source: rusqlite::Error },
    #[error("job database {path}: the stored job '{name}' does not decode: {reason}")]
    Corrupt {
        path: PathBuf,
        name: String,
        reason: String,
    },
}

/// The furthest the operator may move the emulator's clock, either way: 200 years, in seconds. Beyond it the
/// offset is clamped, so "now" plus any expiry period stays far from `i64` overflow.
pub const MAX_CLOCK_OFFSET: i64 = 200 * 366 * 86_400;

/// One stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    pub subscription: String,
    pub name: String,
    pub account: String,
    pub state: JobState,
    pub job: Job,
    /// Unix seconds (emulator clock) of creation, of the last Put/Update, and of reaching Completed/Closed.
    pub created: i64,
    pub updated: i64,
    pub finished: Option<i64>,
}

/// Why a Put Job could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutRefusal {
    /// The name belongs to a job that is no longer Creating (or lives in another storage account).
    NameTaken { state: JobState, account: String },
    /// The subscription already has this many active jobs.
    TooManyActive(usize),
}

/// The SQLite job store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    subscription TEXT NOT NULL, name TEXT NOT NULL, account TEXT NOT NULL, state TEXT NOT NULL,
    job TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL, finished INTEGER,
    PRIMARY KEY (subscription, name));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arm_jobs (
    subscription TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (subscription, name));
";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = |source| StoreError::Db {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        // `serve` and `receive` may use the database at the same time: wait for the other's write.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// The emulator clock's offset from the system clock, in seconds.
    pub fn clock_offset(&self) -> Result<i64, StoreError> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'clock_offset'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())?;
        Ok(v.and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
            .clamp(-MAX_CLOCK_OFFSET, MAX_CLOCK_OFFSET))
    }

    /// Sets the clock offset.
    pub fn set_clock_offset(&self, offset: i64) -> Result<(), StoreError> {
        let offset = offset.clamp(-MAX_CLOCK_OFFSET, MAX_CLOCK_OFFSET);
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('clock_offset', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
                params![offset.to_string()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// The emulator's "now": system time plus the offset, Unix seconds.
    pub fn now(&self) -> Result<i64, StoreError> {
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Ok(sys.saturating_add(self.clock_offset()?))
    }

    /// Deletes jobs left in Creating for two weeks and jobs finished 90 days ago; returns how many.
    pub fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM jobs WHERE (state = 'Creating' AND updated + ?1 <= ?3)
                 OR (state IN ('Completed', 'Closed') AND finished IS NOT NULL AND finished + ?2 <= ?3)",
                params![CREATING_EXPIRY_SECS, FINISHED_EXPIRY_SECS, now],
            )
            .map_err(self.db())?;
        self.conn
            .execute(
                "DELETE FROM arm_jobs WHERE NOT EXISTS (SELECT 1 FROM jobs
                 WHERE jobs.subscription = arm_jobs.subscription AND jobs.name = arm_jobs.name)",
                [],
            )
            .map_err(self.db())?;
        Ok(n)
    }

    fn row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredJob, String)> {
        let state: String = r.get(3)?;
        let json: String = r.get(4)?;
        Ok((
            StoredJob {
                subscription: r.get(0)?,
                name: r.get(1)?,
                account: r.get(2)?,
                state: JobState::parse(&state).unwrap_or(JobState::Faulted),
                job: Job::default(),
                created: r.get(5)?,
                updated: r.get(6)?,
                finished: r.get(7)?,
            },
            json,
        ))
    }

    fn decode(&self, (mut job, json): (StoredJob, String)) -> Result<StoredJob, StoreError> {
        job.job = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            name: job.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(job)
    }

    const COLUMNS: &'static str = "subscription, name, account, state, job, created, updated, finished";

    /// One job of a subscription.
    pub fn get(&self, subscription: &str, name: &str) -> Result<Option<StoredJob>, StoreError> {
        let sql = format!(
            "SELECT {} FROM jobs WHERE subscription = ?1 AND name = ?2",
            Self::COLUMNS
        );
        let raw = self
            .conn
            .query_row(&sql, params![subscription, name], |r| self.row(r))
            .optional()
            .map_err(self.db())?;
        raw.map(|r| self.decode(r)).transpose()
    }

    /// Every job of a subscription, by name.
    pub fn list(&self, subscription: &str) -> Result<Vec<StoredJob>, StoreError> {
        let sql = format!(
            "SELECT {} FROM jobs WHERE subscription = ?1 ORDER BY name",
            Self::COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.db())?;
        let rows = stmt
            .query_map(params![subscription], |r| self.row(r))
            .map_err(self.db())?;
        let mut out = Vec::new();
        for r in rows {
            out.push(self.decode(r.map_err(self.db())?)?);
        }
        Ok(out)
    }

    /// Stores a new job, or replaces one of the same name that is still Creating in the same account, in one
    /// transaction. Returns whether a job was replaced.
    pub fn put(
        &mut self,
        job: &StoredJob,
        max_active: usize,
    ) -> Result<Result<bool, PutRefusal>, StoreError> {
        self.put_with_record(job, max_active, None)
    }

    /// [`Store::put`] for a job made through Resource Manager: its record (JSON the ARM layer owns: resource
    /// group, the properties as sent) is written in the same transaction. A classic Put (`record` `None`)
    /// drops any record left under the name.
    pub fn put_with_record(
        &mut self,
        job: &StoredJob,
        max_active: usize,
        record: Option<&str>,
    ) -> Result<Result<bool, PutRefusal>, StoreError> {
        let path = self.path.clone();
        let db = |source| StoreError::Db {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let existing: Option<(String, String)> = tx
            .query_row(
                "SELECT state, account FROM jobs WHERE subscription = ?1 AND name = ?2",
                params![job.subscription, job.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        if let Some((state, account)) = &existing {
            let state = JobState::parse(state).unwrap_or(JobState::Faulted);
            if state != JobState::Creating || *account != job.account {
                return Ok(Err(PutRefusal::NameTaken {
                    state,
                    account: account.clone(),
                }));
            }
        }
        let active: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE subscription = ?1 AND name != ?2 AND state NOT IN ('Completed', 'Closed')",
                params![job.subscription, job.name],
                |r| r.get(0),
            )
            .map_err(db)?;
        if active as usize >= max_active {
            return Ok(Err(PutRefusal::TooManyActive(active as usize)));
        }
        let json = serde_json::to_string(&job.job).unwrap_or_default();
        tx.execute(
            "INSERT OR REPLACE INTO jobs (subscription, name, account, state, job, created, updated, finished)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![job.subscription, job.name, job.account, job.state.as_str(), json, job.created, job.updated, job.finished],
        )
        .map_err(db)?;
        match record {
            Some(r) => tx.execute(
                "INSERT OR REPLACE INTO arm_jobs (subscription, name, record) VALUES (?1, ?2, ?3)",
                params![job.subscription, job.name, r],
            ),
            None => tx.execute(
                "DELETE FROM arm_jobs WHERE subscription = ?1 AND name = ?2",
                params![job.subscription, job.name],
            ),
        }
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Ok(existing.is_some()))
    }

    /// Writes back a changed job (state, body, timestamps).
    pub fn save(&self, job: &StoredJob) -> Result<(), StoreError> {
        let json = serde_json::to_string(&job.job).unwrap_or_default();
        self.conn
            .execute(
                "UPDATE jobs SET state = ?3, job = ?4, updated = ?5, finished = ?6 WHERE subscription = ?1 AND name = ?2",
                params![job.subscription, job.name, job.state.as_str(), json, job.updated, job.finished],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// The Resource Manager record of a job, if it was made through Resource Manager.
    pub fn record(&self, subscription: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT record FROM arm_jobs WHERE subscription = ?1 AND name = ?2",
                params![subscription, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())
    }

    /// Replaces the Resource Manager record of an existing job.
    pub fn save_record(&self, subscription: &str, name: &str, record: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE arm_jobs SET record = ?3 WHERE subscription = ?1 AND name = ?2",
                params![subscription, name, record],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Deletes a job (and its Resource Manager record); returns whether it existed.
    pub fn delete(&self, subscription: &str, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "DELETE FROM arm_jobs WHERE subscription = ?1 AND name = ?2",
                params![subscription, name],
            )
            .map_err(self.db())?;
        let n = self
            .conn
            .execute(
                "DELETE FROM jobs WHERE subscription = ?1 AND name = ?2",
                params![subscription, name],
            )
            .map_err(self.db())?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, state: JobState, t: i64) -> StoredJob {
        StoredJob {
            subscription: "sub".into(),
            name: name.into(),
            account: "acct".into(),
            state,
            job: Job {
                name: name.into(),
                ..Default::default()
            },
            created: t,
            updated: t,
            finished: state.is_finished().then_some(t),
        }
    }

    #[test]
    fn put_rules_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("jobs.sqlite")).unwrap();
        assert_eq!(s.put(&job("a", JobState::Creating, 0), 20).unwrap(), Ok(false));
        assert_eq!(s.put(&job("a", JobState::Creating, 5), 20).unwrap(), Ok(true));
        let mut shipped = s.get("sub", "a").unwrap().unwrap();
        shipped.state = JobState::Shipping;
        s.save(&shipped).unwrap();
        assert!(matches!(
            s.put(&job("a", JobState::Creating, 6), 20).unwrap(),
            Err(PutRefusal::NameTaken { .. })
        ));
        assert_eq!(
            s.put(&job("b", JobState::Creating, 0), 1).unwrap(),
            Err(PutRefusal::TooManyActive(1))
        );
        assert_eq!(s.put(&job("c", JobState::Completed, 0), 20).unwrap(), Ok(false));
        assert_eq!(s.put(&job("d", JobState::Creating, 10), 20).unwrap(), Ok(false));
        assert_eq!(s.purge_expired(CREATING_EXPIRY_SECS + 9).unwrap(), 0);
        assert_eq!(s.purge_expired(CREATING_EXPIRY_SECS + 10).unwrap(), 1);
        assert!(s.get("sub", "d").unwrap().is_none());
        assert_eq!(s.purge_expired(FINISHED_EXPIRY_SECS).unwrap(), 1);
        assert_eq!(s.list("sub").unwrap().len(), 1);
        s.set_clock_offset(42).unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("jobs.sqlite")).unwrap();
        assert_eq!(s.clock_offset().unwrap(), 42);
        assert_eq!(s.get("sub", "a").unwrap().unwrap().state, JobState::Shipping);
    }
}
