//! What each tool does, whichever door called it (MCP, `/tools/call`):
//! each asks the permission table for its grant first.

use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, Caller, ExecuteRequest, ExecuteResponse, act, grant};
use crate::status::Status;

/// Predictions shown in a tool result's text; all of them are in the
/// structured content.
const TEXT_PREDICTIONS: usize = 50;

/// List the tables a policy lets queries read, with their columns.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTablesArgs {
    /// Named policy (default `default`).
    #[serde(default)]
    pub policy: Option<String>,
}

/// Describe one table: its columns and types, and a few sample rows.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeTableArgs {
    /// Table name as `list_tables` shows it.
    pub table: String,
    /// How many sample rows to show (default 3, at most 10).
    #[serde(default)]
    pub sample_rows: Option<u32>,
    /// Named policy (default `default`).
    #[serde(default)]
    pub policy: Option<String>,
}

/// Fetch the audit record of an execution.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetExecutionArgs {
    /// The `execution_id` an earlier execute_classifier returned.
    pub execution_id: String,
}

fn tool_result(text: impl Into<String>, structured: Option<Value>, is_error: bool) -> CallToolResult {
    let mut r = CallToolResult::default();
    r.content = vec![ContentBlock::text(text.into())];
    r.structured_content = structured;
    r.is_error = Some(is_error);
    r
}

pub fn error_result(message: impl Into<String>) -> CallToolResult {
    let message = message.into();
    tool_result(message.clone(), Some(json!({"error": message})), true)
}

/// One line a model can read first: `150 rows → setosa 50, versicolor 50`.
pub fn summary(r: &ExecuteResponse) -> String {
    if r.status == Status::Success {
        let mut counts: Vec<(&String, &u64)> = r.label_counts.iter().flatten().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = counts.iter().take(10).map(|(l, n)| format!("{l} {n}")).collect();
        let more = if counts.len() > 10 {
            format!(", … {} more labels", counts.len() - 10)
        } else {
            String::new()
        };
        format!("{} rows → {}{more}", r.row_count.unwrap_or(0), shown.join(", "))
    } else {
        let msg = r.error.as_ref().and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("");
        format!("{}: {msg}", r.status.as_str())
    }
}

/// The text part of an execute_classifier result: summary, then capped
/// predictions or the error detail.
fn execute_text(r: &ExecuteResponse) -> String {
    let mut text = summary(r);
    if let Some(p) = &r.predictions {
        let shown: Vec<String> = p.iter().take(TEXT_PREDICTIONS).map(|v| v.to_string()).collect();
        text += &format!("\npredictions: [{}", shown.join(", "));
        if p.len() > TEXT_PREDICTIONS {
            text += &format!(", … {} more in structuredContent.predictions", p.len() - TEXT_PREDICTIONS);
        }
        text += "]";
    }
    if let Some(e) = &r.error {
        text += &format!("\nerror: {e}");
    }
    if !r.stdout.is_empty() {
        text += &format!("\nstdout: {}", r.stdout.chars().take(2000).collect::<String>());
    }
    text
}

/// `grant::<A>(caller)`, or the tool result that says why not.
macro_rules! grant_or_return {
    ($a:ty, $caller:expr) => {
        match grant::<$a>($caller) {
            Ok(g) => g,
            Err(d) => return error_result(d.0),
        }
    };
}

pub async fn execute_classifier(app: &App, caller: &Caller, req: ExecuteRequest) -> CallToolResult {
    let g = grant_or_return!(act::RunCode, caller);
    match app.execute(&g, req).await {
        Ok(r) => tool_result(execute_text(&r), serde_json::to_value(&r).ok(), r.status != Status::Success),
        Err(e) => error_result(e.to_string()),
    }
}

pub async fn list_tables(app: &App, caller: &Caller, args: ListTablesArgs) -> CallToolResult {
    let g = grant_or_return!(act::ReadSchema, caller);
    match app.schema(&g, args.policy.as_deref()).await {
        Ok(v) => {
            let lines: Vec<String> = v["tables"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let cols: Vec<String> = t["columns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            format!(
                                "{} {}",
                                c["name"].as_str().unwrap_or(""),
                                c["type"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    format!("{}({})", t["name"].as_str().unwrap_or(""), cols.join(", "))
                })
                .collect();
            tool_result(format!("{} tables:\n{}", lines.len(), lines.join("\n")), Some(v), false)
        }
        Err(e) => error_result(e.to_string()),
    }
}

pub async fn describe_table(app: &App, caller: &Caller, args: DescribeTableArgs) -> CallToolResult {
    let g = grant_or_return!(act::ReadSchema, caller);
    let policy = args.policy.clone().unwrap_or_else(|| "default".into());
    let schema = match app.schema(&g, Some(&policy)).await {
        Ok(v) => v,
        Err(e) => return error_result(e.to_string()),
    };
    let tables = schema["tables"].as_array().cloned().unwrap_or_default();
    let Some(table) =
        tables.iter().find(|t| t["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&args.table)))
    else {
        let names: Vec<&str> = tables.iter().filter_map(|t| t["name"].as_str()).collect();
        return error_result(format!(
            "no table `{}` under policy `{policy}`; tables: {}",
            args.table,
            names.join(", ")
        ));
    };
    // The name comes from the database's own catalogue, so quoting it is
    // enough; the sample goes through the same checked, sandboxed path.
    let name = table["name"].as_str().unwrap_or_default();
    let schema_name = table["schema"].as_str().filter(|_| name.contains('.'));
    let table_name = table["table"].as_str().unwrap_or(name);
    // Sample rows are per-row values: never under counts-only.
    let samples_allowed =
        app.policies.get(&policy).is_none_or(|p| p.output.describe_samples && !p.output.counts_only);
    let n = if samples_allowed { args.sample_rows.unwrap_or(3).min(10) } else { 0 };
    let req = ExecuteRequest {
        sql_query: app.source().sample_query(schema_name, table_name, n),
        params: vec![],
        classifier_code:
            "def classify(df):\n    return [df.iloc[i].to_json(date_format='iso', default_handler=str) \
                          for i in range(len(df))]\n"
                .into(),
        entrypoint: None,
        timeout: None,
        max_memory: None,
        policy: Some(policy.clone()),
    };
    // Sample rows are a query of their own; a policy may turn them off.
    let samples: Vec<Value> = if n == 0 {
        Vec::new()
    } else {
        // Sample rows run code: they need that grant too.
        let run = grant_or_return!(act::RunCode, caller);
        match app.execute(&run, req).await {
            Ok(r) if r.status == Status::Success => r
                .predictions
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.as_str().and_then(|s| serde_json::from_str(s).ok()))
                .collect(),
            Ok(r) => return error_result(summary(&r)),
            Err(e) => return error_result(e.to_string()),
        }
    };
    let structured = json!({"table": name, "columns": table["columns"], "sample_rows": samples});
    let cols: Vec<String> = table["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {}", c["name"].as_str().unwrap_or(""), c["type"].as_str().unwrap_or("")))
        .collect();
    let text = if samples_allowed {
        format!(
            "{name}: {} columns ({})\nsample rows:\n{}",
            cols.len(),
            cols.join(", "),
            samples.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n")
        )
    } else {
        format!(
            "{name}: {} columns ({})\nno sample rows: policy `{policy}` does not show them",
            cols.len(),
            cols.join(", ")
        )
    };
    tool_result(text, Some(structured), false)
}

pub async fn get_execution(app: &App, caller: &Caller, args: GetExecutionArgs) -> CallToolResult {
    let g = grant_or_return!(act::ReadRecord, caller);
    match app.record(&g, &args.execution_id).await {
        Ok(r) => tool_result(
            format!("{} {} by {} at {}", r.execution_id, r.status, r.principal, r.created_at),
            serde_json::to_value(&r).ok(),
            false,
        ),
        Err(e) => error_result(e.to_string()),
    }
}
