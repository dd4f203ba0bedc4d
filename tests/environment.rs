//! Environment builds with the real uv and PyPI: keyed by requirements,
//! built once under concurrency, failures name the package.

mod common;

use sluice::config::DataDir;
use sluice::environment::{EnvError, Environments};

fn envs() -> Environments {
    let mut e = Environments::new(DataDir::new(common::data_dir()), sluice::environment::EnvSpecs::builtin());
    e.progress = false;
    e
}

#[test]
fn editing_requirements_builds_a_new_environment_once() {
    let a = envs().ensure_with("tiny", "six==1.16.0\n", false).unwrap();
    let b = envs().ensure_with("tiny", "six==1.17.0\n", false).unwrap();
    assert_ne!(a.hash, b.hash);
    assert_ne!(a.dir, b.dir);
    let out = std::process::Command::new(&b.python)
        .args(["-c", "import six; print(six.__version__)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.17.0");
    // Unchanged requirements: the same environment, not rebuilt.
    let marker = std::fs::metadata(b.dir.join("sluice-env.json")).unwrap().modified().unwrap();
    let again = envs().ensure_with("tiny", "six==1.17.0\n", false).unwrap();
    assert_eq!(again.dir, b.dir);
    assert_eq!(std::fs::metadata(b.dir.join("sluice-env.json")).unwrap().modified().unwrap(), marker);
}

#[test]
fn concurrent_builds_wait_for_each_other() {
    let req = "six==1.15.0\n";
    let dir = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..3).map(|_| s.spawn(|| envs().ensure_with("race", req, false).unwrap())).collect();
        let dirs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap().dir).collect();
        assert!(dirs.windows(2).all(|w| w[0] == w[1]));
        dirs[0].clone()
    });
    assert!(dir.join("bin/python").exists());
}

#[test]
fn a_failed_build_names_the_package_and_shows_uv_output() {
    let err = envs().ensure_with("broken", "six==1.16.0\nscikit-learn==99.0.0\n", false).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EnvError::Build { .. }), "{text}");
    assert!(text.contains("package `scikit-learn==99.0.0`"), "{text}");
    assert!(text.contains("uv pip install exited"), "{text}");
    assert!(text.to_lowercase().contains("no solution") || text.contains("99.0.0"), "uv's own words: {text}");
    // Nothing half-built is left where a good build would go.
    let leftovers: Vec<_> = std::fs::read_dir(common::data_dir().join("environments"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("broken-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn an_environment_may_name_its_python_and_records_what_it_resolved() {
    let root =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("py-envs-{}", std::process::id()));
    let dir = root.join("pinned-python");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("requirements.txt"), "six==1.17.0\n").unwrap();
    // uv finds this interpreter on the host (it would download one it cannot find).
    let version = std::process::Command::new("python3")
        .args(["-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    std::fs::write(dir.join("environment.toml"), format!("python = {version:?}\n")).unwrap();
    let mut e = Environments::new(
        DataDir::new(common::data_dir()),
        sluice::environment::EnvSpecs::load(Some(&root)).unwrap(),
    );
    e.progress = false;
    let env = e.ensure("pinned-python", false).unwrap();
    assert!(env.python_version.starts_with(&format!("{version}.")), "{}", env.python_version);
    assert!(env.packages.contains(&"six==1.17.0".to_string()), "{:?}", env.packages);
    // Naming the Python is part of the identity: not the host-Python build.
    assert_ne!(env.hash, envs().ensure_with("pinned-python", "six==1.17.0\n", false).unwrap().hash);
    let info = e.info("pinned-python").unwrap();
    assert!(info.built && info.installed.unwrap().contains(&"six==1.17.0".to_string()));
}
