//! What the backends share: binding params, reading rows under the limits,
//! typing columns, checking a role's grants, caching the catalogue.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use std::time::Duration;

use super::{Catalog, NameRules, Param, Rows, SchemaColumn, SqlError, encode};
use crate::policy::TableAllow;

/// Bind the request's parameters to a query, in order (every backend).
/// `N` is the type a NULL is sent as.
pub(crate) fn bind_params<'q, DB, N>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'t> Option<N>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> f64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    for p in params {
        query = match p {
            Param::Null => query.bind(None::<N>),
            Param::Bool(b) => query.bind(*b),
            Param::Int(i) => query.bind(*i),
            Param::Float(f) => query.bind(*f),
            Param::Text(s) => query.bind(s.clone()),
        };
    }
    query
}

/// Statements being stopped in the database after their request ended
/// early (a dedicated session cancels them): a stop waits for these.
pub(crate) fn cancels() -> &'static tokio_util::task::TaskTracker {
    static CANCELS: std::sync::LazyLock<tokio_util::task::TaskTracker> =
        std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);
    &CANCELS
}

/// How long a cancel may take: its own connection, then one statement.
pub(crate) const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Stop the statement a session abandoned, then close that session: `stop`
/// runs on a session of its own (a pool that every request holds cannot
/// starve it), within `CANCEL_TIMEOUT`, tracked by `cancels()`; `held` is
/// closed only afterwards, so its backend's id cannot have been reused by
/// then. `what` names the statement in the log.
pub(crate) fn cancel_then_close<DB: sqlx::Database>(
    mut held: sqlx::pool::PoolConnection<DB>,
    options: Arc<<DB::Connection as sqlx::Connection>::Options>,
    what: String,
    stop: impl FnOnce(DB::Connection) -> BoxFuture<'static, Result<DB::Connection, sqlx::Error>> + Send + 'static,
) {
    held.close_on_drop();
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    rt.spawn(cancels().track_future(async move {
        let work = async {
            let other = sqlx::ConnectOptions::connect(&*options).await?;
            sqlx::Connection::close(stop(other).await?).await
        };
        match tokio::time::timeout(CANCEL_TIMEOUT, work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("stopping {what} failed: {e}"),
            Err(_) => tracing::warn!("stopping {what} timed out"),
        }
        drop(held);
    }));
}

/// The engine's own count of a prepared statement's placeholders against
/// the values given: a missing value is never bound as NULL.
pub(crate) fn check_param_count<T>(
    declared: Option<sqlx::Either<&[T], usize>>,
    params: &[Param],
) -> Result<(), SqlError> {
    let expected = match declared {
        Some(sqlx::Either::Left(types)) => types.len(),
        Some(sqlx::Either::Right(n)) => n,
        None => return Ok(()),
    };
    if expected != params.len() {
        return Err(SqlError::Params { expected, given: params.len() });
    }
    Ok(())
}

/// Read rows into `table`, each value pushed straight into its column by
/// `push` (given the column's decoder, resolved once per column), then
/// encode them. The table stops the stream at its row and byte limits.
pub(crate) async fn collect_rows<R, E, T: Copy>(
    mut stream: impl futures_util::Stream<Item = Result<R, E>> + Unpin,
    mut table: encode::Table,
    types: &[T],
    on_error: impl Fn(E) -> SqlError,
    push: impl Fn(&R, usize, T, &mut encode::Column) -> Result<(), SqlError>,
) -> Result<Rows, SqlError> {
    use futures_util::TryStreamExt;
    while let Some(row) = stream.try_next().await.map_err(&on_error)? {
        for (i, (col, t)) in table.start_row()?.iter_mut().zip(types).enumerate() {
            push(&row, i, *t, col)?;
        }
        table.end_row()?;
    }
    drop(stream);
    table.finish()
}

/// The columns of a prepared statement of a statically typed backend, each
/// with its kind and the backend's decoder for it (`resolve`, once per
/// column); a type sluice cannot read is an error that suggests the
/// backend's own cast (`cast` turns a column name into it).
pub(crate) fn typed_columns<C: sqlx::Column, T>(
    columns: &[C],
    resolve: impl Fn(&C) -> Option<(encode::Kind, T)>,
    cast: fn(&str) -> String,
) -> Result<(Vec<encode::Column>, Vec<T>), SqlError> {
    use sqlx::TypeInfo;
    let typed = columns
        .iter()
        .map(|c| {
            let (kind, t) = resolve(c).ok_or_else(|| SqlError::Database {
                message: format!(
                    "column `{}` has type {}, which sluice cannot read yet; cast it in the query, e.g. {}",
                    c.name(),
                    c.type_info().name(),
                    cast(c.name())
                ),
            })?;
            Ok((encode::Column::typed(c.name(), kind), t))
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok(typed.into_iter().unzip())
}

/// The policy's tables a role cannot read (verifying a role: each allowed
/// table must be among the role's `readable` ones).
pub(crate) fn unreadable(
    rules: &NameRules,
    tables: &TableAllow,
    readable: &[sluice_sql_guard::Resolved],
) -> Vec<String> {
    let TableAllow::Only(entries) = tables else { return Vec::new() };
    entries
        .iter()
        .filter(|e| !readable.iter().any(|r| rules.same(r, &rules.entry(e))))
        .map(|e| {
            format!("it cannot read allowed table {e} (GRANT SELECT ON it, or remove it from the policy)")
        })
        .collect()
}

/// Catalogue rows from a query selecting `s`, `t`, `c`, `d`.
pub(crate) fn schema_columns<R>(rows: &[R]) -> Vec<SchemaColumn>
where
    R: sqlx::Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .filter_map(|r| {
            Some(SchemaColumn {
                schema: r.try_get("s").ok()?,
                table: r.try_get("t").ok()?,
                column: r.try_get("c").ok()?,
                data_type: r.try_get("d").ok()?,
            })
        })
        .collect()
}

/// How long a loaded catalogue is trusted before it is read again.
const CATALOG_MAX_AGE: Duration = Duration::from_secs(30);

/// The catalogue a backend last loaded, reloaded when older than
/// `CATALOG_MAX_AGE` (a table or stored function created meanwhile is
/// refused or treated conservatively until then, never let through).
#[derive(Default)]
pub(crate) struct CatalogCache(tokio::sync::Mutex<Option<(std::time::Instant, Arc<Catalog>)>>);

impl CatalogCache {
    pub(crate) async fn get<F: std::future::Future<Output = Result<Catalog, SqlError>>>(
        &self,
        load: impl FnOnce() -> F,
    ) -> Arc<Catalog> {
        let mut slot = self.0.lock().await;
        if let Some((at, c)) = slot.as_ref()
            && at.elapsed() < CATALOG_MAX_AGE
        {
            return c.clone();
        }
        match load().await {
            Ok(c) => {
                let c = Arc::new(c);
                *slot = Some((std::time::Instant::now(), c.clone()));
                c
            }
            Err(e) => {
                tracing::warn!("reading the database catalogue failed: {e}");
                slot.as_ref().map(|(_, c)| c.clone()).unwrap_or_default()
            }
        }
    }
}
