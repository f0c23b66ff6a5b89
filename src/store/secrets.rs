//! Secrets kept in the store and nowhere else: the key that task tokens are derived from.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

impl Store {
    /// The store's 32-byte task-token key, created from OS randomness the first time it is asked for.
    pub fn token_key(&self) -> Result<[u8; 32], StoreError> {
        let conn = self.conn();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;")?;
        let read = || -> Result<Option<[u8; 32]>, StoreError> {
            let v: Option<Vec<u8>> =
                conn.query_row("SELECT value FROM secrets WHERE name = 'task_token_key'", [], |r| r.get(0)).optional()?;
            match v {
                None => Ok(None),
                Some(b) => <[u8; 32]>::try_from(b.as_slice())
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt("the task-token key in the secrets table is not 32 bytes".into())),
            }
        };
        if let Some(k) = read()? {
            return Ok(k);
        }
        // uuid v4 draws its bits from the operating system's generator (getrandom).
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        // Another process may have created it first: keep whichever was written first.
        conn.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES ('task_token_key', ?1)", params![key.to_vec()])?;
        read()?.ok_or_else(|| StoreError::Corrupt("the task-token key could not be stored".into()))
    }
}
