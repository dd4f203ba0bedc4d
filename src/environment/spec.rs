//! Environment definitions: the built-in `default` and the operator's own,
//! one folder each under `--environments DIR` (`SLUICE_ENVIRONMENTS`): a
//! pinned `requirements.txt` and an optional `environment.toml`. Validated
//! at start-up; a bad folder stops sluice with the file, the key and why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::EnvError;
use super::pins::check_pinned;

/// Shipped in the repository and embedded, so an installed binary can
/// build it; a folder of the same name in the operator's directory
/// replaces it.
const BUILTIN: &[(&str, &str)] =
    &[("default", include_str!("../../sandbox/environments/default/requirements.txt"))];

pub const REQUIREMENTS: &str = "requirements.txt";
pub const SETTINGS: &str = "environment.toml";

/// When an environment's zygote runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// With the server; kept up (restarted if it dies).
    #[default]
    Eager,
    /// On the first request that needs it; stopped again after
    /// `idle_stop_s` without requests (if set).
    OnDemand,
}

/// `environment.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    python: Option<String>,
    preload: Option<Vec<String>>,
    #[serde(default = "yes")]
    warm: bool,
    #[serde(default)]
    read_paths: Vec<PathBuf>,
    #[serde(default)]
    start: Start,
    idle_stop_s: Option<u64>,
}

fn yes() -> bool {
    true
}

/// How an environment is built and served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The Python uv builds the venv with (a version such as `3.11`, or an
    /// interpreter's path). `None`: the host's (`SLUICE_PYTHON`, `python3`).
    pub python: Option<String>,
    /// Modules the zygote imports before it forks. `None`: the default
    /// stack's (numpy, pandas, pyarrow, scipy.stats, scikit-learn's usual
    /// estimators), those the environment has.
    pub preload: Option<Vec<String>>,
    /// A tiny fit of the usual estimators in the zygote (those it has) and
    /// a warm-up DataFrame in each pre-forked child, so requests start warm.
    pub warm: bool,
    /// Directories children may read besides the environment and the
    /// interpreter (a model directory, a lexicon), resolved at load time.
    /// Read-only, like the environment.
    pub read_paths: Vec<PathBuf>,
    pub start: Start,
    /// Stop the zygote (and its spare children) after this long without a
    /// request; only for `start = "on_demand"`.
    #[serde(with = "secs")]
    pub idle_stop: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            python: None,
            preload: None,
            warm: true,
            read_paths: Vec::new(),
            start: Start::Eager,
            idle_stop: None,
        }
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_some(&d.map(|d| d.as_secs()))
    }
}

/// One environment as defined.
#[derive(Debug, Clone)]
pub struct EnvSpec {
    pub name: String,
    /// Where it was defined (for messages).
    pub source: String,
    pub requirements: String,
    pub settings: Settings,
    /// Refuse a build that installs a package the requirements do not pin.
    pub all_pinned: bool,
}

/// Every environment sluice knows.
#[derive(Debug, Clone)]
pub struct EnvSpecs {
    by_name: BTreeMap<String, EnvSpec>,
}

impl EnvSpecs {
    /// The built-in environments only.
    pub fn builtin() -> Self {
        let by_name = BUILTIN
            .iter()
            .map(|(name, req)| {
                let spec = EnvSpec {
                    name: name.to_string(),
                    source: format!("<built-in>/environments/{name}"),
                    requirements: req.to_string(),
                    settings: Settings::default(),
                    all_pinned: true,
                };
                (name.to_string(), spec)
            })
            .collect();
        Self { by_name }
    }

    /// The built-in environments plus every folder of `dir` (which replace
    /// built-in ones of the same name).
    pub fn load(dir: Option<&Path>) -> Result<Self, EnvError> {
        let mut specs = Self::builtin();
        let Some(dir) = dir else { return Ok(specs) };
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| EnvError::Io { what, path, source }
        };
        let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io("reading the environments directory", dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        folders.sort();
        for folder in folders {
            let spec = load_folder(&folder)?;
            specs.by_name.insert(spec.name.clone(), spec);
        }
        Ok(specs)
    }

    pub fn get(&self, name: &str) -> Result<&EnvSpec, EnvError> {
        self.by_name.get(name).ok_or_else(|| EnvError::Unknown { name: name.into(), known: self.known() })
    }

    pub fn iter(&self) -> impl Iterator<Item = &EnvSpec> {
        self.by_name.values()
    }

    /// The names, for messages.
    pub fn known(&self) -> String {
        self.by_name.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

fn load_folder(folder: &Path) -> Result<EnvSpec, EnvError> {
    let name = folder.file_name().unwrap_or_default().to_string_lossy().to_string();
    let shown = folder.display().to_string();
    if !valid_name(&name) {
        return Err(invalid(
            &shown,
            "name",
            "environment folder names may use only a-z, 0-9, '-' and '_'".into(),
        ));
    }
    let req_path = folder.join(REQUIREMENTS);
    let requirements = std::fs::read_to_string(&req_path).map_err(|e| {
        invalid(&req_path.display().to_string(), "requirements", format!("{e}: every environment needs one"))
    })?;
    // Editors on some systems start the file with a byte-order mark.
    let requirements = requirements.strip_prefix('\u{feff}').unwrap_or(&requirements).to_string();
    check_pinned(&req_path.display().to_string(), &requirements)?;
    let settings_path = folder.join(SETTINGS);
    let settings = match std::fs::read_to_string(&settings_path) {
        Ok(text) => parse_settings(&settings_path.display().to_string(), &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
        Err(source) => return Err(EnvError::Io { what: "reading", path: settings_path, source }),
    };
    Ok(EnvSpec { name, source: shown, requirements, settings, all_pinned: true })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(super) fn invalid(file: &str, key: &'static str, problem: String) -> EnvError {
    EnvError::Invalid { file: file.into(), key, problem }
}

fn parse_settings(file: &str, text: &str) -> Result<Settings, EnvError> {
    let sf: SettingsFile = toml::from_str(text).map_err(|e| EnvError::Parse {
        file: file.into(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    if let Some(p) = &sf.python {
        let version = p.split('.').all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            && (2..=3).contains(&p.split('.').count());
        if !version && !Path::new(p).is_absolute() {
            return Err(invalid(
                file,
                "python",
                format!("`{p}`: give a version (`3.11`, `3.12.4`) or an interpreter's absolute path"),
            ));
        }
    }
    for m in sf.preload.iter().flatten() {
        let ok = !m.is_empty()
            && m.split('.').all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !ok {
            return Err(invalid(
                file,
                "preload",
                format!("`{m}` is not a module name (e.g. `sklearn.linear_model`)"),
            ));
        }
    }
    let mut read_paths = Vec::new();
    for p in &sf.read_paths {
        if !p.is_absolute() {
            return Err(invalid(file, "read_paths", format!("`{}` is not an absolute path", p.display())));
        }
        // Resolved here (symlinks in it followed once); children get the
        // resolved path.
        let real = p.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                invalid(file, "read_paths", format!("`{}` does not exist", p.display()))
            }
            _ => invalid(file, "read_paths", format!("`{}`: {e}", p.display())),
        })?;
        if !real.is_dir() {
            return Err(invalid(file, "read_paths", format!("`{}` is not a directory", p.display())));
        }
        if real.parent().is_none() {
            return Err(invalid(
                file,
                "read_paths",
                "`/` would expose the whole host; name a directory".into(),
            ));
        }
        if ["/proc", "/sys", "/dev"].iter().any(|k| real.starts_with(k)) {
            return Err(invalid(
                file,
                "read_paths",
                format!(
                    "`{}` is a kernel filesystem (other processes, devices); name a data directory",
                    p.display()
                ),
            ));
        }
        read_paths.push(real);
    }
    if sf.idle_stop_s.is_some() && sf.start != Start::OnDemand {
        return Err(invalid(
            file,
            "idle_stop_s",
            "only an environment with start = \"on_demand\" is stopped when idle (an eager one is kept up)"
                .into(),
        ));
    }
    if sf.idle_stop_s == Some(0) {
        return Err(invalid(file, "idle_stop_s", "give a number of seconds above 0, or leave it out".into()));
    }
    Ok(Settings {
        python: sf.python,
        preload: sf.preload,
        warm: sf.warm,
        read_paths,
        start: sf.start,
        idle_stop: sf.idle_stop_s.map(Duration::from_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, req: &str, settings: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(REQUIREMENTS), req).unwrap();
        if let Some(s) = settings {
            std::fs::write(dir.join(SETTINGS), s).unwrap();
        }
        root
    }

    fn err(name: &str, req: &str, settings: Option<&str>) -> String {
        let root = folder(name, req, settings);
        EnvSpecs::load(Some(root.path())).unwrap_err().to_string()
    }

    #[test]
    fn a_folder_adds_an_environment_beside_the_builtin_one() {
        let root = folder(
            "legacy",
            "numpy==1.26.4\npandas==2.2.3  # old\n",
            Some(
                "start = \"on_demand\"\nidle_stop_s = 60\npreload = [\"sklearn.linear_model\"]\nwarm = false\n",
            ),
        );
        let specs = EnvSpecs::load(Some(root.path())).unwrap();
        assert_eq!(specs.known(), "default, legacy");
        let l = specs.get("legacy").unwrap();
        assert_eq!(l.settings.start, Start::OnDemand);
        assert_eq!(l.settings.idle_stop, Some(Duration::from_secs(60)));
        assert_eq!(l.settings.preload.as_deref(), Some(&["sklearn.linear_model".to_string()][..]));
        assert!(!l.settings.warm);
        assert_eq!(specs.get("default").unwrap().settings, Settings::default());
        let e = specs.get("gpu").unwrap_err().to_string();
        assert!(e.contains("`gpu`") && e.contains("default, legacy"), "{e}");
    }

    #[test]
    fn bad_folders_name_file_key_and_reason() {
        let e = err("Legacy", "numpy==1\n", None);
        assert!(e.contains("Legacy") && e.contains("a-z"), "{e}");
        let e = err("x", "numpy==1.26.4\npandas>=2\n", None);
        assert!(e.contains("requirements.txt") && e.contains("line 2") && e.contains("not pinned"), "{e}");
        let e = err("x", "--index-url http://x\n", None);
        assert!(e.contains("line 1") && e.contains("UV_"), "{e}");
        let e = err("x", "# nothing\n", None);
        assert!(e.contains("no requirements"), "{e}");
        let e = err("x", "numpy==1\n", Some("python = \"latest\"\n"));
        assert!(e.contains("environment.toml") && e.contains("`python`") && e.contains("3.11"), "{e}");
        let e = err("x", "numpy==1\n", Some("preload = [\"os; rm\"]\n"));
        assert!(e.contains("`preload`") && e.contains("module name"), "{e}");
        let e = err("x", "numpy==1\n", Some("read_paths = [\"/nonexistent/models\"]\n"));
        assert!(e.contains("`read_paths`") && e.contains("does not exist"), "{e}");
        let e = err("x", "numpy==1\n", Some("idle_stop_s = 60\n"));
        assert!(e.contains("`idle_stop_s`") && e.contains("on_demand"), "{e}");
        let e = err("x", "numpy==1\n", Some("strat = \"eager\"\n"));
        assert!(e.contains("environment.toml") && e.contains("strat"), "{e}");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("empty")).unwrap();
        let e = EnvSpecs::load(Some(root.path())).unwrap_err().to_string();
        assert!(e.contains("requirements.txt") && e.contains("needs one"), "{e}");
    }

    #[test]
    fn requirements_files_with_a_bom_or_direct_references() {
        let root = folder("x", "\u{feff}numpy==1.26.4\npandas==2.2.3\n", None);
        let specs = EnvSpecs::load(Some(root.path())).unwrap();
        assert!(specs.get("x").unwrap().requirements.starts_with("numpy=="));
        let e = err("x", "numpy @ https://example.org/numpy.whl?v==1\n", None);
        assert!(e.contains("line 1") && e.contains("direct references"), "{e}");
    }

    #[test]
    fn read_paths_are_resolved_directories_not_the_root() {
        let models = tempfile::tempdir().unwrap();
        let link = models.path().join("link");
        std::os::unix::fs::symlink(models.path(), &link).unwrap();
        let root =
            folder("x", "numpy==1\n", Some(&format!("read_paths = [{:?}]\n", link.display().to_string())));
        let specs = EnvSpecs::load(Some(root.path())).unwrap();
        assert_eq!(specs.get("x").unwrap().settings.read_paths, [models.path().canonicalize().unwrap()]);
        let e = err("x", "numpy==1\n", Some("read_paths = [\"/\"]\n"));
        assert!(e.contains("whole host"), "{e}");
        let e = err("x", "numpy==1\n", Some("read_paths = [\"/proc/self\"]\n"));
        assert!(e.contains("kernel filesystem"), "{e}");
        let file = models.path().join("m.pkl");
        std::fs::write(&file, b"x").unwrap();
        let e = err("x", "numpy==1\n", Some(&format!("read_paths = [{:?}]\n", file.display().to_string())));
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn a_folder_named_default_replaces_the_builtin_one() {
        let root = folder("default", "numpy==1.26.4\npandas==2.2.3\n", None);
        let specs = EnvSpecs::load(Some(root.path())).unwrap();
        assert!(specs.get("default").unwrap().requirements.contains("numpy==1.26.4"));
    }

    #[test]
    fn builtin_default_is_pinned() {
        let specs = EnvSpecs::builtin();
        let d = specs.get("default").unwrap();
        check_pinned("default", &d.requirements).unwrap();
        for want in ["numpy", "pandas", "scikit-learn", "pyarrow"] {
            assert!(d.requirements.lines().any(|l| l.starts_with(&format!("{want}=="))), "{want} not pinned");
        }
    }
}
