"""Create sluice's demo SQLite database from the datasets that ship inside
scikit-learn (no download): iris, wine and breast_cancer.

Usage: python make_demo.py OUT_PATH  (OUT_PATH must not exist yet)
"""

import re
import sqlite3
import sys

from sklearn import datasets


def snake(name):
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip().lower())
    return name.strip("_")


def create(con, table, bunch, feature_names, with_id, target_names):
    cols = [snake(f) for f in feature_names]
    defs = (["id INTEGER PRIMARY KEY"] if with_id else []) + [f"{c} REAL NOT NULL" for c in cols]
    if target_names is None:
        defs.append("species TEXT NOT NULL")
    else:
        defs += ["target INTEGER NOT NULL", "target_name TEXT NOT NULL"]
    con.execute(f"CREATE TABLE {table} ({', '.join(defs)})")
    rows = []
    for i, (x, y) in enumerate(zip(bunch.data.tolist(), bunch.target.tolist()), start=1):
        values = ([i] if with_id else []) + [float(v) for v in x]
        if target_names is None:
            values.append(str(bunch.target_names[y]))
        else:
            values += [int(y), str(target_names[y])]
        rows.append(values)
    marks = ", ".join("?" * len(rows[0]))
    con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    return len(rows)


def main(out):
    con = sqlite3.connect(out)
    iris = datasets.load_iris()
    # sklearn names them "sepal length (cm)": the demo uses sepal_length.
    iris_cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    n_iris = create(con, "iris", iris, iris_cols, True, None)
    wine = datasets.load_wine()
    n_wine = create(con, "wine", wine, wine.feature_names, False, wine.target_names)
    bc = datasets.load_breast_cancer()
    n_bc = create(con, "breast_cancer", bc, bc.feature_names, False, bc.target_names)
    con.commit()
    con.close()
    print(f"iris {n_iris}, wine {n_wine}, breast_cancer {n_bc}")


if __name__ == "__main__":
    main(sys.argv[1])
