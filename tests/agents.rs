//! Agents as users: a real MCP client session (the official Python SDK)
//! over stdio and streamable HTTP, a golden tools/list, function calling
//! through /tools, and error messages an LLM can act on.

mod common;

use std::process::Command;

use common::{assert_status, client, run, shared};
use serde_json::{Value, json};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/tools_list.golden.json");

/// A Python with the official MCP SDK: a virtualenv the tests build once
/// (with sluice's own environment builder: uv, a lock, a marker), so the
/// test command needs nothing installed by hand.
fn mcp_python() -> &'static std::path::Path {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let envs = sluice::environment::Environments::new(
            sluice::config::DataDir::new(common::data_dir()),
            sluice::environment::EnvSpecs::builtin(),
        );
        let env = envs
            .ensure_with("mcp-client", include_str!("mcp/requirements.txt"), false)
            .unwrap_or_else(|e| panic!("building the MCP client's environment (needs PyPI): {e}"));
        env.python
    })
}

fn python_client(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");
    let out = Command::new(mcp_python()).arg(script).args(args).output().expect("the MCP client's python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the MCP client failed: {stderr}");
    // Closing the session is a success to the SDK (204, not rmcp's 202).
    assert!(!stderr.contains("Session termination failed"), "{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn check_session(v: &Value, principal_prefix: &str) {
    assert_eq!(v["server_name"], "sluice", "the MCP server introduces itself as sluice");
    assert_eq!(v["tools"], json!(["describe_table", "execute_classifier", "get_execution", "list_tables"]));
    // What models read carries no notes meant for sluice's developers.
    let listing = v["tools_full"].to_string();
    assert!(!listing.contains("DESIGN") && !listing.contains('§'), "{listing}");
    let lt = &v["list_tables"];
    assert_eq!(lt["is_error"], false);
    assert!(lt["text"].as_str().unwrap().contains("iris(id INTEGER"), "{lt}");
    let dt = &v["describe_table"];
    assert_eq!(dt["structured"]["sample_rows"].as_array().unwrap().len(), 2, "{dt}");
    assert_eq!(dt["structured"]["sample_rows"][0]["species"], "setosa");
    let ex = &v["execute_classifier"];
    assert_eq!(ex["is_error"], false);
    // One summary line first; every prediction in the structured content.
    assert!(ex["text"].as_str().unwrap().starts_with("150 rows → short 87, long 63"), "{}", ex["text"]);
    assert!(ex["text"].as_str().unwrap().contains("100 more in structuredContent.predictions"));
    assert_eq!(ex["structured"]["predictions"].as_array().unwrap().len(), 150);
    let err = &v["execute_error"];
    assert_eq!(err["is_error"], true, "a failed verdict is a tool result with isError, not a protocol error");
    assert_eq!(err["structured"]["status"], "runtime_error");
    assert!(err["text"].as_str().unwrap().contains("column 'nope' does not exist"), "{}", err["text"]);
    let ge = &v["get_execution"];
    assert_eq!(ge["is_error"], false);
    assert!(ge["structured"]["principal"].as_str().unwrap().starts_with(principal_prefix), "{ge}");
}

#[test]
fn mcp_over_stdio_with_the_python_sdk() {
    common::shared(); // environment built
    let data = common::data_dir();
    let v = python_client(&["stdio", env!("CARGO_BIN_EXE_sluice"), data.to_str().unwrap()]);
    check_session(&v, "stdio:");
    // The golden tools/list: what every MCP client sees.
    let tools = serde_json::to_string_pretty(&v["tools_full"]).unwrap() + "\n";
    if std::env::var_os("SLUICE_UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &tools).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN)
        .expect("tests/mcp/tools_list.golden.json (SLUICE_UPDATE_GOLDEN=1 writes it)");
    assert_eq!(tools, golden, "tools/list changed; review and rerun with SLUICE_UPDATE_GOLDEN=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_streamable_http_with_the_python_sdk() {
    let base = shared().base.clone();
    let (key, secret) =
        common::keys().create_key("mcp-agent", &[sluice::audit::keys::Role::Execute], None).await.unwrap();
    let v = tokio::task::spawn_blocking(move || python_client(&["http", &format!("{base}/mcp"), &secret]))
        .await
        .unwrap();
    check_session(&v, &format!("mcp-agent ({})", key.id));
    // Without a key there is no session.
    let r = reqwest::Client::new()
        .post(format!("{}/mcp", shared().base))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn an_openai_tool_call_dispatches_through_the_published_schema() {
    let tools: Value = client()
        .get(format!("{}/tools?format=openai", shared().base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exec =
        tools.as_array().unwrap().iter().find(|t| t["function"]["name"] == "execute_classifier").unwrap();
    let params = &exec["function"]["parameters"];
    assert_eq!(params["type"], "object");
    assert_eq!(params["required"], json!(["sql_query", "classifier_code"]));
    assert!(
        params["properties"]["classifier_code"]["description"].as_str().unwrap().contains("def classify(df)")
    );
    // What a model emits: arguments as a JSON string.
    let args = json!({
        "sql_query": "SELECT * FROM wine WHERE alcohol > ?",
        "params": [13.5],
        "classifier_code": "def classify(df):\n    return df['target_name']\n",
    });
    for k in args.as_object().unwrap().keys() {
        assert!(params["properties"].get(k).is_some(), "`{k}` is not in the published schema");
    }
    let call = json!({"id": "call_abc", "type": "function", "function": {"name": "execute_classifier", "arguments": args.to_string()}});
    let r: Value = client()
        .post(format!("{}/tools/call", shared().base))
        .json(&call)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["is_error"], false, "{r}");
    assert!(r["content"].as_str().unwrap().contains(" rows → class_0"), "{r}");
    assert_eq!(r["structured_content"]["status"], "success");
    // Anthropic's format and tool_use shape work the same way.
    let tools: Value = client()
        .get(format!("{}/tools?format=anthropic", shared().base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tools.as_array().unwrap().iter().all(|t| t["input_schema"]["type"] == "object"));
    let r: Value = client()
        .post(format!("{}/tools/call", shared().base))
        .json(&json!({"type": "tool_use", "id": "toolu_1", "name": "list_tables", "input": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["is_error"], false, "{r}");
    let r = client().get(format!("{}/tools?format=yaml", shared().base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A model's malformed arguments are a tool result it can read and
    // retry, not an HTTP error that ends the agent's loop.
    let bad = json!({"type": "function", "function": {"name": "execute_classifier", "arguments": "{\"sql_query\": "}});
    let r = client().post(format!("{}/tools/call", shared().base)).json(&bad).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["is_error"], true, "{r}");
    assert!(r["content"].as_str().unwrap().contains("not valid JSON"), "{r}");
    // No published schema carries notes meant for sluice's developers.
    for format in ["openai", "anthropic"] {
        let t = client().get(format!("{}/tools?format={format}", shared().base)).send().await.unwrap();
        let t = t.text().await.unwrap();
        assert!(!t.contains("DESIGN") && !t.contains('§'), "{format}: {t}");
    }
}

/// Each category's message says what went wrong, where, and what to do.
#[tokio::test]
async fn error_messages_carry_the_facts_an_llm_needs() {
    let v = run("PRAGMA table_info(iris)", common::OK).await;
    assert_status(&v, "sql_rejected");
    assert!(v["error"]["message"].as_str().unwrap().contains("`PRAGMA` is not allowed"), "{v}");
    let v = common::run_with(json!({"sql_query": "SELECT * FROM iris WHERE id = :id", "params": [1], "classifier_code": common::OK})).await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("`:id`") && m.contains("use `?`") && !m.contains("sqlx"), "{m}");
    let v = run("SELECT * FROM irs", common::OK).await;
    assert_status(&v, "sql_error");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("irs") && m.contains("tables this policy can read: ") && m.contains("iris"), "{m}");
    let helper = "def helper(x):\n    return x / 0\n\ndef classify(df):\n    return [helper(1) for _ in range(len(df))]\n";
    let v = run("SELECT * FROM iris", helper).await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("in helper() at line 2, called in classify(df)"), "{m}");

    let v = run("SELECT petal_lenght FROM iris", "def classify(df):\n    return [0] * len(df)\n").await;
    assert_status(&v, "sql_error");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("petal_lenght") && m.contains("columns of iris: id, sepal_length"), "{m}");

    let v = run("SELECT * FROM iris", "def classify(df):\n    return df['colour']\n").await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("'colour' does not exist") && m.contains("petal_width") && m.contains("line 2"),
        "{m}"
    );

    let v = common::run_with(json!({"sql_query": "SELECT * FROM iris", "classifier_code": "def classify(df):\n    return [0] * len(df)\n", "policy": "tight"})).await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("more than 10 rows") && m.contains("LIMIT 10"), "{m}");

    let v = common::run_with(
        json!({"sql_query": "SELECT * FROM wine", "classifier_code": "x", "policy": "tight"}),
    )
    .await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("`wine`") && m.contains("allowed tables: iris"), "{m}");

    let v = run("SELECT 1 AS x", "def classify(df)\n    return [1]\n").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("line 1, column"), "{v}");

    let v = run("SELECT 1 AS x", "import socket\ndef classify(df):\n    socket.socket()\n").await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("`socket`") && m.contains("network access is not available"), "{m}");

    let v = run("SELECT 1 AS x", "def predict(df):\n    return [1]\n").await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("functions defined: predict") && m.contains("def classify(df):"), "{m}");

    let v = run("SELECT * FROM iris", "def classify(df):\n    return [1, 2]\n").await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("2 items") && m.contains("150 rows") && m.contains("exactly one label per row"),
        "{m}"
    );

    let v = common::run_with(json!({"sql_query": "SELECT 1 AS x", "classifier_code": "def classify(df):\n    while True: pass\n", "timeout": 0.3})).await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("0.3 s") && m.contains("larger `timeout`"), "{m}");
}
