//! Two environments with conflicting pins served at once by one server:
//! the built-in `default` (numpy 2, pandas 3, scikit-learn 1.9, pyarrow)
//! and an operator's `legacy-sklearn` (numpy 1.26, pandas 2.2,
//! scikit-learn 1.5, no pyarrow; on demand, stopped when idle), each
//! under its own policy; and a third with pandas and numpy only. The
//! escape suite in `legacy-sklearn`:
//! `escape_environments.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Options, Server, assert_status, execute, start};
use serde_json::{Value, json};
use sluice::config::DataDir;
use sluice::environment::{EnvSpecs, Environments};

const LEGACY: &str = "legacy-sklearn";
const BARE: &str = "bare";
const IDLE_STOP_S: u64 = 3;

/// A fresh dir under the target dir.
fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The example environment's pins, with a models dir to read and a short
/// idle stop.
fn environments_dir(models: &Path) -> PathBuf {
    let dir = tmp("environments");
    let legacy = dir.join(LEGACY);
    std::fs::create_dir(&legacy).unwrap();
    let example = common::repo_environments().join(LEGACY);
    std::fs::copy(example.join("requirements.txt"), legacy.join("requirements.txt")).unwrap();
    std::fs::write(
        legacy.join("environment.toml"),
        format!(
            "start = \"on_demand\"\nidle_stop_s = {IDLE_STOP_S}\nread_paths = [{:?}]\n",
            models.display().to_string()
        ),
    )
    .unwrap();
    // numpy and pandas only: no scikit-learn, scipy or pyarrow.
    let bare = dir.join(BARE);
    std::fs::create_dir(&bare).unwrap();
    std::fs::write(
        bare.join("requirements.txt"),
        "numpy==2.4.6\npandas==3.1.1\npython-dateutil==4.0.0\ntzdata==2026.6\n",
    )
    .unwrap();
    std::fs::write(bare.join("environment.toml"), "preload = [\"numpy\", \"pandas\"]\n").unwrap();
    // The same packages, and a module to preload that is not there: valid
    // on paper, broken when its zygote starts.
    let unstartable = dir.join("unstartable");
    std::fs::create_dir(&unstartable).unwrap();
    std::fs::copy(bare.join("requirements.txt"), unstartable.join("requirements.txt")).unwrap();
    std::fs::write(
        unstartable.join("environment.toml"),
        "start = \"on_demand\"\npreload = [\"no_such_module\"]\n",
    )
    .unwrap();
    dir
}

/// A model trained and pickled under `legacy-sklearn`'s own Python (as an
/// operator would, outside sluice), in a world-readable dir.
fn pickle_model(python: &Path, models: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "import pickle\nfrom sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\n\
         X, y = load_iris(return_X_y=True, as_frame=True)\n\
         X.columns = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width']\n\
         m = LogisticRegression(max_iter=500).fit(X, y)\n\
         pickle.dump(m, open({:?}, 'wb'))\n",
        models.join("iris.pkl").display().to_string()
    );
    let out = std::process::Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for p in [models, &models.join("iris.pkl")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(if p == models { 0o755 } else { 0o644 }))
            .unwrap();
    }
}

struct Setup {
    server: Server,
    models: PathBuf,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let models = tmp("models");
        let envs_dir = environments_dir(&models);
        let mut envs =
            Environments::new(DataDir::new(common::data_dir()), EnvSpecs::load(Some(&envs_dir)).unwrap());
        envs.progress = false;
        pickle_model(&envs.ensure(LEGACY, false).unwrap().python, &models);
        let policies = common::policies_dir();
        std::fs::write(policies.join("legacy.toml"), format!("environment = {LEGACY:?}\n")).unwrap();
        std::fs::write(policies.join("bare.toml"), format!("environment = {BARE:?}\n")).unwrap();
        std::fs::write(policies.join("unstartable.toml"), "environment = \"unstartable\"\n").unwrap();
        let server =
            start(Options { environments: Some(envs_dir), policies: Some(policies), ..Default::default() });
        Setup { server, models }
    })
}

async fn run_in(policy: &str, sql: &str, code: &str) -> Value {
    let body = json!({"sql_query": sql, "classifier_code": code, "policy": policy});
    let (status, v) = execute(&setup().server.base, body).await;
    assert!(status == 200 || status == 500, "HTTP {status}: {v}");
    v
}

async fn legacy_state() -> Value {
    common::readyz(&setup().server.base).await["environments"][LEGACY].clone()
}

const VERSIONS: &str = r#"
import importlib.util, numpy, pandas, sklearn
def classify(df):
    v = f"{numpy.__version__}/{pandas.__version__}/{sklearn.__version__}/pyarrow={importlib.util.find_spec('pyarrow') is not None}"
    return [v] * len(df)
"#;

#[tokio::test]
async fn each_policy_runs_in_its_own_environment_at_once() {
    let (old, new) = tokio::join!(
        run_in("legacy", "SELECT id FROM iris LIMIT 2", VERSIONS),
        run_in("default", "SELECT id FROM iris LIMIT 2", VERSIONS)
    );
    assert_status(&old, "success");
    assert_status(&new, "success");
    assert_eq!(old["environment"], LEGACY);
    assert_eq!(old["predictions"][0], "1.26.4/2.2.3/1.5.2/pyarrow=False", "{old}");
    assert_eq!(new["predictions"][0], "2.4.6/3.1.1/1.9.1/pyarrow=True", "{new}");
    // Both zygotes up, each with its own versions and rows reader.
    let ready = common::readyz(&setup().server.base).await;
    assert_eq!(ready["ready"], true, "{ready}");
    let legacy = &ready["environments"][LEGACY];
    assert_eq!(legacy["zygote"]["versions"]["scikit-learn"], "1.5.2", "{legacy}");
    assert_eq!(legacy["zygote"]["versions"]["pyarrow"], Value::Null, "{legacy}");
    assert_eq!(legacy["zygote"]["rows_reader"], "arrow_lite", "{legacy}");
    assert_eq!(ready["environments"]["default"]["zygote"]["rows_reader"], "pyarrow");
}

#[tokio::test]
async fn rows_arrive_the_same_without_pyarrow() {
    // Every kind SQLite yields, NULLs included, and the demo's own rows.
    let sql = "SELECT id, sepal_length, species, CAST(NULL AS INTEGER) AS n, x'00ff' AS b, \
               CASE WHEN id % 2 = 0 THEN NULL ELSE id END AS odd, id > 75 AS late FROM iris";
    // (str, not repr: numpy 2 shows its scalars as `np.int64(1)`.)
    let code = "import pandas as pd\ndef classify(df):\n    return ['|'.join(str(None if pd.isna(v) else v) \
                for v in r) for r in df.itertuples(index=False)]\n";
    let (old, new) = tokio::join!(run_in("legacy", sql, code), run_in("default", sql, code));
    assert_status(&old, "success");
    assert_eq!(old["row_count"], 150);
    let (a, b) = (old["predictions"].as_array().unwrap(), new["predictions"].as_array().unwrap());
    assert_eq!(a.len(), 150);
    if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
        panic!("legacy {x} vs default {y}");
    }
    assert_eq!(old["columns"], new["columns"]);
    // And the same column types (pandas 3 calls its text dtype `str`).
    let dtypes = "def classify(df):\n    return [' '.join(str(t).replace('str', 'object') for t in df.dtypes)] * len(df)\n";
    let (old, new) = tokio::join!(run_in("legacy", sql, dtypes), run_in("default", sql, dtypes));
    assert_eq!(old["predictions"][0], new["predictions"][0], "{old}\n{new}");
}

#[tokio::test]
async fn a_model_pickled_under_an_environment_loads_there_and_only_its_paths_are_readable() {
    let path = setup().models.join("iris.pkl").display().to_string();
    let code = format!(
        "import pickle\ndef classify(df):\n    m = pickle.load(open({path:?}, 'rb'))\n    \
         X = df[['sepal_length', 'sepal_width', 'petal_length', 'petal_width']]\n    \
         return [int(p) for p in m.predict(X)]\n"
    );
    let v = run_in("legacy", "SELECT * FROM iris ORDER BY id", &code).await;
    assert_status(&v, "success");
    let species = ["setosa", "versicolor", "virginica"];
    let rows = run_in(
        "legacy",
        "SELECT species FROM iris ORDER BY id",
        "def classify(df):\n    return list(df['species'])\n",
    )
    .await;
    let right = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(rows["predictions"].as_array().unwrap())
        .filter(|(p, s)| species[p.as_u64().unwrap() as usize] == s.as_str().unwrap())
        .count();
    assert!(right >= 140, "{right}/150 right: {v}");
    // The models dir is the legacy environment's read path, not the
    // default's: there the same open is refused by the sandbox.
    let v = run_in("default", "SELECT * FROM iris LIMIT 1", &code).await;
    assert_status(&v, "security_violation");
    assert_eq!(v["error"]["type"], "PermissionError", "{v}");
}

#[tokio::test]
async fn an_on_demand_environment_stops_when_idle_and_starts_again() {
    // Not started with the server: only when a request needs it (another
    // test may have started it already).
    let ok = "def classify(df):\n    return [0] * len(df)\n";
    assert_status(&run_in("legacy", "SELECT id FROM iris LIMIT 1", ok).await, "success");
    let state = legacy_state().await;
    assert_eq!(state["alive"], true, "{state}");
    assert_eq!(state["start"], "on_demand");
    // Idle for longer than its idle_stop (other tests' requests keep it up:
    // wait for a quiet moment, bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let state = legacy_state().await;
        if state["alive"] == false {
            assert!(state["state"].as_str().unwrap().contains("first request"), "{state}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never stopped: {state}");
    }
    // Still ready (a stopped on-demand environment is as it should be);
    // the next request starts it again.
    let ready = common::readyz(&setup().server.base).await;
    assert_eq!(ready["ready"], true, "{ready}");
    let text = metrics().await;
    assert!(text.contains(&format!("sluice_environment_up{{environment=\"{LEGACY}\"}} 0\n")), "{text}");
    assert!(text.contains("sluice_environment_up{environment=\"default\"} 1\n"), "{text}");
    let v = run_in("legacy", "SELECT id FROM iris LIMIT 1", VERSIONS).await;
    assert_status(&v, "success");
    assert_eq!(legacy_state().await["alive"], true);
    let text = metrics().await;
    assert!(text.contains(&format!("sluice_environment_up{{environment=\"{LEGACY}\"}} 1\n")), "{text}");
    let rss = format!("sluice_environment_rss_bytes{{environment=\"{LEGACY}\"}} ");
    let line = text.lines().find(|l| l.starts_with(&rss)).unwrap();
    assert!(line[rss.len()..].parse::<f64>().unwrap() > 50e6, "{line}");
}

async fn metrics() -> String {
    let url = format!("{}/metrics", setup().server.base);
    let r = common::client().get(url).send().await.unwrap();
    r.text().await.unwrap()
}

#[tokio::test]
async fn an_environment_without_scikit_learn_or_pyarrow_still_classifies() {
    let code = "import pandas as pd\ndef classify(df):\n    return ['big' if x > 5.8 else 'small' for x in df['sepal_length']]\n";
    let v = run_in("bare", "SELECT * FROM iris ORDER BY id", code).await;
    assert_status(&v, "success");
    assert_eq!(v["environment"], BARE);
    assert_eq!(v["predictions"][0], "small");
    // Its own packages only: scikit-learn is not there (an ordinary
    // ImportError for the caller, with the line).
    let v =
        run_in("bare", "SELECT id FROM iris LIMIT 1", "import sklearn\ndef classify(df):\n    return [0]\n")
            .await;
    assert_status(&v, "runtime_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("No module named 'sklearn'"), "{v}");
    let ready = common::readyz(&setup().server.base).await;
    let z = &ready["environments"][BARE]["zygote"];
    assert_eq!(z["versions"]["pandas"], "3.1.1", "{z}");
    assert_eq!(z["versions"]["scikit-learn"], Value::Null, "{z}");
    assert_eq!(z["rows_reader"], "arrow_lite", "{z}");
}

#[tokio::test]
async fn an_environment_that_cannot_start_is_named_and_the_others_serve_on() {
    // On demand: the server started without it; its first request finds it
    // broken and says that retrying will not help; one right after is told
    // when the next start is (starts are spaced out).
    let code = "def classify(df):\n    return [0]\n";
    let v = run_in("unstartable", "SELECT id FROM iris LIMIT 1", code).await;
    assert_status(&v, "internal_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("environment `unstartable`") && message.contains("retrying will not help"),
        "{message}"
    );
    let v = run_in("unstartable", "SELECT id FROM iris LIMIT 1", code).await;
    assert_status(&v, "internal_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("environment `unstartable`")
            && (message.contains("next attempt in") || message.contains("retrying will not help")),
        "{message}"
    );
    let v = run_in("default", "SELECT id FROM iris LIMIT 1", "def classify(df):\n    return [0]\n").await;
    assert_status(&v, "success");
    let ready = common::readyz(&setup().server.base).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["environments"]["unstartable"]["alive"], false, "{ready}");
}
