//! One test per verdict category and per code rule of DESIGN §3, against a
//! real server, real zygote and the real demo SQLite database.

mod common;

use common::{assert_status, run, run_with};
use serde_json::json;

const IRIS: &str = "SELECT * FROM iris";

#[tokio::test]
async fn success_returns_labels_counts_and_columns() {
    let v = run(
        IRIS,
        "def classify(df):\n    return ['big' if x > 5.8 else 'small' for x in df['sepal_length']]\n",
    )
    .await;
    assert_status(&v, "success");
    assert_eq!(v["row_count"], 150);
    assert_eq!(v["predictions"].as_array().unwrap().len(), 150);
    let counts = v["label_counts"].as_object().unwrap();
    assert_eq!(counts["big"].as_u64().unwrap() + counts["small"].as_u64().unwrap(), 150);
    assert_eq!(v["columns"][0], json!({"name": "id", "type": "integer"}));
    assert_eq!(v["columns"][1], json!({"name": "sepal_length", "type": "float"}));
    assert_eq!(v["columns"][5], json!({"name": "species", "type": "text"}));
    assert_eq!(v["policy"], "default");
    assert_eq!(v["environment"], "default");
    assert!(v["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    assert!(v["resources"]["peak_memory_kb"].as_u64().unwrap() > 0);
    let id = uuid::Uuid::parse_str(v["execution_id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn demo_tables_have_the_datasets_row_counts() {
    for (table, rows, label) in
        [("iris", 150, "species"), ("wine", 178, "target_name"), ("breast_cancer", 569, "target_name")]
    {
        let v =
            run(&format!("SELECT * FROM {table}"), &format!("def classify(df):\n    return df['{label}']\n"))
                .await;
        assert_status(&v, "success");
        assert_eq!(v["row_count"], rows, "{table}");
    }
    let v = run("SELECT * FROM iris", "def classify(df):\n    return df['species']\n").await;
    assert_eq!(v["label_counts"], json!({"setosa": 50, "versicolor": 50, "virginica": 50}));
    let v = run("SELECT * FROM wine", "def classify(df):\n    return df['target_name']\n").await;
    assert_eq!(v["label_counts"], json!({"class_0": 59, "class_1": 71, "class_2": 48}));
    let v = run("SELECT * FROM breast_cancer", "def classify(df):\n    return df['target_name']\n").await;
    assert_eq!(v["label_counts"], json!({"benign": 357, "malignant": 212}));
}

#[tokio::test]
async fn scores_dict_and_numpy_and_label_types() {
    let v = run(
        "SELECT * FROM iris LIMIT 3",
        "import numpy as np\ndef classify(df):\n    return {'labels': np.array([1, 2, 2]), 'scores': np.array([0.5, 0.25, 1.0])}\n",
    )
    .await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!([1, 2, 2]));
    assert_eq!(v["scores"], json!([0.5, 0.25, 1.0]));
    assert_eq!(v["label_counts"], json!({"1": 1, "2": 2}));
    let v = run("SELECT * FROM iris LIMIT 4", "def classify(df):\n    return (True, None, 1.5, 'x')\n").await;
    assert_status(&v, "success");
    assert_eq!(v["label_counts"], json!({"true": 1, "null": 1, "1.5": 1, "x": 1}));
}

#[tokio::test]
async fn params_are_bound() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris WHERE species = ? AND sepal_length > ?",
        "params": ["setosa", 5.5],
        "classifier_code": "def classify(df):\n    return df['species']\n",
    }))
    .await;
    assert_status(&v, "success");
    assert_eq!(v["row_count"], 3);
}

#[tokio::test]
async fn sql_rejected_for_writes_stacking_and_denied_functions() {
    for (sql, needle) in [
        ("DELETE FROM iris", "DELETE"),
        ("SELECT 1; DROP TABLE iris", "2 statements"),
        ("PRAGMA writable_schema = 1", "PRAGMA"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
        ("SELECT load_extension('x')", "load_extension"),
        ("SELECT * FROM pragma_table_info('iris')", "pragma_table_info"),
        ("SELEC * FROM iris", "does not parse"),
    ] {
        let v = run(sql, "def classify(df):\n    return [0] * len(df)\n").await;
        assert_status(&v, "sql_rejected");
        let reason = v["error"]["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{sql}: {reason}");
        assert!(v["row_count"].is_null());
    }
}

#[tokio::test]
async fn sql_rejected_for_tables_outside_the_allow_list() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM wine",
        "classifier_code": "def classify(df):\n    return [0] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&v, "sql_rejected");
    let reason = v["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("`wine`") && reason.contains("iris"), "{reason}");
    // A CTE name is not a table; a CTE body still may not read other tables.
    let ok = run_with(json!({
        "sql_query": "WITH wine AS (SELECT * FROM iris LIMIT 2) SELECT * FROM wine",
        "classifier_code": "def classify(df):\n    return [0] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&ok, "success");
    let sneaky = run_with(json!({
        "sql_query": "WITH a AS (SELECT * FROM wine) SELECT * FROM iris, a LIMIT 1",
        "classifier_code": "def classify(df):\n    return [0] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&sneaky, "sql_rejected");
}

#[tokio::test]
async fn sql_error_carries_the_database_message() {
    let v = run("SELECT no_such_column FROM iris", "def classify(df):\n    return [0] * len(df)\n").await;
    assert_status(&v, "sql_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("no_such_column"), "{v}");
}

#[tokio::test]
async fn sql_timeout_interrupts_a_runaway_query() {
    let v = run_with(json!({
        "sql_query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "classifier_code": "def classify(df):\n    return [0] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&v, "sql_timeout");
    let sql_ms = v["timings_ms"]["sql"].as_f64().unwrap();
    assert!(sql_ms < 5000.0, "took {sql_ms} ms for a 1 s statement timeout");
}

#[tokio::test]
async fn row_limit_reports_the_limit() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris",
        "classifier_code": "def classify(df):\n    return [0] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&v, "row_limit");
    assert_eq!(v["error"]["limit"], 10);
    // Exactly max_rows is fine.
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 10",
        "classifier_code": "def classify(df):\n    return [0] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&v, "success");
}

#[tokio::test]
async fn syntax_error_has_line_and_offset() {
    let v = run(IRIS, "def classify(df):\n    x = [1, 2\n    return x\n").await;
    assert_status(&v, "syntax_error");
    assert!(v["error"]["line"].as_u64().is_some(), "{v}");
    assert!(v["error"]["offset"].as_u64().is_some(), "{v}");
    let v = run(IRIS, "def classify(df):\n    return df[[\n\ndef\n").await;
    assert_status(&v, "syntax_error");
    let v = run(IRIS, "import numpy as np\ndef classify(df)\n    return 1\n").await;
    assert_status(&v, "syntax_error");
    assert_eq!(v["error"]["line"], 2);
}

#[tokio::test]
async fn syntax_error_line_counts_from_the_fenced_code() {
    let text = "Here is my classifier.\nIt is great.\n\n```python\nimport numpy as np\n\ndef classify(df)\n    return 1\n```\nThanks!";
    let v = run(IRIS, text).await;
    assert_status(&v, "syntax_error");
    assert_eq!(v["error"]["line"], 3, "{v}");
}

#[tokio::test]
async fn missing_entrypoint_lists_what_is_defined() {
    let v = run(IRIS, "def predict(df):\n    return [0] * len(df)\n").await;
    assert_status(&v, "missing_entrypoint");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("classify") && m.contains("predict"), "{m}");
    let v = run_with(json!({"sql_query": IRIS, "classifier_code": "def predict(df):\n    return [0] * len(df)\n", "entrypoint": "predict"})).await;
    assert_status(&v, "success");
    let v = run(IRIS, "classify = 3\n").await;
    assert_status(&v, "missing_entrypoint");
}

#[tokio::test]
async fn runtime_error_has_type_line_and_user_frames_only() {
    let code = "import pandas as pd\n\ndef helper(df):\n    return df['no_such_column']\n\ndef classify(df):\n    return helper(df)\n";
    let v = run(IRIS, code).await;
    assert_status(&v, "runtime_error");
    assert_eq!(v["error"]["type"], "KeyError");
    assert_eq!(v["error"]["line"], 4);
    let tb = v["error"]["traceback"].as_str().unwrap();
    assert!(tb.contains("line 7") && tb.contains("line 4"), "{tb}");
    assert!(!tb.contains("harness.py") && !tb.contains("site-packages"), "{tb}");
    assert!(tb.contains("return df['no_such_column']"), "{tb}");
    // Errors at module level count too.
    let v = run(IRIS, "x = 1 / 0\ndef classify(df):\n    return [0] * len(df)\n").await;
    assert_status(&v, "runtime_error");
    assert_eq!(v["error"]["type"], "ZeroDivisionError");
    assert_eq!(v["error"]["line"], 1);
}

#[tokio::test]
async fn invalid_output_explains_the_contract() {
    for (code, needle) in [
        ("def classify(df):\n    return [1, 2]\n", "2 items but the query returned 150 rows"),
        ("def classify(df):\n    return df\n", "DataFrame"),
        ("def classify(df):\n    pass\n", "forget to `return`"),
        ("def classify(df):\n    return 'x'\n", "str"),
        ("def classify(df):\n    return [[1]] * len(df)\n", "labels must be"),
        (
            "def classify(df):\n    return {'labels': [0] * len(df), 'scores': ['a'] * len(df)}\n",
            "scores must be numbers",
        ),
        ("def classify(df):\n    return {'label': []}\n", "'labels'"),
    ] {
        let v = run(IRIS, code).await;
        assert_status(&v, "invalid_output");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{code}: {m}");
        assert!(v["error"]["reason"].is_string());
    }
}

#[tokio::test]
async fn timeout_kills_at_the_wall_clock_limit() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 1",
        "classifier_code": "def classify(df):\n    while True:\n        pass\n",
        "timeout": 1.0,
    }))
    .await;
    assert_status(&v, "timeout");
    assert_eq!(v["error"]["kind"], "wall_clock");
    assert_eq!(v["error"]["limit_s"], 1.0);
    let sandbox_ms = v["timings_ms"]["sandbox"].as_f64().unwrap();
    assert!((1000.0..2000.0).contains(&sandbox_ms), "killed after {sandbox_ms} ms for a 1 s limit");
    // A sleeping child is killed too (it uses no CPU).
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 1",
        "classifier_code": "import time\ndef classify(df):\n    time.sleep(60)\n",
        "timeout": 0.5,
    }))
    .await;
    assert_status(&v, "timeout");
}

#[tokio::test]
async fn memory_limit_when_python_runs_out() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 1",
        "classifier_code": "import numpy as np\ndef classify(df):\n    x = np.ones(10**9)\n    return [x.sum()]\n",
        "max_memory": 200,
    }))
    .await;
    assert_status(&v, "memory_limit");
    assert_eq!(v["error"]["limit_mb"], 200);
    // Pure-Python allocation fails the same way.
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 1",
        "classifier_code": "def classify(df):\n    x = [0] * (10**9)\n    return [len(x)]\n",
        "max_memory": 200,
    }))
    .await;
    assert_status(&v, "memory_limit");
    // The same code fits in the default budget when it is small enough.
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 1",
        "classifier_code": "import numpy as np\ndef classify(df):\n    x = np.ones(10**7)\n    return [float(x.sum())]\n",
        "max_memory": 200,
    }))
    .await;
    assert_status(&v, "success");
}

#[tokio::test]
async fn output_limit_on_a_huge_result() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 10",
        "classifier_code": "def classify(df):\n    return ['x' * 500] * len(df)\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&v, "output_limit");
    assert_eq!(v["error"]["limit_bytes"], 1000);
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_and_truncated_never_fatal() {
    let v = run_with(json!({
        "sql_query": "SELECT * FROM iris LIMIT 2",
        "classifier_code": "import sys\ndef classify(df):\n    print('a' * 1000)\n    print('err', file=sys.stderr)\n    return [0, 1]\n",
        "policy": "tight",
    }))
    .await;
    assert_status(&v, "success");
    assert_eq!(v["stdout"].as_str().unwrap().len(), 100);
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["stderr_truncated"], false);
}

#[tokio::test]
async fn warnings_are_captured_on_stderr() {
    let v = run(
        "SELECT * FROM iris LIMIT 2",
        "import warnings\ndef classify(df):\n    warnings.warn('careful now')\n    return [0, 1]\n",
    )
    .await;
    assert_status(&v, "success");
    let err = v["stderr"].as_str().unwrap();
    assert!(err.contains("UserWarning: careful now"), "{err}");
}

#[tokio::test]
async fn main_guard_does_not_run() {
    let code = "def classify(df):\n    return ['ok'] * len(df)\n\nif __name__ == '__main__':\n    raise SystemExit('demo block ran')\n";
    let v = run("SELECT * FROM iris LIMIT 2", code).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!(["ok", "ok"]));
}

#[tokio::test]
async fn n_jobs_minus_one_runs_in_process() {
    let code = r#"
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score

def classify(df):
    X = df[["sepal_length", "sepal_width", "petal_length", "petal_width"]]
    y = df["species"]
    clf = RandomForestClassifier(n_estimators=20, n_jobs=-1, random_state=0)
    scores = cross_val_score(clf, X, y, cv=3, n_jobs=-1)
    print("cv", round(scores.mean(), 2))
    return clf.fit(X, y).predict(X)
"#;
    let v = run(IRIS, code).await;
    assert_status(&v, "success");
    assert!(v["stdout"].as_str().unwrap().starts_with("cv "), "{v}");
    assert_eq!(v["label_counts"]["setosa"], 50);
}

#[tokio::test]
async fn nullable_integers_stay_integers() {
    let code = "def classify(df):\n    return [str(df['maybe'].dtype), str(df['f'].dtype), str(df['t'].dtype)] + [None] * (len(df) - 3)\n";
    let v = run(
        "SELECT CASE WHEN id % 2 = 0 THEN id END AS maybe, sepal_length AS f, species AS t FROM iris",
        code,
    )
    .await;
    assert_status(&v, "success");
    let p = v["predictions"].as_array().unwrap();
    assert_eq!(p[0], "Int64");
    assert_eq!(p[1], "float64");
    assert!(p[2].as_str().unwrap().contains("str"), "{}", p[2]);
}

#[tokio::test]
async fn nothing_leaks_from_one_request_to_the_next() {
    let write = "import builtins\nimport pandas as pd\nSEEN = []\ndef classify(df):\n    builtins.leaked = 1\n    pd.leaked = 1\n    return [0] * len(df)\n";
    assert_status(&run("SELECT * FROM iris LIMIT 1", write).await, "success");
    let read = "import builtins\nimport pandas as pd\ndef classify(df):\n    return [hasattr(builtins, 'leaked') or hasattr(pd, 'leaked')]\n";
    let v = run("SELECT * FROM iris LIMIT 1", read).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"], json!([false]));
}

#[tokio::test]
async fn the_child_works_in_its_own_scratch_dir_with_a_clean_environment() {
    let code = r#"
import os, tempfile
def classify(df):
    with open("rel.txt", "w") as f:
        f.write("x")
    with tempfile.NamedTemporaryFile() as t:
        pass
    env = sorted(os.environ)
    return [os.getcwd() == os.environ["HOME"] == os.environ["TMPDIR"], ",".join(env)]
"#;
    let v = run("SELECT * FROM iris LIMIT 2", code).await;
    assert_status(&v, "success");
    assert_eq!(v["predictions"][0], true);
    assert_eq!(v["predictions"][1], "HOME,LANG,TMPDIR");
}

#[tokio::test]
async fn a_huge_file_fails_the_write_not_the_server() {
    let code = "def classify(df):\n    with open('big.bin', 'wb') as f:\n        for _ in range(100):\n            f.write(b'x' * (1 << 20))\n    return [0] * len(df)\n";
    let v = run("SELECT * FROM iris LIMIT 1", code).await;
    assert_status(&v, "runtime_error");
    assert_eq!(v["error"]["type"], "OSError");
    assert!(v["error"]["message"].as_str().unwrap().contains("File too large"), "{v}");
    assert_eq!(v["error"]["line"], 4);
}
