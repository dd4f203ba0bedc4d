//! The hash chain: completing a row links it after the current head, inside
//! a transaction that serializes every writer of the store; verifying walks
//! the chain and names the first row that does not fit.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{AuditError, AuditStore, Backend, COLUMNS, Finish, Record, now, record_from, to_text, trusted};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `{"ok": true, "checked": N}` or where and why the chain breaks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verification {
    pub ok: bool,
    pub checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// JSON with object keys sorted at every level (stable across backends
/// and serde settings).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// SHA-256 over the previous hash, the chain position and every field of
/// the record but its own link fields.
pub fn link_hash(record: &Record, chain_seq: i64, prev_hash: &str) -> String {
    let mut v = serde_json::to_value(record).expect("serializable");
    if let Value::Object(m) = &mut v {
        m.remove("prev_hash");
        m.remove("hash");
    }
    super::sha256_hex(&format!("{prev_hash}\n{chain_seq}\n{}", canonical(&v)))
}

pub(super) async fn complete(store: &AuditStore, id: &str, f: &Finish) -> Result<(), AuditError> {
    let mut conn = store.pool.acquire().await?;
    let begin = match store.backend {
        // Takes the write lock now, so two writers cannot read the same head.
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    sqlx::query(begin).execute(&mut *conn).await?;
    match complete_in(&mut conn, store.backend, id, f).await {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn complete_in(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    id: &str,
    f: &Finish,
) -> Result<(), AuditError> {
    let head_sql = match backend {
        Backend::Sqlite => "SELECT seq, hash FROM chain_head WHERE id = 1",
        Backend::Postgres => "SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE",
    };
    let head = sqlx::query(head_sql).fetch_one(&mut *conn).await?;
    let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let row = sqlx::query(trusted(format!(
        "SELECT {COLUMNS} FROM executions WHERE execution_id = $1 AND chain_seq IS NULL"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AuditError::NotFound(format!("no execution {id} (or it is already complete)")))?;
    let mut record = record_from(&row)?;
    record.status = f.status.as_str().into();
    record.finished_at = Some(now());
    record.error = f.error.clone();
    record.row_count = f.row_count;
    record.timings_ms = f.timings_ms.clone();
    record.resources = f.resources.clone();
    record.exit_signal = f.exit_signal;
    record.blocked_syscall = f.blocked_syscall.clone();
    record.output = f.output.clone();
    if let Some((sql, code)) = &f.full_text {
        record.sql_query = Some(sql.clone());
        record.classifier_code = Some(code.clone());
    }
    let seq = head_seq + 1;
    let hash = link_hash(&record, seq, &head_hash);
    sqlx::query(
        "UPDATE executions SET status = $1, finished_at = $2, error = $3, row_count = $4, timings_ms = $5, \
         resources = $6, exit_signal = $7, blocked_syscall = $8, chain_seq = $9, prev_hash = $10, hash = $11, \
         output = $12, sql_query = $13, classifier_code = $14 WHERE execution_id = $15",
    )
    .bind(&record.status)
    .bind(&record.finished_at)
    .bind(to_text(&record.error))
    .bind(record.row_count)
    .bind(to_text(&record.timings_ms))
    .bind(to_text(&record.resources))
    .bind(record.exit_signal)
    .bind(&record.blocked_syscall)
    .bind(seq)
    .bind(&head_hash)
    .bind(&hash)
    .bind(to_text(&record.output))
    .bind(&record.sql_query)
    .bind(&record.classifier_code)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Walk the whole chain.
pub async fn verify(store: &AuditStore) -> Result<Verification, AuditError> {
    let records = store.chain_records().await?;
    let broken = |checked: u64, id: &str, reason: String| Verification {
        ok: false,
        checked,
        broken_at: Some(id.to_string()),
        reason: Some(reason),
    };
    let mut prev = GENESIS.to_string();
    let mut checked = 0u64;
    for (i, (seq, r)) in records.iter().enumerate() {
        let want_seq = i as i64 + 1;
        if *seq != want_seq {
            return Ok(broken(
                checked,
                &r.execution_id,
                format!("chain position {want_seq} is missing (a row was deleted or its link altered)"),
            ));
        }
        if r.prev_hash.as_deref() != Some(prev.as_str()) {
            return Ok(broken(
                checked,
                &r.execution_id,
                "prev_hash does not match the previous row's hash".into(),
            ));
        }
        if r.hash.as_deref() != Some(link_hash(r, *seq, &prev).as_str()) {
            return Ok(broken(
                checked,
                &r.execution_id,
                "the row's contents do not match its hash (edited)".into(),
            ));
        }
        prev = r.hash.clone().unwrap_or_default();
        checked += 1;
    }
    let head = sqlx::query("SELECT seq, hash FROM chain_head WHERE id = 1").fetch_one(&store.pool).await?;
    let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    if head_seq != records.len() as i64 || head_hash != prev {
        let last = records.last().map(|(_, r)| r.execution_id.clone()).unwrap_or_else(|| "(start)".into());
        return Ok(broken(
            checked,
            &last,
            format!(
                "the chain head says {head_seq} rows but {} are linked (rows after this one were removed)",
                records.len()
            ),
        ));
    }
    // A completed row outside the chain had its link removed.
    let orphans =
        sqlx::query("SELECT execution_id FROM executions WHERE chain_seq IS NULL AND status <> 'running'")
            .fetch_all(&store.pool)
            .await?;
    if let Some(o) = orphans.first() {
        let id: String = o.try_get("execution_id")?;
        return Ok(broken(checked, &id, "a completed row is not linked into the chain".into()));
    }
    Ok(Verification { ok: true, checked, broken_at: None, reason: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, {"f": 2, "e": 3}], "c": null}}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":{"c":null,"d":[1,{"e":3,"f":2}]},"b":1}"#);
    }
}
