//! What `sluice env list` and `env info` show: each environment's
//! definition and, once built, its Python and every resolved package.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use super::{EnvError, EnvSpec, Environments, Settings, io, read_marker, requirement_lines};

/// One environment as `sluice env list` / `env info` show it.
#[derive(Debug, Serialize)]
pub struct EnvStatus {
    pub name: String,
    pub source: String,
    pub hash: String,
    pub built: bool,
    pub dir: PathBuf,
    /// The pinned requirements.
    pub requirements: Vec<String>,
    /// Once built: every installed distribution and the Python version.
    pub installed: Option<Vec<String>>,
    pub python_version: Option<String>,
    pub settings: Settings,
}

impl Environments {
    /// Every known environment and whether its current version is built.
    pub fn list(&self) -> Result<Vec<EnvStatus>, EnvError> {
        self.specs.iter().map(|spec| self.status(spec)).collect()
    }

    /// One environment: its definition and, once built, what it holds.
    pub fn info(&self, name: &str) -> Result<EnvStatus, EnvError> {
        self.status(self.specs.get(name)?)
    }

    fn status(&self, spec: &EnvSpec) -> Result<EnvStatus, EnvError> {
        let (dir, hash) = self.location(spec)?;
        let built = read_marker(&dir);
        let (python_version, installed) = match &built {
            // Markers written before sluice recorded packages: ask the venv.
            Some(env) if env.packages.is_empty() => {
                installed(&env.python).map(|(v, p)| (Some(v), Some(p))).unwrap_or((None, None))
            }
            Some(env) => (Some(env.python_version.clone()), Some(env.packages.clone())),
            None => (None, None),
        };
        Ok(EnvStatus {
            name: spec.name.clone(),
            source: spec.source.clone(),
            hash,
            built: built.is_some(),
            dir,
            requirements: requirement_lines(&spec.requirements),
            installed,
            python_version,
            settings: spec.settings.clone(),
        })
    }
}

/// The Python version of a venv's interpreter and every distribution
/// installed in it (`name==version`, sorted).
pub(super) fn installed(python: &Path) -> Result<(String, Vec<String>), EnvError> {
    const SCRIPT: &str = "import sys, importlib.metadata as m\n\
        print(sys.version.split()[0])\n\
        for d in sorted({d.metadata['Name'].lower(): d.version for d in m.distributions() if d.metadata['Name']}.items()):\n    \
        print(d[0] + '==' + d[1])";
    let out = Command::new(python)
        .args(["-I", "-c", SCRIPT])
        .stdin(Stdio::null())
        .output()
        .map_err(io("running", python))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(String::from);
    match (out.status.success(), lines.next()) {
        (true, Some(version)) => Ok((version, lines.collect())),
        _ => Err(EnvError::Io {
            what: "listing the packages of",
            path: python.into(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }),
    }
}
