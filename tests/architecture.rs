//! The shape the code keeps (ARCHITECTURE.md): data flows one way between
//! the server's top-level modules (no import cycle), no source file grows
//! past about 400 lines, and `unsafe` lives only in the sandbox crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Lines a source file may have.
const MAX_LINES: usize = 450;

fn files(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.ends_with("node_modules") && !p.ends_with("target") {
                files(&p, ext, out);
            }
        } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| ext.contains(&x)) {
            out.push(p);
        }
    }
}

/// The top-level modules each top-level module of `src/` names as
/// `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut all = Vec::new();
    files(&src, &["rs"], &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in all {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b};`: the first name of each item.
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(|item| item.trim()).collect()
            } else {
                vec![rest]
            };
            for n in names {
                let name: String = n.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = module_graph();
    assert!(graph.contains_key("app") && graph.contains_key("http"), "{graph:?}");
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} → {m}", path[i..].join(" → "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    // The doors sit on top: each may name only the doors after it in this
    // list (`sluice serve` starts the HTTP server, which serves MCP), and
    // nothing below them names any.
    let doors = ["cli", "http", "mcp"];
    for (m, deps) in &graph {
        let after: &[&str] = match doors.iter().position(|d| d == m) {
            Some(i) => &doors[i + 1..],
            None => &[],
        };
        for d in doors {
            assert!(d == m || !deps.contains(d) || after.contains(&d), "`{m}` names the door `{d}`");
        }
    }
}

#[test]
fn no_source_file_is_over_the_limit() {
    let mut all = Vec::new();
    for dir in ["src", "sandbox/src", "sandbox/python", "sql-guard/src", "sql-guard/tests", "tests", "bench"]
    {
        files(&Path::new(ROOT).join(dir), &["rs", "py"], &mut all);
    }
    assert!(all.len() > 50, "found only {} files", all.len());
    let long: Vec<String> = all
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.strip_prefix(ROOT).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines; split along a seam: {long:?}");
}

#[test]
fn unsafe_code_only_in_the_sandbox_crate() {
    let lib = std::fs::read_to_string(Path::new(ROOT).join("src/lib.rs")).unwrap();
    assert!(lib.contains("#![forbid(unsafe_code)]"));
    let sandbox = std::fs::read_to_string(Path::new(ROOT).join("sandbox/src/lib.rs")).unwrap();
    assert!(sandbox.contains("#![deny(clippy::undocumented_unsafe_blocks)]"));
    let mut guard = Vec::new();
    files(&Path::new(ROOT).join("sql-guard/src"), &["rs"], &mut guard);
    for f in guard {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("unsafe {") && !text.contains("unsafe fn"), "{}", f.display());
    }
}
