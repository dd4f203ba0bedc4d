//! PostgreSQL's two ways of reading rows give the same Arrow bytes: a query
//! without parameters is read as a binary COPY stream that sluice wraps
//! around the checked text, one with parameters through the extended
//! protocol. Every type sluice decodes itself, edge values and NULLs
//! included, must come out identical; the COPY path keeps the row and byte
//! limits, reuses its connection only after a clean ending, and cannot be
//! steered into running anything but the one statement PostgreSQL parsed.

use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use sluice::policy::TableAllow;
use sluice::sql::{Access, DataSource, FetchLimits, Param, Rows, SqlError};
use sqlx::AssertSqlSafe;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

fn limits(max_rows: u64, max_bytes: u64) -> FetchLimits {
    FetchLimits { max_rows, max_bytes, timeout: Duration::from_secs(10) }
}

fn batch(rows: &Rows) -> RecordBatch {
    let bytes = rows.arrow.to_vec().unwrap();
    let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    r.next().unwrap().unwrap()
}

fn text(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let a = b.column_by_name(col).unwrap().as_string::<i32>();
    a.is_valid(row).then(|| a.value(row).to_string())
}

async fn setup(tag: &str) -> (DataSource, String) {
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.expect("PostgreSQL on 127.0.0.1:5432");
    let db = format!("sluice_paths_{tag}_{}", std::process::id());
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&admin)
        .await;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for stmt in [
        "CREATE TABLE v (k int, b bool, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8, n numeric, \
         n2 numeric(12,2), t text, vc varchar(5), c char(3), nm name, ch \"char\", by bytea, d date, tm time, \
         ts timestamp, tz timestamptz, u uuid)",
        "INSERT INTO v VALUES \
         (1, true, -32768, -2147483648, -9223372036854775808, 4294967295, 1.5, '-0', 12345678901234567890.12345678901234567890, \
          -0.05, '', 'héllo', 'ab', 'pg_class', 'x', '\\x000102ff', '1969-12-31', '00:00:00', '1900-01-01 00:00:00.000001', \
          '2024-01-02 03:04:05.123456+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), \
         (2, false, 32767, 2147483647, 9223372036854775807, 0, 'NaN', 'Infinity', 'NaN', 10000, 'tab\there', \
          '日本', 'z', 'n', 'y', '\\x', '9999-12-31', '23:59:59.999999', '2262-04-11 23:47:16', \
          '1970-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000'), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0.0001, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
          NULL, NULL, NULL)",
        "CREATE TABLE big AS SELECT g AS id, g * 0.5 AS x, md5(g::text) AS s FROM generate_series(1, 5000) g",
        "CREATE TABLE inf (d date)",
        "INSERT INTO inf VALUES ('2024-01-01'), ('infinity')",
    ] {
        sqlx::query(AssertSqlSafe(stmt)).execute(&pool).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    pool.close().await;
    (DataSource::connect(&url, 2).await.unwrap(), db)
}

async fn teardown(db: &str) {
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
        .execute(&admin)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_rows_read_every_type_the_same() {
    let (source, db) = setup("types").await;
    let all = TableAllow::All;
    let access = Access { tables: &all, role: None };
    let run = |sql: &'static str, params: Vec<Param>, l: FetchLimits| {
        let source = &source;
        async move { source.run_unchecked(sql, &params, access, l).await }
    };

    // Which path ran: PostgreSQL reports the text it was given.
    let copy = run("SELECT current_query() AS q", vec![], limits(10, 0)).await.unwrap();
    assert!(
        text(&batch(&copy), "q", 0).unwrap().starts_with("COPY (\nSELECT current_query()"),
        "not read by COPY"
    );
    let rows =
        run("SELECT current_query() AS q WHERE $1 = 1", vec![Param::Int(1)], limits(10, 0)).await.unwrap();
    assert!(!text(&batch(&rows), "q", 0).unwrap().starts_with("COPY"), "parameters must not go through COPY");

    // An integer parameter against an int4 column (bound as int8).
    let one = run("SELECT k FROM v WHERE k = $1", vec![Param::Int(2)], limits(10, 0)).await.unwrap();
    assert_eq!(one.row_count, 1);

    let copy = run("SELECT * FROM v ORDER BY k", vec![], limits(10, 0)).await.unwrap();
    let rows =
        run("SELECT * FROM v WHERE $1 = 1 ORDER BY k", vec![Param::Int(1)], limits(10, 0)).await.unwrap();
    assert_eq!(copy.columns, rows.columns);
    assert_eq!(copy.row_count, 3);
    assert_eq!(copy.arrow.to_vec().unwrap(), rows.arrow.to_vec().unwrap(), "the two paths differ");

    let b = batch(&copy);
    let want = [
        ("n", 0, Some("12345678901234567890.12345678901234567890")),
        ("n", 1, Some("NaN")),
        ("n", 2, Some("0.0001")),
        ("n2", 0, Some("-0.05")),
        ("n2", 1, Some("10000.00")),
        ("n2", 2, Some("0.00")),
        ("vc", 0, Some("héllo")),
        ("c", 0, Some("ab ")),
        ("ch", 0, Some("x")),
        ("u", 0, Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("t", 0, Some("")),
        ("t", 2, None),
    ];
    for (col, row, value) in want {
        assert_eq!(text(&b, col, row).as_deref(), value, "{col}[{row}]");
    }
    let i8 = b.column_by_name("i8").unwrap().as_primitive::<arrow_array::types::Int64Type>();
    assert_eq!((i8.value(0), i8.value(1)), (i64::MIN, i64::MAX));
    let d = b.column_by_name("d").unwrap().as_primitive::<arrow_array::types::Date32Type>();
    assert_eq!((d.value(0), d.value(1)), (-1, 2_932_896));
    let ts = b.column_by_name("ts").unwrap().as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(ts.value(0), -2_208_988_799_999_999);
    let tz = b.column_by_name("tz").unwrap().as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(tz.value(0), 1_704_157_445_123_456);
    let f8 = b.column_by_name("f8").unwrap().as_primitive::<arrow_array::types::Float64Type>();
    assert!(f8.value(0) == 0.0 && f8.value(0).is_sign_negative() && f8.value(1).is_infinite());

    // The limits hold on the COPY path, and the pool goes on working after
    // a stream abandoned half-way.
    let r = run("SELECT * FROM big", vec![], limits(100, 0)).await;
    assert!(matches!(r, Err(SqlError::RowLimit { limit: 100 })), "{r:?}");
    let r = run("SELECT * FROM big", vec![], limits(10_000, 50_000)).await;
    assert!(matches!(r, Err(SqlError::ByteLimit { limit: 50_000 })), "{r:?}");
    for _ in 0..3 {
        assert_eq!(run("SELECT * FROM big", vec![], limits(10_000, 0)).await.unwrap().row_count, 5000);
    }
    // A value the column type cannot hold names its column.
    let e = run("SELECT d FROM inf", vec![], limits(10, 0)).await.unwrap_err().to_string();
    assert!(e.contains("column `d`") && e.contains("infinity"), "{e}");
    teardown(&db).await;
}

/// The engine layer alone (no AST check): text that is not exactly one
/// statement never reaches COPY, and COPY cannot be closed early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_runs_only_the_one_statement_postgresql_parsed() {
    let (source, db) = setup("stmt").await;
    let all = TableAllow::All;
    let access = Access { tables: &all, role: None };
    let refused = |sql: &'static str| {
        let source = &source;
        async move { source.run_unchecked(sql, &[], access, limits(10, 0)).await.unwrap_err().to_string() }
    };
    let e = refused("SELECT 1; SELECT 2").await;
    assert!(e.contains("cannot insert multiple commands into a prepared statement"), "{e}");
    for sql in
        ["SELECT 1) TO STDOUT (FORMAT binary); SELECT 2; COPY (SELECT 1", "SELECT 1) TO STDOUT; SELECT 2; --"]
    {
        let e = refused(sql).await;
        assert!(e.contains("syntax error"), "{sql}: {e}");
    }
    assert!(refused("SELECT 1\0; SELECT 2").await.contains("NUL"));
    // Comments stay inside the one statement: a block comment is text, and
    // the line break sluice adds ends a trailing line comment.
    for sql in
        ["SELECT 2 AS two /* ) TO STDOUT; SELECT 3; COPY (SELECT 1 */", "SELECT 2 AS two -- ) TO STDOUT"]
    {
        let r = source.run_unchecked(sql, &[], access, limits(10, 0)).await.unwrap();
        let b = batch(&r);
        assert_eq!(
            (r.row_count, b.column(0).as_primitive::<arrow_array::types::Int64Type>().value(0)),
            (1, 2)
        );
    }
    teardown(&db).await;
}

/// One session, reused: each request's statement is parsed afresh, so
/// neither an earlier request's parameter types nor a table's columns from
/// before a change decide how values are read; a COPY refused at its start
/// leaves nothing behind for the next query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_session_reads_each_statement_as_it_is_now() {
    let (_, db) = setup("session").await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let source = DataSource::connect(&url, 1).await.unwrap();
    let all = TableAllow::All;
    let access = Access { tables: &all, role: None };
    let one = |sql: &'static str, params: Vec<Param>| {
        let source = &source;
        async move { source.run_unchecked(sql, &params, access, limits(10, 0)).await }
    };
    let x = "SELECT $1 AS x";
    let r = one(x, vec![Param::Int(7)]).await.unwrap();
    assert_eq!(batch(&r).column(0).as_primitive::<arrow_array::types::Int64Type>().value(0), 7);
    let r = one(x, vec![Param::Float(1.5)]).await.unwrap();
    assert_eq!(batch(&r).column(0).as_primitive::<arrow_array::types::Float64Type>().value(0), 1.5);
    let r = one(x, vec![Param::Text("a".into())]).await.unwrap();
    assert_eq!(text(&batch(&r), "x", 0).as_deref(), Some("a"));

    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE w (x int8)").execute(&admin).await.unwrap();
    sqlx::query("INSERT INTO w VALUES (4611686018427387904)").execute(&admin).await.unwrap();
    let r = one("SELECT x FROM w", vec![]).await.unwrap();
    assert_eq!(batch(&r).column(0).as_primitive::<arrow_array::types::Int64Type>().value(0), 1 << 62);
    sqlx::query("ALTER TABLE w ALTER x TYPE float8").execute(&admin).await.unwrap();
    let r = one("SELECT x FROM w", vec![]).await.unwrap();
    assert_eq!(batch(&r).column(0).as_primitive::<arrow_array::types::Float64Type>().value(0), 2f64.powi(62));
    admin.close().await;

    // Refused when the COPY starts (the planner folds 1/0): the next query
    // gets its own answer.
    let e = one("SELECT 1/0 AS x", vec![]).await.unwrap_err().to_string();
    assert!(e.contains("division by zero"), "{e}");
    let r = one("SELECT 3 AS three", vec![]).await.unwrap();
    assert_eq!(batch(&r).column(0).as_primitive::<arrow_array::types::Int64Type>().value(0), 3);
    // A time of day past 23:59:59.999999 names its column, on both paths.
    for (sql, params) in [
        ("SELECT '24:00'::time AS t", vec![]),
        ("SELECT '24:00'::time AS t WHERE $1", vec![Param::Bool(true)]),
    ] {
        let e = one(sql, params).await.unwrap_err().to_string();
        assert!(e.contains("column `t`") && e.contains("24:00:00"), "{e}");
        assert_eq!(one("SELECT 4 AS four", vec![]).await.unwrap().row_count, 1);
    }
    drop(source);
    teardown(&db).await;
}
