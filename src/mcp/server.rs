//! The MCP server (rmcp): streamable HTTP at /mcp, stdio via `sluice mcp`.
//! Each tool is a thin call into `tools.rs`, which asks the permission
//! table for the tool's grant.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};

use super::tools::{self, DescribeTableArgs, GetExecutionArgs, ListTablesArgs, error_result};
use crate::app::{App, Caller, ExecuteRequest};

/// The tools, for one caller.
#[derive(Clone)]
pub struct SluiceTools {
    app: Arc<App>,
    /// Fixed for stdio; for HTTP it comes with each request.
    caller: Option<Caller>,
    #[expect(dead_code, reason = "read through the tool_handler macro")]
    tool_router: ToolRouter<SluiceTools>,
}

#[tool_router]
impl SluiceTools {
    pub fn new(app: Arc<App>, caller: Option<Caller>) -> Self {
        Self { app, caller, tool_router: Self::tool_router() }
    }

    /// The tools as MCP lists them (name, description, input schema).
    pub fn list() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
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
        Ok(tools::execute_classifier(&self.app, &caller, req).await)
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
        Ok(tools::list_tables(&self.app, &caller, args).await)
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
        Ok(tools::describe_table(&self.app, &caller, args).await)
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
        Ok(tools::get_execution(&self.app, &caller, args).await)
    }
}

#[tool_handler]
impl ServerHandler for SluiceTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new("sluice", env!("CARGO_PKG_VERSION")))
            .with_instructions(
            "sluice runs Python classifiers over read-only SQL results in a sandbox. Look at the data with \
             list_tables and describe_table, then call execute_classifier with one SELECT and \
             `def classify(df): ...` returning one label per row. Errors say what to fix; retry with the fix.",
        )
    }
}
