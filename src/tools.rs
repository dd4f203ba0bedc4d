//! sluice for agents: the MCP server (streamable HTTP at /mcp, stdio via
//! `sluice mcp`) and function-calling schemas (GET /tools). Every door
//! calls the same `App` functions as the HTTP API, so they cannot disagree,
//! and every execution is audited with the caller as principal.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::keys::Role;
use crate::service::{App, Caller, ExecuteRequest, ExecuteResponse};
use crate::verdict::Status;

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

/// The tools, for one caller.
#[derive(Clone)]
pub struct SluiceTools {
    app: Arc<App>,
    /// Fixed for stdio; for HTTP it comes with each request.
    caller: Option<Caller>,
    #[expect(dead_code, reason = "read through the tool_handler macro")]
    tool_router: ToolRouter<SluiceTools>,
}

fn tool_result(text: impl Into<String>, structured: Option<Value>, is_error: bool) -> CallToolResult {
    let mut r = CallToolResult::default();
    r.content = vec![ContentBlock::text(text.into())];
    r.structured_content = structured;
    r.is_error = Some(is_error);
    r
}

fn error_result(message: impl Into<String>) -> CallToolResult {
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

#[tool_router]
impl SluiceTools {
    pub fn new(app: Arc<App>, caller: Option<Caller>) -> Self {
        Self { app, caller, tool_router: Self::tool_router() }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, CallToolResult> {
        if let Some(c) = &self.caller {
            return Ok(c.clone());
        }
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>().cloned())
            .ok_or_else(|| error_result("no authenticated caller: send `Authorization: Bearer <key>`"))
    }

    #[tool(
        description = "Run a Python classifier `def classify(df)` over the rows of one read-only SQL query, in a \
        sandbox, and get one label per row (plus label counts), or an error in exactly one category with what \
        to fix. Call list_tables / describe_table first to see the data."
    )]
    async fn execute_classifier(
        &self,
        Parameters(req): Parameters<ExecuteRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = match self.caller(&ctx) {
            Ok(c) => c,
            Err(e) => return Ok(e),
        };
        Ok(run_execute(&self.app, &caller, req).await)
    }

    #[tool(
        description = "List the tables (with their columns and types) that queries may read under a policy."
    )]
    async fn list_tables(
        &self,
        Parameters(args): Parameters<ListTablesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = match self.caller(&ctx) {
            Ok(c) => c,
            Err(e) => return Ok(e),
        };
        Ok(list_tables(&self.app, &caller, args).await)
    }

    #[tool(description = "Describe one table: its columns with types and a few sample rows.")]
    async fn describe_table(
        &self,
        Parameters(args): Parameters<DescribeTableArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = match self.caller(&ctx) {
            Ok(c) => c,
            Err(e) => return Ok(e),
        };
        Ok(describe_table(&self.app, &caller, args).await)
    }

    #[tool(
        description = "Fetch the audit record of an earlier execution (yours, or any with the audit role)."
    )]
    async fn get_execution(
        &self,
        Parameters(args): Parameters<GetExecutionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = match self.caller(&ctx) {
            Ok(c) => c,
            Err(e) => return Ok(e),
        };
        Ok(get_execution(&self.app, &caller, args).await)
    }
}

#[tool_handler]
impl ServerHandler for SluiceTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "sluice runs Python classifiers over read-only SQL results in a sandbox. Look at the data with \
             list_tables and describe_table, then call execute_classifier with one SELECT and \
             `def classify(df): ...` returning one label per row. Errors say what to fix; retry with the fix.",
        )
    }
}

pub async fn run_execute(app: &App, caller: &Caller, req: ExecuteRequest) -> CallToolResult {
    if !caller.principal.has(Role::Execute) {
        return error_result("this key lacks the `execute` role");
    }
    match app.execute(caller, req).await {
        Ok(r) => tool_result(execute_text(&r), serde_json::to_value(&r).ok(), r.status != Status::Success),
        Err(e) => error_result(e.to_string()),
    }
}

pub async fn list_tables(app: &App, caller: &Caller, args: ListTablesArgs) -> CallToolResult {
    let policy = args.policy.unwrap_or_else(|| "default".into());
    if !caller.principal.may_use_policy(&policy) {
        return error_result(format!("this key may not use policy `{policy}`"));
    }
    match app.schema(caller, &policy).await {
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
    let policy = args.policy.clone().unwrap_or_else(|| "default".into());
    if !caller.principal.may_use_policy(&policy) {
        return error_result(format!("this key may not use policy `{policy}`"));
    }
    let schema = match app.schema(caller, &policy).await {
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
    let quoted = app.quote_table(schema_name, table["table"].as_str().unwrap_or(name));
    // Sample rows are per-row values: never under counts-only.
    let samples_allowed =
        app.policies.get(&policy).is_none_or(|p| p.output.describe_samples && !p.output.counts_only);
    let n = if samples_allowed { args.sample_rows.unwrap_or(3).min(10) } else { 0 };
    let req = ExecuteRequest {
        sql_query: format!("SELECT * FROM {quoted} LIMIT {n}"),
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
        match app.execute(caller, req).await {
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
    let scope = crate::audit::Scope::of(&caller.principal);
    match app.audit.get_scoped(&args.execution_id, scope.as_ref()).await {
        Ok(r) if caller.principal.has(Role::Audit) || r.principal == caller.principal.label() => tool_result(
            format!("{} {} by {} at {}", r.execution_id, r.status, r.principal, r.created_at),
            serde_json::to_value(&r).ok(),
            false,
        ),
        Ok(_) | Err(crate::audit::AuditError::NotFound(_)) => {
            error_result(format!("no execution {} that this key may see", args.execution_id))
        }
        Err(e) => error_result(e.to_string()),
    }
}

/// Function-calling definitions of the same tools (GET /tools).
pub fn definitions(format: &str) -> Option<Value> {
    let tools = [
        (
            "execute_classifier",
            "Run a Python classifier `def classify(df)` over the rows of one read-only SQL query in a sandbox; returns one label per row or an error with what to fix.",
            schemars::schema_for!(ExecuteRequest),
        ),
        (
            "list_tables",
            "List the tables (with columns and types) that queries may read under a policy.",
            schemars::schema_for!(ListTablesArgs),
        ),
        (
            "describe_table",
            "Describe one table: columns with types and a few sample rows.",
            schemars::schema_for!(DescribeTableArgs),
        ),
        (
            "get_execution",
            "Fetch the audit record of an earlier execution.",
            schemars::schema_for!(GetExecutionArgs),
        ),
    ];
    let clean = |s: schemars::Schema| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Value::Object(m) = &mut v {
            m.remove("$schema");
            m.remove("title");
        }
        v
    };
    match format {
        "openai" => Some(Value::Array(
            tools
                .into_iter()
                .map(|(name, desc, s)| {
                    json!({"type": "function", "function": {"name": name, "description": desc, "parameters": clean(s)}})
                })
                .collect(),
        )),
        "anthropic" => Some(Value::Array(
            tools
                .into_iter()
                .map(|(name, desc, s)| json!({"name": name, "description": desc, "input_schema": clean(s)}))
                .collect(),
        )),
        _ => None,
    }
}

/// Dispatch a function call as a model emits it (name + JSON arguments).
pub async fn dispatch(app: &App, caller: &Caller, name: &str, arguments: Value) -> CallToolResult {
    fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallToolResult> {
        serde_json::from_value(v).map_err(|e| error_result(format!("invalid arguments: {e}")))
    }
    let r = match name {
        "execute_classifier" => parse(arguments).map(|a| {
            Box::pin(run_execute(app, caller, a))
                as std::pin::Pin<Box<dyn std::future::Future<Output = CallToolResult> + Send + '_>>
        }),
        "list_tables" => parse(arguments).map(|a| Box::pin(list_tables(app, caller, a)) as _),
        "describe_table" => parse(arguments).map(|a| Box::pin(describe_table(app, caller, a)) as _),
        "get_execution" => parse(arguments).map(|a| Box::pin(get_execution(app, caller, a)) as _),
        other => {
            return error_result(format!(
                "unknown tool `{other}`; tools: execute_classifier, list_tables, describe_table, get_execution"
            ));
        }
    };
    match r {
        Ok(f) => f.await,
        Err(e) => e,
    }
}
