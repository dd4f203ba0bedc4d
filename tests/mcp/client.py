"""A real MCP client session against sluice, with the official Python SDK.

Usage:
  python client.py stdio SLUICE_BIN DATA_DIR
  python client.py http  URL KEY
Prints one JSON object with the tool list and each tool's result.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

CLASSIFIER = """Here is a classifier:
```python
def classify(df):
    return ["long" if x > 4.5 else "short" for x in df["petal_length"]]
```"""


def dump(result):
    return {
        "is_error": bool(result.is_error),
        "text": "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text"),
        "structured": result.structured_content,
    }


async def session_calls(session):
    init = await session.initialize()
    tools = await session.list_tools()
    out = {"tools": sorted(t.name for t in tools.tools), "server_name": init.server_info.name}
    out["tools_full"] = sorted(
        (
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in tools.tools
        ),
        key=lambda t: t["name"],
    )
    out["list_tables"] = dump(await session.call_tool("list_tables", {}))
    out["describe_table"] = dump(await session.call_tool("describe_table", {"table": "iris", "sample_rows": 2}))
    ok = dump(await session.call_tool("execute_classifier", {"sql_query": "SELECT * FROM iris", "classifier_code": CLASSIFIER}))
    out["execute_classifier"] = ok
    out["execute_error"] = dump(
        await session.call_tool("execute_classifier", {"sql_query": "SELECT * FROM iris", "classifier_code": "def classify(df):\n    return df['nope']\n"})
    )
    exec_id = ok["structured"]["execution_id"]
    out["get_execution"] = dump(await session.call_tool("get_execution", {"execution_id": exec_id}))
    return out


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["--data-dir", sys.argv[3], "mcp"])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await session_calls(session)
    else:
        url, key = sys.argv[2], sys.argv[3]
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as session:
                    out = await session_calls(session)
    print(json.dumps(out))


asyncio.run(main())
