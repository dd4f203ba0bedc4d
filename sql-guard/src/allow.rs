//! What a query may call, by name, per dialect: functions known to only
//! compute on their arguments (aggregates, window, math, string, date/time,
//! JSON, arrays). Anything not listed is refused, so a function that reads
//! files, runs SQL text, takes locks, sleeps or changes server state is
//! refused without anyone having to think of it first. SQLite's authorizer
//! applies the same list inside the engine (`sqlite.rs`).

use crate::Dialect;

/// In every dialect.
#[rustfmt::skip]
const COMMON: &[&str] = &[
    // aggregates
    "avg", "count", "max", "min", "sum",
    // window
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value",
    "last_value", "nth_value",
    // math
    "abs", "ceil", "ceiling", "floor", "round", "sign", "sqrt", "exp", "ln", "log", "log10", "log2", "power",
    "pow", "mod", "pi", "degrees", "radians", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "cot",
    // text
    "length", "lower", "upper", "trim", "ltrim", "rtrim", "substr", "substring", "replace", "concat",
    "concat_ws", "char_length", "character_length", "octet_length",
    // conditional
    "coalesce", "nullif",
    // date and time
    "current_date", "current_time", "current_timestamp",
];

#[rustfmt::skip]
const SQLITE: &[&str] = &[
    "total", "group_concat", "string_agg", "median", "iif", "if", "ifnull", "typeof", "hex", "unhex",
    "unicode", "char", "quote", "printf", "format", "glob", "like", "likelihood", "likely", "unlikely",
    "random", "soundex", "trunc", "acosh", "asinh", "atanh", "cosh", "sinh", "tanh", "instr", "unistr",
    "date", "time", "datetime", "julianday", "strftime", "unixepoch", "timediff", "json", "jsonb",
    "json_array", "jsonb_array", "json_array_length", "json_extract", "jsonb_extract", "json_insert",
    "jsonb_insert", "json_object", "jsonb_object", "json_patch", "jsonb_patch", "json_remove",
    "jsonb_remove", "json_replace", "jsonb_replace", "json_set", "jsonb_set", "json_type", "json_valid",
    "json_quote", "json_group_array", "jsonb_group_array", "json_group_object", "jsonb_group_object",
    "json_pretty", "json_error_position",
];

#[rustfmt::skip]
const POSTGRES: &[&str] = &[
    // aggregates
    "string_agg", "array_agg", "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor", "stddev",
    "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr", "covar_pop", "covar_samp",
    "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx",
    "regr_sxy", "regr_syy", "percentile_cont", "percentile_disc", "mode", "json_agg", "jsonb_agg",
    "json_object_agg", "jsonb_object_agg", "any_value",
    // math
    "cbrt", "trunc", "div", "gcd", "lcm", "width_bucket", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "sind", "cosd", "tand", "asind", "acosd", "atand", "atan2d", "cotd", "factorial", "scale", "min_scale",
    "trim_scale", "greatest", "least", "random", "random_normal",
    // text
    "btrim", "lpad", "rpad", "left", "right", "repeat", "reverse", "strpos", "split_part", "initcap", "md5",
    "sha224", "sha256", "sha384", "sha512", "to_hex", "ascii", "chr", "format", "translate",
    "regexp_replace", "regexp_match", "regexp_matches", "regexp_like", "regexp_substr", "regexp_count",
    "regexp_instr", "regexp_split_to_array", "regexp_split_to_table", "starts_with", "string_to_array",
    "string_to_table", "array_to_string", "encode", "decode", "to_char", "to_number", "to_date",
    "to_timestamp", "quote_ident", "quote_literal", "quote_nullable", "bit_length", "convert_from",
    "convert_to", "normalize", "unistr", "overlay", "position",
    // date and time
    "now", "date_trunc", "date_part", "date_bin", "age", "make_date", "make_time", "make_timestamp",
    "make_timestamptz", "make_interval", "justify_days", "justify_hours", "justify_interval", "isfinite",
    "clock_timestamp", "statement_timestamp", "transaction_timestamp", "localtime", "localtimestamp",
    "timezone", "extract",
    // JSON
    "to_json", "to_jsonb", "json_build_array", "jsonb_build_array", "json_build_object",
    "jsonb_build_object", "json_object", "jsonb_object", "array_to_json", "row_to_json", "json_array_length",
    "jsonb_array_length", "json_extract_path", "json_extract_path_text", "jsonb_extract_path",
    "jsonb_extract_path_text", "json_typeof", "jsonb_typeof", "jsonb_pretty", "jsonb_set", "jsonb_set_lax",
    "jsonb_insert", "json_strip_nulls", "jsonb_strip_nulls", "jsonb_path_exists", "jsonb_path_match",
    "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first", "json_each", "json_each_text",
    "jsonb_each", "jsonb_each_text", "json_array_elements", "json_array_elements_text",
    "jsonb_array_elements", "jsonb_array_elements_text", "json_object_keys", "jsonb_object_keys",
    // arrays and sets
    "array_length", "array_upper", "array_lower", "array_ndims", "array_dims", "cardinality",
    "array_position", "array_positions", "array_append", "array_prepend", "array_cat", "array_remove",
    "array_replace", "array_fill", "trim_array", "unnest", "generate_series", "generate_subscripts",
    // other
    "num_nulls", "num_nonnulls", "pg_typeof", "gen_random_uuid",
    // text search
    "to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery", "ts_rank",
    "ts_rank_cd", "ts_headline", "setweight", "strip", "numnode", "querytree", "tsvector_to_array",
    "array_to_tsvector",
];

#[rustfmt::skip]
const MYSQL: &[&str] = &[
    // aggregates
    "group_concat", "std", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
    "bit_and", "bit_or", "bit_xor", "json_arrayagg", "json_objectagg", "any_value",
    // math
    "truncate", "rand", "crc32", "conv", "bin", "oct", "greatest", "least", "format",
    // text
    "lpad", "rpad", "left", "right", "repeat", "reverse", "locate", "position", "mid", "lcase", "ucase",
    "space", "ascii", "ord", "char", "hex", "unhex", "md5", "sha1", "sha", "sha2", "to_base64",
    "from_base64", "soundex", "field", "find_in_set", "elt", "make_set", "export_set", "insert", "quote",
    "regexp_replace", "regexp_substr", "regexp_instr", "regexp_like", "strcmp", "substring_index",
    "bit_length", "instr", "uuid",
    // date and time
    "now", "curdate", "curtime", "sysdate", "utc_date", "utc_time", "utc_timestamp", "localtime",
    "localtimestamp", "date", "time", "year", "month", "day", "dayofmonth", "dayofweek", "dayofyear", "hour",
    "minute", "second", "microsecond", "week", "weekday", "weekofyear", "yearweek", "quarter", "monthname",
    "dayname", "last_day", "date_add", "date_sub", "adddate", "subdate", "addtime", "subtime", "datediff",
    "timediff", "timestampdiff", "timestampadd", "date_format", "time_format", "str_to_date",
    "from_unixtime", "unix_timestamp", "makedate", "maketime", "period_add", "period_diff", "to_days",
    "from_days", "to_seconds", "sec_to_time", "time_to_sec", "convert_tz", "get_format", "extract",
    // conditional
    "if", "ifnull", "isnull",
    // JSON
    "json_extract", "json_unquote", "json_contains", "json_contains_path", "json_keys", "json_length",
    "json_type", "json_valid", "json_array", "json_object", "json_quote", "json_search", "json_value",
    "json_set", "json_insert", "json_replace", "json_remove", "json_merge", "json_merge_patch",
    "json_merge_preserve", "json_depth", "json_pretty", "json_overlaps", "json_array_append",
    "json_array_insert", "json_compact", "json_detailed", "json_loose", "json_exists", "json_query",
];

/// Functions a query may use in FROM, as a table.
const TABLE_FUNCTIONS: &[(Dialect, &[&str])] = &[
    (Dialect::Sqlite, &["json_each", "json_tree"]),
    (
        Dialect::Postgres,
        &[
            "generate_series",
            "generate_subscripts",
            "unnest",
            "json_each",
            "json_each_text",
            "jsonb_each",
            "jsonb_each_text",
            "json_array_elements",
            "json_array_elements_text",
            "jsonb_array_elements",
            "jsonb_array_elements_text",
            "json_object_keys",
            "jsonb_object_keys",
            "jsonb_path_query",
            "regexp_matches",
            "regexp_split_to_table",
            "string_to_table",
            "json_to_recordset",
            "jsonb_to_recordset",
        ],
    ),
    (Dialect::MySql, &[]),
];

fn extra(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
        Dialect::MySql => MYSQL,
    }
}

/// May a query call `name` (lower case)?
pub fn function(d: Dialect, name: &str) -> bool {
    COMMON.contains(&name) || extra(d).contains(&name)
}

/// May a query read from `name(...)` in FROM?
pub fn table_function(d: Dialect, name: &str) -> bool {
    TABLE_FUNCTIONS.iter().any(|(td, names)| *td == d && names.contains(&name))
}

/// Every function a query may call, sorted (for GET /schema and messages).
pub fn functions(d: Dialect) -> Vec<&'static str> {
    let mut all: Vec<&str> = COMMON.iter().chain(extra(d)).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

pub fn table_functions(d: Dialect) -> &'static [&'static str] {
    TABLE_FUNCTIONS.iter().find(|(td, _)| *td == d).map(|(_, n)| *n).unwrap_or(&[])
}

/// Allowed names close to `name` (shared prefix or small edit distance),
/// to suggest in a refusal.
pub fn similar(d: Dialect, name: &str) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &str)> = functions(d)
        .into_iter()
        .map(|f| (edit_distance(name, f), f))
        .filter(|(dist, f)| *dist <= 2 || (name.len() >= 4 && (f.starts_with(name) || name.starts_with(f))))
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, f)| f).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_functions_are_not_listed() {
        for (d, name) in [
            (Dialect::Postgres, "pg_sleep"),
            (Dialect::Postgres, "query_to_xml"),
            (Dialect::Postgres, "database_to_xml_and_xmlschema"),
            (Dialect::Postgres, "lo_get"),
            (Dialect::Postgres, "pg_logical_emit_message"),
            (Dialect::Postgres, "pg_terminate_backend"),
            (Dialect::Postgres, "current_setting"),
            (Dialect::Postgres, "pg_show_all_settings"),
            (Dialect::Postgres, "txid_current"),
            (Dialect::Postgres, "pg_advisory_lock"),
            (Dialect::Postgres, "set_config"),
            (Dialect::Postgres, "nextval"),
            (Dialect::Postgres, "dblink"),
            (Dialect::MySql, "sleep"),
            (Dialect::MySql, "benchmark"),
            (Dialect::MySql, "load_file"),
            (Dialect::MySql, "get_lock"),
            (Dialect::Sqlite, "load_extension"),
            (Dialect::Sqlite, "readfile"),
            (Dialect::Sqlite, "randomblob"),
            (Dialect::Sqlite, "zeroblob"),
        ] {
            assert!(!function(d, name) && !table_function(d, name), "{d:?} {name}");
        }
    }

    #[test]
    fn suggestions_are_close() {
        assert!(similar(Dialect::Postgres, "string_agg_x").contains(&"string_agg"));
        assert!(similar(Dialect::MySql, "lenght").contains(&"length"));
    }
}
