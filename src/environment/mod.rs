//! Python environments: virtualenvs built with `uv` under the data dir,
//! one per (name, requirements, Python), so that editing a requirements
//! file or changing Python builds a new one. What environments exist is
//! `spec`'s business (the built-in `default`, the operator's folders).

mod pins;
mod spec;
mod status;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::DataDir;
pub use spec::{EnvSpec, EnvSpecs, Settings, Start};
pub use status::EnvStatus;
use status::installed;

/// The uv release bootstrapped from PyPI when none is on PATH.
const UV_VERSION: &str = "0.13.9";
const MARKER: &str = "sluice-env.json";

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("unknown environment `{name}`; known: {known}")]
    Unknown { name: String, known: String },
    #[error("finding the host Python (`{python}`): {message}")]
    HostPython { python: String, message: String },
    #[error("installing uv into {dir} with pip failed: {message}")]
    Bootstrap { dir: PathBuf, message: String },
    #[error("building environment `{name}` failed{package}: {step} exited with {status}\n{output}")]
    Build { name: String, package: String, step: &'static str, status: String, output: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{file}: key `{key}`: {problem}")]
    Invalid { file: String, key: &'static str, problem: String },
    #[error(
        "environment `{name}`: uv installed packages its requirements.txt does not pin (dependencies of \
         the pinned ones); add these lines so it builds the same every time:\n{packages}"
    )]
    Unpinned { name: String, packages: String },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
}

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EnvError {
    let path = path.to_path_buf();
    move |source| EnvError::Io { what, path, source }
}

/// A built environment (its marker file holds all but `settings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    pub hash: String,
    pub dir: PathBuf,
    pub python: PathBuf,
    pub python_version: String,
    /// Every installed distribution, `name==version`, as resolved.
    #[serde(default)]
    pub packages: Vec<String>,
    /// How it is served: from its definition, not the marker.
    #[serde(skip)]
    pub settings: Settings,
}

pub struct Environments {
    data: DataDir,
    specs: EnvSpecs,
    host_python: String,
    /// Print progress to stderr (the CLI and `serve`); tests keep it quiet.
    pub progress: bool,
}

impl Environments {
    pub fn new(data: DataDir, specs: EnvSpecs) -> Self {
        let host_python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
        Self { data, specs, host_python, progress: true }
    }

    pub fn specs(&self) -> &EnvSpecs {
        &self.specs
    }

    /// The built environment `name`, building it first if it is missing or
    /// stale (or `force`). Blocks; concurrent callers wait on a file lock.
    pub fn ensure(&self, name: &str, force: bool) -> Result<Environment, EnvError> {
        let spec = self.specs.get(name)?.clone();
        self.build(&spec, force)
    }

    /// `ensure` for an explicit requirements text and default settings (the
    /// tests use it for small and broken environments).
    pub fn ensure_with(&self, name: &str, requirements: &str, force: bool) -> Result<Environment, EnvError> {
        let spec = EnvSpec {
            name: name.into(),
            source: "<test>".into(),
            requirements: requirements.into(),
            settings: Settings::default(),
            all_pinned: false,
        };
        self.build(&spec, force)
    }

    /// Where `spec` is (or would be) built, and its hash.
    pub(super) fn location(&self, spec: &EnvSpec) -> Result<(PathBuf, String), EnvError> {
        let hash = match &spec.settings.python {
            None => {
                let (host_exe, host_version) = self.host_python()?;
                env_hash(&spec.requirements, host_exe.as_os_str().as_encoded_bytes(), &host_version)
            }
            // uv finds (or fetches) the interpreter: the request is its identity.
            Some(p) => env_hash(&spec.requirements, format!("uv:{p}").as_bytes(), ""),
        };
        Ok((self.data.environments().join(format!("{}-{hash}", spec.name)), hash))
    }

    fn build(&self, spec: &EnvSpec, force: bool) -> Result<Environment, EnvError> {
        let (name, requirements) = (spec.name.as_str(), spec.requirements.as_str());
        let (dir, hash) = self.location(spec)?;
        let with_settings = |mut env: Environment| {
            env.settings = spec.settings.clone();
            env
        };
        let root = self.data.environments();
        std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
        if !force && let Some(env) = read_marker(&dir) {
            return Ok(with_settings(env));
        }

        let lock_path = root.join(format!("{name}.lock"));
        let lock_file = std::fs::File::create(&lock_path).map_err(io("creating", &lock_path))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| EnvError::Io { what: "locking", path: lock_path.clone(), source: e.into() })?;
        // Someone else may have built it while we waited.
        if !force && let Some(env) = read_marker(&dir) {
            return Ok(with_settings(env));
        }

        let t0 = std::time::Instant::now();
        let n_packages = requirement_names(requirements).len();
        self.say(&format!(
            "building Python environment `{name}` ({n_packages} packages) in {}",
            dir.display()
        ));
        let uv = self.uv()?;
        let tmp = root.join(format!(".{name}-{hash}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        let req_path = root.join(format!(".{name}-{hash}.requirements.txt"));
        std::fs::write(&req_path, requirements).map_err(io("writing", &req_path))?;

        let python = match &spec.settings.python {
            Some(p) => p.clone().into(),
            None => self.host_python()?.0.into_os_string(),
        };
        self.run_step(
            name,
            requirements,
            "uv venv",
            // No pip/setuptools seeded in (UV_VENV_SEED): every package is a pinned one.
            Command::new(&uv).arg("venv").arg("--python").arg(&python).arg(&tmp).env_remove("UV_VENV_SEED"),
        )?;
        let venv_python = tmp.join("bin/python");
        self.run_step(
            name,
            requirements,
            "uv pip install",
            Command::new(&uv)
                .args(["pip", "install", "--compile-bytecode", "--python"])
                .arg(&venv_python)
                .arg("-r")
                .arg(&req_path),
        )?;
        let _ = std::fs::remove_file(&req_path);
        // Python resolves in the venv before the rename (pyvenv.cfg names
        // the base interpreter, not the venv's path).
        let (python_version, packages) = installed(&venv_python)?;
        if spec.all_pinned {
            let unpinned = pins::unpinned(requirements, &packages);
            if !unpinned.is_empty() {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(EnvError::Unpinned { name: name.into(), packages: unpinned.join("\n") });
            }
        }

        if force {
            let _ = std::fs::remove_dir_all(&dir);
        }
        // A venv's scripts name its own path; the interpreter itself does not
        // (pyvenv.cfg locates the base), so a rename keeps it working.
        std::fs::rename(&tmp, &dir).map_err(io("renaming into place", &dir))?;
        let env = Environment {
            name: name.into(),
            hash,
            python: dir.join("bin/python"),
            dir: dir.clone(),
            python_version,
            packages,
            settings: spec.settings.clone(),
        };
        let marker = dir.join(MARKER);
        let json = serde_json::to_vec_pretty(&env).expect("serializable");
        std::fs::write(&marker, json).map_err(io("writing", &marker))?;
        self.say(&format!("environment `{name}` ready in {:.1} s", t0.elapsed().as_secs_f64()));
        Ok(env)
    }

    fn say(&self, msg: &str) {
        if self.progress {
            eprintln!("sluice: {msg}");
        }
    }

    /// The host interpreter's real path and version.
    fn host_python(&self) -> Result<(PathBuf, String), EnvError> {
        let out = Command::new(&self.host_python)
            .args(["-c", "import sys; print(sys.executable); print(sys.version.split()[0])"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| EnvError::HostPython {
                python: self.host_python.clone(),
                message: format!("{e} (set SLUICE_PYTHON to a Python 3.10+ interpreter)"),
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        match (out.status.success(), lines.next(), lines.next()) {
            (true, Some(exe), Some(ver)) => Ok((PathBuf::from(exe), ver.to_string())),
            _ => Err(EnvError::HostPython {
                python: self.host_python.clone(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }),
        }
    }

    /// `uv` from PATH, else the copy bootstrapped into the data dir.
    fn uv(&self) -> Result<PathBuf, EnvError> {
        if let Ok(uv) = std::env::var("SLUICE_UV") {
            return Ok(uv.into());
        }
        if Command::new("uv")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok("uv".into());
        }
        let dir = self.data.bootstrap().join("uv");
        let uv = dir.join("bin/uv");
        if uv.exists() {
            return Ok(uv);
        }
        self.say(&format!("uv not found: installing uv {UV_VERSION} from PyPI into {}", dir.display()));
        let out = Command::new(&self.host_python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--target",
            ])
            .arg(&dir)
            .arg(format!("uv=={UV_VERSION}"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| EnvError::Bootstrap { dir: dir.clone(), message: e.to_string() })?;
        if !out.status.success() || !uv.exists() {
            return Err(EnvError::Bootstrap {
                dir,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(uv)
    }

    /// Run one build step, echoing its output as progress and keeping the
    /// tail for the error message.
    fn run_step(
        &self,
        name: &str,
        requirements: &str,
        step: &'static str,
        cmd: &mut Command,
    ) -> Result<(), EnvError> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // uv prints its progress to stderr; no colours, no spinner.
        cmd.env("NO_COLOR", "1").env("UV_NO_PROGRESS", "1");
        // Trust the platform's certificate store, as pip does: hosts behind
        // a TLS-inspecting proxy or a private index have their CA there.
        if std::env::var_os("UV_SYSTEM_CERTS").is_none() {
            cmd.env("UV_SYSTEM_CERTS", "1");
        }
        let mut child = cmd.spawn().map_err(|e| EnvError::Build {
            name: name.into(),
            package: String::new(),
            step,
            status: "an error before it started".into(),
            output: e.to_string(),
        })?;
        let mut tail: Vec<String> = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if self.progress {
                    let _ = writeln!(std::io::stderr(), "  {line}");
                }
                tail.push(line);
                if tail.len() > 60 {
                    tail.remove(0);
                }
            }
        }
        let status = child.wait().map_err(io("waiting for", Path::new(step)))?;
        if status.success() {
            return Ok(());
        }
        let output = tail.join("\n");
        let package =
            guilty_package(requirements, &output).map(|p| format!(" (package `{p}`)")).unwrap_or_default();
        Err(EnvError::Build { name: name.into(), package, step, status: status.to_string(), output })
    }
}

pub(super) fn read_marker(dir: &Path) -> Option<Environment> {
    let text = std::fs::read(dir.join(MARKER)).ok()?;
    let env: Environment = serde_json::from_slice(&text).ok()?;
    env.python.exists().then_some(env)
}

fn env_hash(requirements: &str, python: &[u8], host_version: &str) -> String {
    let mut h = Sha256::new();
    h.update(requirements.as_bytes());
    h.update([0]);
    h.update(python);
    h.update([0]);
    h.update(host_version.as_bytes());
    hex::encode(&h.finalize()[..8])
}

pub(super) fn requirement_lines(requirements: &str) -> Vec<String> {
    requirements
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn requirement_names(requirements: &str) -> Vec<String> {
    requirement_lines(requirements)
        .iter()
        .map(|l| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The requirement the installer's message is about, if it names one.
fn guilty_package(requirements: &str, output: &str) -> Option<String> {
    let out = output.to_ascii_lowercase();
    let lines = requirement_lines(requirements);
    requirement_names(requirements)
        .into_iter()
        .zip(lines)
        .find(|(name, _)| out.contains(name.as_str()) || out.contains(&name.replace('-', "_")))
        .map(|(_, line)| line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_requirements_and_python() {
        let a = env_hash("numpy==1", b"/usr/bin/python3", "3.11.7");
        assert_ne!(a, env_hash("numpy==2", b"/usr/bin/python3", "3.11.7"));
        assert_ne!(a, env_hash("numpy==1", b"/usr/bin/python3", "3.12.0"));
        assert_ne!(a, env_hash("numpy==1", b"uv:3.11", ""));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn failing_package_is_named() {
        let req = "numpy==2.4.6\nscikit-learn==99.0\n";
        let out = "× No solution found when resolving dependencies:\n╰─▶ Because there is no version of scikit-learn==99.0 ...";
        assert_eq!(guilty_package(req, out).as_deref(), Some("scikit-learn==99.0"));
        assert_eq!(guilty_package(req, "network down"), None);
    }
}
