//! sluice for agents: one tool list, served over MCP (`server.rs`: /mcp and
//! `sluice mcp`) and as function-calling schemas (`GET /tools`, derived from
//! the MCP list) with `/tools/call` (`dispatch`). Each tool's work is in
//! `tools.rs` and begins by asking the permission table for its grant.

mod server;
mod tools;
pub use tools::error_result;

use serde_json::{Value, json};

pub use server::SluiceTools;
pub use tools::summary;

use crate::app::authz::{Action, Grant, act};
use crate::app::{App, Caller};
use rmcp::model::CallToolResult;

/// Every tool and the action the permission table decides for it (a
/// tool's sample rows also need `RunCode`). A unit test keeps this list
/// and the MCP server's equal.
pub const TOOLS: &[(&str, Action)] = &[
    ("execute_classifier", Action::RunCode),
    ("list_tables", Action::ReadSchema),
    ("describe_table", Action::ReadSchema),
    ("get_execution", Action::ReadRecord),
];

/// Function-calling definitions of the MCP tools (GET /tools).
pub fn definitions(_: &Grant<act::ListTools>, format: &str) -> Option<Value> {
    let tools = SluiceTools::list();
    let clean = |s: &serde_json::Map<String, Value>| {
        let mut m = s.clone();
        m.remove("$schema");
        m.remove("title");
        Value::Object(m)
    };
    let each = |f: &dyn Fn(&str, &str, Value) -> Value| -> Value {
        Value::Array(
            tools
                .iter()
                .map(|t| f(&t.name, t.description.as_deref().unwrap_or(""), clean(&t.input_schema)))
                .collect(),
        )
    };
    match format {
        "openai" => Some(each(
            &|name, desc, params| json!({"type": "function", "function": {"name": name, "description": desc, "parameters": params}}),
        )),
        "anthropic" => Some(each(
            &|name, desc, params| json!({"name": name, "description": desc, "input_schema": params}),
        )),
        _ => None,
    }
}

/// Dispatch a function call as a model emits it (name + JSON arguments).
pub async fn dispatch(app: &App, caller: &Caller, name: &str, arguments: Value) -> CallToolResult {
    match name {
        "execute_classifier" => with_args(arguments, |a| tools::execute_classifier(app, caller, a)).await,
        "list_tables" => with_args(arguments, |a| tools::list_tables(app, caller, a)).await,
        "describe_table" => with_args(arguments, |a| tools::describe_table(app, caller, a)).await,
        "get_execution" => with_args(arguments, |a| tools::get_execution(app, caller, a)).await,
        other => {
            let names: Vec<&str> = TOOLS.iter().map(|(n, _)| *n).collect();
            tools::error_result(format!("unknown tool `{other}`; tools: {}", names.join(", ")))
        }
    }
}

/// Run `tool` on the arguments parsed as its type, or say why they do not parse.
async fn with_args<T, F>(arguments: Value, tool: impl FnOnce(T) -> F) -> CallToolResult
where
    T: serde::de::DeserializeOwned,
    F: std::future::Future<Output = CallToolResult>,
{
    match serde_json::from_value(arguments) {
        Ok(a) => tool(a).await,
        Err(e) => tools::error_result(format!("invalid arguments: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tool_list_is_the_mcp_servers() {
        let mut served: Vec<String> = super::SluiceTools::list().iter().map(|t| t.name.to_string()).collect();
        let mut listed: Vec<String> = super::TOOLS.iter().map(|(n, _)| n.to_string()).collect();
        served.sort();
        listed.sort();
        assert_eq!(served, listed);
    }
}
