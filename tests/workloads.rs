//! Classifiers as people and LLMs write them must work under the full
//! sandbox (seccomp, landlock, namespaces, limits). The top complaint about
//! other Python sandboxes is `operation not permitted` on `import pandas`;
//! each case here is a real workload that must succeed.

mod common;

use common::{assert_status, run};

const FEATURES: &str = "[\"sepal_length\", \"sepal_width\", \"petal_length\", \"petal_width\"]";

async fn ok(name: &str, sql: &str, code: &str) {
    let v = run(sql, code).await;
    assert_eq!(v["status"], "success", "{name}: {}", serde_json::to_string_pretty(&v).unwrap());
    assert_status(&v, "success");
}

#[tokio::test]
async fn pandas_group_bys_and_dates() {
    ok(
        "groupby",
        "SELECT * FROM iris",
        r#"
import pandas as pd
def classify(df):
    means = df.groupby("species")["petal_length"].transform("mean")
    stats = df.groupby("species").agg(["mean", "std", "max"])
    assert stats.shape[0] == 3
    ts = pd.Timestamp("2024-03-01 12:00", tz="Europe/Paris").tz_convert("UTC")
    pd.date_range("2024-01-01", periods=3, freq="D")
    return (df["petal_length"] > means).map({True: "above", False: "below"})
"#,
    )
    .await;
}

#[tokio::test]
async fn numpy_linear_algebra_and_random() {
    ok(
        "linalg",
        "SELECT * FROM iris",
        &format!(
            r#"
import numpy as np
def classify(df):
    X = df[{FEATURES}].to_numpy()
    u, s, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    cov_inv = np.linalg.inv(np.cov(X.T))
    rng = np.random.default_rng(0)
    noise = rng.normal(size=len(X))
    proj = (X - X.mean(0)) @ vt[0]
    return np.where(proj + 0 * noise > 0, "pos", "neg")
"#
        ),
    )
    .await;
}

#[tokio::test]
async fn sklearn_pipeline_forest_cross_validation() {
    ok(
        "pipeline",
        "SELECT * FROM wine",
        r#"
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.linear_model import LogisticRegression
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score, GridSearchCV
def classify(df):
    X = df.drop(columns=["target", "target_name"])
    y = df["target_name"]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    print("lr cv", cross_val_score(pipe, X, y, cv=3).mean())
    grid = GridSearchCV(RandomForestClassifier(random_state=0), {"n_estimators": [5, 10]}, cv=3, n_jobs=-1)
    grid.fit(X, y)
    return grid.predict(X)
"#,
    )
    .await;
}

#[tokio::test]
async fn kmeans_mlp_and_neighbours() {
    ok(
        "kmeans/mlp",
        "SELECT * FROM iris",
        &format!(
            r#"
import warnings
from sklearn.cluster import KMeans
from sklearn.neural_network import MLPClassifier
from sklearn.neighbors import KNeighborsClassifier
def classify(df):
    X = df[{FEATURES}]
    km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0).fit(X, df["species"])
    knn = KNeighborsClassifier(n_neighbors=3, n_jobs=-1).fit(X, df["species"])
    return [f"{{a}}-{{b}}" for a, b in zip(km.labels_, knn.predict(X))]
"#
        ),
    )
    .await;
}

#[tokio::test]
async fn scipy_stats_and_text_features() {
    ok(
        "scipy/text",
        "SELECT * FROM breast_cancer",
        r#"
import re
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer
def classify(df):
    z = stats.zscore(df["mean_radius"])
    t = stats.ttest_ind(df["mean_area"][df.target == 0], df["mean_area"][df.target == 1])
    words = [re.sub(r"[^a-z]", " ", n.lower()) for n in df["target_name"]]
    tfidf = TfidfVectorizer().fit_transform(words)
    assert tfidf.shape[0] == len(df) and t.pvalue < 0.05
    return ["outlier" if abs(v) > 3 else "normal" for v in z]
"#,
    )
    .await;
}

#[tokio::test]
async fn standard_library_odds_and_ends() {
    ok(
        "stdlib",
        "SELECT * FROM iris LIMIT 20",
        r#"
import collections, datetime, decimal, hashlib, io, json, math, pickle, random, statistics, tempfile, time, os
import sqlite3, csv, zoneinfo
def classify(df):
    random.seed(1)
    counts = collections.Counter(df["species"])
    json.dumps({"c": counts})
    pickle.loads(pickle.dumps(df))
    hashlib.sha256(b"x").hexdigest()
    decimal.Decimal("1.10") + decimal.Decimal("2.2")
    statistics.mean(df["sepal_length"])
    datetime.datetime.now(zoneinfo.ZoneInfo("America/New_York"))
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.csv")
        df.to_csv(p)
        back = __import__("pandas").read_csv(p)
    mem = sqlite3.connect(":memory:")
    mem.execute("create table t(x)")
    buf = io.StringIO()
    csv.writer(buf).writerow([1, 2])
    time.sleep(0.01)
    return [math.floor(x) for x in back["sepal_length"]]
"#,
    )
    .await;
}
