//! One pooled connection with its prepared statements, and the [`Db`] a job
//! runs its statements through.

use crate::error::Fail;
use crate::sql::Sql;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokenstore_core::codec::secrets::SecretCodec;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// A connection and the statements prepared on it (keyed by their SQL).
pub(crate) struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the connection has failed or closed (it is then dropped, not
    /// returned to the pool).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// `sql` prepared on this connection, once.
    async fn statement(&self, sql: &str) -> Result<Statement, Fail> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
            .cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs a batch of statements without parameters (simple protocol).
    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Fail> {
        Ok(self.client.batch_execute(sql).await?)
    }
}

/// What a job runs against: a checked-out connection, the statements and the
/// codec of the secret columns. Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) conn: Arc<Conn>,
    pub(crate) shared: Arc<Shared>,
}

/// What every job of one store shares.
pub(crate) struct Shared {
    pub(crate) sql: Sql,
    pub(crate) codec: SecretCodec,
    /// Whether writes append to the invalidation log (`sql` is then the
    /// logged variant, whose statements take the log's parameters).
    pub(crate) logs: bool,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Db {
    pub(crate) fn sql(&self) -> &Sql {
        &self.shared.sql
    }

    pub(crate) fn codec(&self) -> &SecretCodec {
        &self.shared.codec
    }

    /// Whether writes append to the invalidation log.
    pub(crate) fn logs(&self) -> bool {
        self.shared.logs
    }

    /// Every row of `sql`.
    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Fail> {
        let statement = self.conn.statement(sql).await?;
        Ok(self.conn.client.query(&statement, params).await?)
    }

    /// The row of `sql`, if any (more than one is an error).
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Fail> {
        let statement = self.conn.statement(sql).await?;
        Ok(self.conn.client.query_opt(&statement, params).await?)
    }

    /// Runs `sql`; how many rows it changed.
    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Fail> {
        let statement = self.conn.statement(sql).await?;
        Ok(self.conn.client.execute(&statement, params).await?)
    }
}

impl Conn {
    /// The single integer `sql` returns, if a row (used by the migration).
    pub(crate) async fn version(&self, sql: &str) -> Result<Option<i32>, Fail> {
        let row = self.client.query_opt(sql, &[]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}
