//! Reading the audit log by filter: one WHERE clause for a page of
//! records and for their count.

use sqlx::Row;

use super::record::{COLUMNS, record_from, trusted};
use super::{AuditError, AuditStore, Filter, MAX_PAGE_BYTES, Page, excerpt, parse_time};

/// The conditions of `f` (bound as text, in order), and the cursor's seq.
fn conditions(f: &Filter) -> Result<(String, Vec<String>, Option<i64>), AuditError> {
    let mut sql = String::from("1 = 1");
    let mut args: Vec<String> = Vec::new();
    let add = |cond: &str, v: String, args: &mut Vec<String>| {
        args.push(v);
        format!(" AND {cond} ${}", args.len())
    };
    if let Some(v) = &f.status {
        let Some(status) = crate::status::Status::parse(v) else {
            let known: Vec<&str> = crate::status::Status::ALL.iter().map(|s| s.as_str()).collect();
            return Err(AuditError::Filter {
                field: "status",
                message: format!("`{}` is not a status; statuses: {}", excerpt(v), known.join(", ")),
            });
        };
        sql += &add("status =", status.as_str().into(), &mut args);
    }
    if let Some(v) = &f.principal {
        // The whole label, the key's name or its id ("name (k_…)").
        let like = like_literal(v);
        args.extend([v.clone(), format!("{like} (%"), format!("% ({like})")]);
        let n = args.len();
        sql += &format!(
            " AND (principal = ${} OR principal LIKE ${} ESCAPE '!' OR principal LIKE ${n} ESCAPE '!')",
            n - 2,
            n - 1
        );
    }
    if let Some(v) = &f.policy {
        sql += &add("policy =", v.clone(), &mut args);
    }
    if let Some(scope) = &f.scope {
        let mut cond = Vec::new();
        for p in &scope.policies {
            args.push(p.clone());
            cond.push(format!("policy = ${}", args.len()));
        }
        args.push(scope.principal.clone());
        cond.push(format!("principal = ${}", args.len()));
        sql += &format!(" AND ({})", cond.join(" OR "));
    }
    if let Some(v) = &f.code_sha256 {
        sql += &add("code_sha256 =", v.to_ascii_lowercase(), &mut args);
    }
    if let Some(v) = &f.since {
        sql += &add("created_at >=", parse_time("since", v)?, &mut args);
    }
    if let Some(v) = &f.until {
        sql += &add("created_at <", parse_time("until", v)?, &mut args);
    }
    let mut cursor_seq = None;
    if let Some(c) = &f.cursor {
        let seq: i64 = c.parse().map_err(|_| AuditError::Filter {
            field: "cursor",
            message: "use the `next_cursor` of the previous page".into(),
        })?;
        // Bound last, by `list` (a count ignores it).
        cursor_seq = Some(seq);
    }
    if let Some(v) = f.q.as_deref().filter(|v| !v.is_empty()) {
        // Text search over the SQL and the code, as typed (no wildcards).
        // Case-insensitive on both stores (SQLite's LIKE is, PostgreSQL's is not).
        let like = format!("%{}%", like_literal(&v.to_lowercase()));
        args.extend([like.clone(), like]);
        let n = args.len();
        sql += &format!(
            " AND (lower(sql_query) LIKE ${} ESCAPE '!' OR lower(classifier_code) LIKE ${n} ESCAPE '!')",
            n - 1
        );
    }
    Ok((sql, args, cursor_seq))
}

/// `v` as a LIKE pattern that matches itself only (`!` escapes: no
/// backslash, whose meaning in a string literal depends on the server).
fn like_literal(v: &str) -> String {
    v.replace('!', "!!").replace('%', "!%").replace('_', "!_")
}

impl AuditStore {
    /// Records matching `f`, newest first, with a cursor for the next page.
    pub async fn list(&self, f: &Filter) -> Result<Page, AuditError> {
        let limit = f.limit.unwrap_or(50).clamp(1, 500) as i64;
        let (cond, args, cursor_seq) = conditions(f)?;
        let mut sql = format!("SELECT seq, {COLUMNS} FROM executions WHERE {cond}");
        if cursor_seq.is_some() {
            sql += &format!(" AND seq < ${}", args.len() + 1);
        }
        sql += &format!(" ORDER BY seq DESC LIMIT {}", limit + 1);
        let mut q = sqlx::query(trusted(sql));
        for a in &args {
            q = q.bind(a.clone());
        }
        if let Some(s) = cursor_seq {
            q = q.bind(s);
        }
        // Rows are read one at a time: a page also ends at MAX_PAGE_BYTES
        // of records (one at least), before the next is even read.
        use futures_util::TryStreamExt;
        let mut rows = q.fetch(&self.pool);
        let mut more = false;
        let mut records = Vec::new();
        let mut last_seq = None;
        let mut bytes = 0;
        while let Some(row) = rows.try_next().await? {
            if records.len() as i64 == limit {
                more = true;
                break;
            }
            let r = record_from(&row)?;
            let size = serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0);
            if !records.is_empty() && bytes + size > MAX_PAGE_BYTES {
                more = true;
                break;
            }
            bytes += size;
            last_seq = Some(row.try_get::<i64, _>("seq")?);
            records.push(r);
        }
        Ok(Page { records, next_cursor: if more { last_seq.map(|s| s.to_string()) } else { None } })
    }

    /// How many records match `f` (its cursor and limit aside).
    pub async fn count(&self, f: &Filter) -> Result<i64, AuditError> {
        let (cond, args, _) = conditions(f)?;
        let mut q = sqlx::query(trusted(format!("SELECT COUNT(*) AS n FROM executions WHERE {cond}")));
        for a in &args {
            q = q.bind(a.clone());
        }
        Ok(q.fetch_one(&self.pool).await?.try_get::<i64, _>("n")?)
    }
}
