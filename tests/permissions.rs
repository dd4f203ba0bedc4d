//! The permission matrix: every kind of caller (no key, each role, a key
//! limited to another policy) against every door — each HTTP route of
//! `sluice::http::ROUTES` (the table the router is built from) and each
//! tool of `sluice::mcp::TOOLS`, through `/tools/call` and through MCP over
//! HTTP. What each should get is computed from the permission table
//! (`sluice::app::authz::decide`), so a door that skipped the table, or a
//! new door without a case here, fails this test.

mod common;

use common::{keys, shared};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::app::authz::{Action, Reach, decide};
use sluice::audit::keys::Role;
use sluice::http::{Access, ROUTES};

const SQL: &str = "SELECT id FROM iris WHERE id <= 2";
const CODE: &str = "def classify(df):\n    return ['x'] * len(df)\n";

struct Who {
    name: &'static str,
    key: Option<String>,
    roles: Vec<Role>,
    /// Policies the key is limited to (`None`: every policy).
    policies: Option<Vec<String>>,
}

impl Who {
    /// What the table says this caller gets for `action` on a `default`
    /// policy resource: allowed (and how far), or not.
    fn reach(&self, action: Action) -> Option<Reach> {
        self.key.as_ref()?;
        let reach = decide(&self.roles, action)?;
        let policy_bound = matches!(action, Action::RunCode | Action::ReadSchema);
        let may_use_default = self.policies.as_ref().is_none_or(|p| p.iter().any(|p| p == "default"));
        if policy_bound && !may_use_default {
            return None;
        }
        Some(reach)
    }

    /// May it read the record another key made under `default`?
    fn sees_others_record(&self) -> bool {
        self.reach(Action::ReadRecord) == Some(Reach::Any) && self.policies.is_none()
    }

    fn client(&self) -> reqwest::Client {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(k) = &self.key {
            h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {k}").parse().unwrap());
        }
        reqwest::Client::builder()
            .default_headers(h)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }
}

async fn callers() -> Vec<Who> {
    let mut out = vec![Who { name: "no key", key: None, roles: vec![], policies: None }];
    for (name, roles, policies) in [
        ("execute", vec![Role::Execute], None),
        ("audit", vec![Role::Audit], None),
        ("admin", vec![Role::Admin], None),
        ("limited", vec![Role::Execute, Role::Audit], Some(vec!["tight".to_string()])),
    ] {
        let key_name = format!("matrix-{name}-{}", uuid::Uuid::now_v7());
        let (_, secret) = keys().create_key(&key_name, &roles, policies.as_deref()).await.unwrap();
        out.push(Who { name, key: Some(secret), roles, policies });
    }
    out
}

/// An execution made by the shared admin key under `default`.
async fn others_record() -> String {
    let v = common::run(SQL, CODE).await;
    v["execution_id"].as_str().unwrap().to_string()
}

/// Allowed, refused by the table (403 or a tool error naming the role or
/// policy), or not visible (404, "no execution").
#[derive(Debug, PartialEq, Clone, Copy)]
enum Got {
    Allowed,
    Refused,
    Unseen,
    NoKey,
}

fn expect(who: &Who, action: Action) -> Got {
    if who.key.is_none() {
        return Got::NoKey;
    }
    match (action, who.reach(action)) {
        (_, None) => Got::Refused,
        (Action::ReadRecord, Some(_)) if !who.sees_others_record() => Got::Unseen,
        _ => Got::Allowed,
    }
}

fn http_got(path: &str, status: StatusCode, body: &str) -> Got {
    match status.as_u16() {
        200 => Got::Allowed,
        401 => Got::NoKey,
        303 if path.starts_with("/ui/") => Got::NoKey,
        403 => Got::Refused,
        404 => Got::Unseen,
        other => panic!("{path}: HTTP {other}: {body}"),
    }
}

fn tool_got(result: &Value) -> Got {
    let text = result["content"].as_str().map(String::from).unwrap_or_else(|| result.to_string());
    if result["is_error"] != true {
        return Got::Allowed;
    }
    if text.contains("needs `") || text.contains("may not use policy") {
        Got::Refused
    } else if text.contains("no execution") {
        Got::Unseen
    } else {
        panic!("a tool error that is not the table's: {result}")
    }
}

/// Arguments of each tool, on resources of the `default` policy.
fn tool_args(tool: &str, record: &str) -> Value {
    match tool {
        "execute_classifier" => json!({"sql_query": SQL, "classifier_code": CODE}),
        "list_tables" => json!({}),
        "describe_table" => json!({"table": "iris", "sample_rows": 1}),
        "get_execution" => json!({"execution_id": record}),
        other => panic!("tool `{other}` has no case in the permission matrix test"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_against_every_http_route() {
    let base = shared().base.clone();
    let record = others_record().await;
    let mut checked = 0;
    for who in callers().await {
        let c = who.client();
        for r in ROUTES {
            let path = r.path.replace("{id}", &record);
            let req = match (r.method, r.path) {
                ("POST", "/execute-classifier") => {
                    c.post(format!("{base}{path}")).json(&json!({"sql_query": SQL, "classifier_code": CODE}))
                }
                ("POST", "/tools/call") => {
                    c.post(format!("{base}{path}")).json(&json!({"name": "list_tables", "arguments": {}}))
                }
                ("POST", "/ui/login") => c.post(format!("{base}{path}")).form(&[("key", "x")]),
                ("POST", "/ui/logout") => c.post(format!("{base}{path}")),
                ("POST", "/mcp") => c.post(format!("{base}{path}")).json(&json!({})),
                ("DELETE", "/mcp") => c.delete(format!("{base}{path}")),
                // GET /mcp opens a long-lived stream: only its key check is asked.
                ("GET", "/mcp") if who.key.is_some() => continue,
                ("GET", _) => c.get(format!("{base}{path}")),
                other => panic!("route {other:?} has no case in the permission matrix test"),
            };
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            match r.access {
                Access::Public => {
                    assert_ne!(status.as_u16(), 401, "{} {path} is public", r.method);
                    if r.path == "/readyz" {
                        // The details are the table's to give.
                        let v: Value = serde_json::from_str(&body).unwrap();
                        let detailed = v["database"].get("sql_guards").is_some();
                        let want = who.reach(Action::ReadServerDetails).is_some();
                        assert_eq!(detailed, want, "{}: /readyz details: {v}", who.name);
                    }
                }
                Access::Key => {
                    if who.key.is_none() {
                        assert_eq!(status.as_u16(), 401, "{} {path} needs a key", r.method);
                    } else {
                        assert_ne!(status.as_u16(), 401, "{}: {} {path}: {body}", who.name, r.method);
                    }
                }
                Access::Action(action) => {
                    let got = http_got(&path, status, &body);
                    assert_eq!(
                        got,
                        expect(&who, action),
                        "{}: {} {path} ({action:?}): {body}",
                        who.name,
                        r.method
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= ROUTES.len() * 4, "only {checked} requests were checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_against_every_tool_through_tools_call() {
    let base = shared().base.clone();
    let record = others_record().await;
    for who in callers().await {
        let c = who.client();
        for (tool, action) in sluice::mcp::TOOLS {
            let call = json!({"name": tool, "arguments": tool_args(tool, &record)});
            let resp = c.post(format!("{base}/tools/call")).json(&call).send().await.unwrap();
            if who.key.is_none() {
                assert_eq!(resp.status().as_u16(), 401);
                continue;
            }
            let v: Value = resp.json().await.unwrap();
            assert_eq!(tool_got(&v), expect(&who, *action), "{}: /tools/call {tool}: {v}", who.name);
        }
    }
}

/// One MCP session over streamable HTTP, spoken with plain requests.
struct Mcp {
    client: reqwest::Client,
    url: String,
    session: String,
    next_id: u64,
}

impl Mcp {
    async fn open(who: &Who, base: &str) -> Result<Mcp, u16> {
        let client = who.client();
        let url = format!("{base}/mcp");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "matrix", "version": "0"}}});
        let r = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return Err(r.status().as_u16());
        }
        let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let _ = r.text().await;
        let mut m = Mcp { client, url, session, next_id: 1 };
        m.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        Ok(m)
    }

    async fn send(&mut self, body: Value) -> String {
        let r = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        let text = self.send(body).await;
        // The answer comes as one server-sent event (or plain JSON).
        let json_text =
            text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).find(|l| !l.is_empty());
        let v: Value = serde_json::from_str(json_text.unwrap_or(&text)).unwrap();
        assert!(v.get("error").is_none(), "MCP {tool}: a protocol error, not a tool result: {v}");
        let result = &v["result"];
        let content: Vec<&str> =
            result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect();
        json!({"is_error": result["isError"], "content": content.join("\n")})
    }

    async fn close(self) {
        let _ = self.client.delete(&self.url).header("mcp-session-id", &self.session).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_against_every_tool_over_mcp() {
    let base = shared().base.clone();
    let record = others_record().await;
    for who in callers().await {
        let mut mcp = match Mcp::open(&who, &base).await {
            Ok(m) => m,
            Err(status) => {
                assert!(who.key.is_none() && status == 401, "{}: MCP initialize got {status}", who.name);
                continue;
            }
        };
        assert!(who.key.is_some(), "MCP opened without a key");
        for (tool, action) in sluice::mcp::TOOLS {
            let v = mcp.call(tool, tool_args(tool, &record)).await;
            assert_eq!(tool_got(&v), expect(&who, *action), "{}: MCP {tool}: {v}", who.name);
        }
        mcp.close().await;
    }
}

/// A key without the audit role reads its own record through every door
/// that reads records, and nobody else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execute_key_reads_its_own_records_only() {
    let base = shared().base.clone();
    let others = others_record().await;
    let who = callers().await.into_iter().find(|w| w.name == "execute").unwrap();
    let c = who.client();
    let v: Value = c
        .post(format!("{base}/execute-classifier"))
        .json(&json!({"sql_query": SQL, "classifier_code": CODE}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = v["execution_id"].as_str().unwrap();
    for (id, want) in [(mine, 200), (others.as_str(), 404)] {
        let r = c.get(format!("{base}/audit/{id}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "GET /audit/{id}");
        let r: Value = c
            .post(format!("{base}/tools/call"))
            .json(&json!({"name": "get_execution", "arguments": {"execution_id": id}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["is_error"], want != 200, "get_execution {id}: {r}");
    }
    // Listing the log stays the audit role's.
    let r = c.get(format!("{base}/audit")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}
