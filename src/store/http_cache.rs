//! Stored ETag caches: per integration, the `ETag`, `Link` header and body
//! of each response its source asked to keep, so that conditional requests
//! survive between runs (and processes). Plain rows; the store never speaks
//! HTTP — `sync` turns them into the HTTP layer's cache and back.

use rusqlite::{TransactionBehavior, params};

use super::{Store, StoreError, busy};

/// One kept response of one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCacheRow {
    /// The full request URL (no credentials: tokens travel in headers).
    pub url: String,
    pub etag: String,
    pub link: Option<String>,
    /// Shared with the HTTP layer's cache entry: saving copies nothing.
    pub body: std::sync::Arc<[u8]>,
}

impl Store {
    /// Every kept response of `integration`, by URL.
    pub fn load_http_cache(&self, integration: &str) -> Result<Vec<HttpCacheRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT url, etag, link, body FROM http_cache WHERE integration = ?1 ORDER BY url",
        )?;
        let rows = stmt.query_map([integration], |row| {
            Ok(HttpCacheRow {
                url: row.get(0)?,
                etag: row.get(1)?,
                link: row.get(2)?,
                body: row.get::<_, Vec<u8>>(3)?.into(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces `integration`'s kept responses with `rows`, in one
    /// transaction (a crash keeps the previous set whole).
    pub fn save_http_cache(
        &mut self,
        integration: &str,
        rows: &[HttpCacheRow],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        tx.execute(
            "DELETE FROM http_cache WHERE integration = ?1",
            [integration],
        )?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO http_cache (integration, url, etag, link, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for row in rows {
                insert.execute(params![
                    integration,
                    row.url,
                    row.etag,
                    row.link,
                    &*row.body
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_an_integration_drops_its_cache_only() {
        let mut store = Store::open_in_memory().expect("open");
        let row = |url: &str| HttpCacheRow {
            url: url.to_owned(),
            etag: "\"e1\"".to_owned(),
            link: None,
            body: std::sync::Arc::from(&b"[]"[..]),
        };
        store
            .save_http_cache(
                "gh",
                &[row("http://127.0.0.1/a"), row("http://127.0.0.1/b")],
            )
            .expect("save gh");
        store
            .save_http_cache("other", &[row("http://127.0.0.1/a")])
            .expect("save other");
        assert_eq!(store.load_http_cache("gh").expect("load").len(), 2);
        store.delete_integration("gh").expect("delete");
        assert!(store.load_http_cache("gh").expect("load").is_empty());
        assert_eq!(store.load_http_cache("other").expect("load").len(), 1);
    }
}
