//! What a policy lets a caller see of the database: the schema (GET
//! /schema, list_tables, describe_table) and the column hints added to an
//! unknown-column error.

use serde_json::{Value, json};

use super::App;
use super::authz::{Grant, act};
use super::types::AppError;
use crate::policy::Policy;

impl App {
    /// "; columns of iris: id, sepal_length, …" for the tables a query
    /// names, among those the policy allows.
    pub(super) async fn column_hint(&self, sql: &str, policy: &Policy) -> String {
        let Ok(cols) = self.source.schema().await else { return String::new() };
        let rules = self.source.rules();
        let words: std::collections::HashSet<String> = sql
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let mut by_table: Vec<(String, Vec<String>)> = Vec::new();
        for c in cols {
            let r = rules.stored(&c.schema, &c.table);
            let name = rules.display(&r);
            if !rules.allows(&policy.tables, &r) || !words.contains(&name.to_ascii_lowercase()) {
                continue;
            }
            match by_table.last_mut() {
                Some((last, list)) if *last == name => list.push(c.column),
                _ => by_table.push((name, vec![c.column])),
            }
        }
        by_table.iter().map(|(t, c)| format!("; columns of {t}: {}", c.join(", "))).collect()
    }

    /// "; tables this policy can read: …", for a query naming one that
    /// does not exist.
    pub(super) async fn table_hint(&self, policy: &Policy) -> String {
        let Ok(cols) = self.source.schema().await else { return String::new() };
        let rules = self.source.rules();
        let mut tables: Vec<String> = Vec::new();
        for c in cols {
            let r = rules.stored(&c.schema, &c.table);
            let name = rules.display(&r);
            if rules.allows(&policy.tables, &r) && tables.last() != Some(&name) {
                tables.push(name);
            }
        }
        if tables.is_empty() {
            return String::new();
        }
        format!("; tables this policy can read: {}", tables.join(", "))
    }

    /// Tables and columns the policy lets a query read, and the functions
    /// it may call (GET /schema, list_tables, describe_table).
    pub async fn schema(
        &self,
        grant: &Grant<act::ReadSchema>,
        policy: Option<&str>,
    ) -> Result<Value, AppError> {
        let p = self.policy(policy)?;
        grant.policy(&p.name)?;
        let cols = self.source.schema().await.map_err(|e| AppError::DatabaseUnavailable(e.to_string()))?;
        let rules = self.source.rules();
        let mut tables: Vec<Value> = Vec::new();
        for c in cols {
            let r = rules.stored(&c.schema, &c.table);
            if !rules.allows(&p.tables, &r) {
                continue;
            }
            let name = rules.display(&r);
            if tables.last().map(|t| t["name"] != name.as_str()).unwrap_or(true) {
                tables.push(json!({"name": name, "schema": c.schema, "table": c.table, "columns": []}));
            }
            if let Some(Value::Array(list)) = tables.last_mut().map(|t| &mut t["columns"]) {
                list.push(json!({"name": c.column, "type": c.data_type}));
            }
        }
        let dialect = self.source.dialect();
        Ok(json!({
            "policy": p.name,
            "dialect": format!("{dialect:?}").to_lowercase(),
            "tables": tables,
            "functions": crate::sql::allow::functions(dialect),
            "table_functions": crate::sql::allow::table_functions(dialect),
        }))
    }
}
