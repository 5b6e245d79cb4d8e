//! Typed, fail-closed reads of one row's columns.
//!
//! Every reader refuses a value of the wrong type, a hash of the wrong length,
//! an infinite time or malformed JSON with [`StoreError::Corrupt`] naming the
//! table and column, never the value.

use crate::error::corrupt;
use crate::types::{JsonText, PgTime};
use tokenstore_core::codec::json;
use tokenstore_core::codec::secrets::SecretCodec;
use tokenstore_core::{Secret, StoreError, Timestamp, TokenHash};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// One row of `table`, read column by column.
pub(crate) struct Cols<'r> {
    row: &'r Row,
    table: &'static str,
}

impl<'r> Cols<'r> {
    /// Reads `row`, a row of `table`.
    pub(crate) fn new(row: &'r Row, table: &'static str) -> Self {
        Self { row, table }
    }

    fn get<T: FromSql<'r>>(&self, column: &'static str) -> Result<T, StoreError> {
        self.row
            .try_get(column)
            .map_err(|_| corrupt(self.table, column))
    }

    fn required<T>(&self, column: &'static str, v: Option<T>) -> Result<T, StoreError> {
        v.ok_or_else(|| corrupt(self.table, column))
    }

    /// A nullable text column.
    pub(crate) fn opt_text(&self, column: &'static str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }

    /// A NOT NULL text column.
    pub(crate) fn text(&self, column: &'static str) -> Result<String, StoreError> {
        let v = self.opt_text(column)?;
        self.required(column, v)
    }

    /// A nullable `timestamptz` column.
    pub(crate) fn opt_time(&self, column: &'static str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.get::<Option<PgTime>>(column)?.map(|t| t.0))
    }

    /// A NOT NULL `timestamptz` column.
    pub(crate) fn time(&self, column: &'static str) -> Result<Timestamp, StoreError> {
        let v = self.opt_time(column)?;
        self.required(column, v)
    }

    /// A NOT NULL `json` column's text.
    pub(crate) fn json(&self, column: &'static str) -> Result<String, StoreError> {
        let v = self.get::<Option<JsonText>>(column)?;
        self.required(column, v).map(|j| j.0)
    }

    /// A `json` list of strings.
    pub(crate) fn list(&self, column: &'static str) -> Result<Vec<String>, StoreError> {
        json::decode_list(&self.json(column)?).ok_or_else(|| corrupt(self.table, column))
    }

    /// A nullable token hash (32 bytes of `bytea`).
    pub(crate) fn opt_hash(&self, column: &'static str) -> Result<Option<TokenHash>, StoreError> {
        let Some(bytes) = self.get::<Option<&[u8]>>(column)? else {
            return Ok(None);
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| corrupt(self.table, column))?;
        Ok(Some(TokenHash::from_bytes(bytes)))
    }

    /// A nullable secret column, opened with `codec`.
    pub(crate) fn opt_secret(
        &self,
        column: &'static str,
        codec: &SecretCodec,
    ) -> Result<Option<Secret>, StoreError> {
        self.opt_text(column)?
            .map(|stored| codec.open(stored, self.table, column))
            .transpose()
    }

    /// A NOT NULL secret column, opened with `codec`.
    pub(crate) fn secret(
        &self,
        column: &'static str,
        codec: &SecretCodec,
    ) -> Result<Secret, StoreError> {
        let v = self.opt_secret(column, codec)?;
        self.required(column, v)
    }
}
