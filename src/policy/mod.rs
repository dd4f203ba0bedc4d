//! Named policies (`policies/<name>.toml`): limits, table allow-list and
//! environment. Loaded and validated at start-up; a bad file stops the
//! server with the file, the key and the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use sluice_sql_guard::tables::{NamePart, TableAllow, TableRef};

/// The policies shipped in the repository, used when no `--policies` dir is
/// given (so an installed binary works on its own).
const BUILTIN: &[(&str, &str)] = &[("default", include_str!("../../policies/default.toml"))];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policies from {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("{file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {problem}")]
    Invalid { file: String, key: &'static str, problem: String },
    #[error("{file}: policy names may use only a-z, 0-9, '-' and '_'")]
    BadName { file: String },
    #[error("no policy named `default` (looked in {0})")]
    NoDefault(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    description: String,
    #[serde(default = "default_environment")]
    environment: String,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    tables: Tables,
    #[serde(default)]
    sandbox: Sandbox,
    #[serde(default)]
    database: DatabaseRules,
    #[serde(default)]
    output: Output,
}

/// What the caller takes away from a run. Code that sees rows and returns
/// one value per row can always encode the rows in its labels (or print
/// them); these settings bound that channel. The server applies them to
/// what the child returned, so code cannot get around them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    /// `any`: text, numbers, booleans, null; `numbers`: no text labels.
    pub labels: LabelKinds,
    /// Distinct labels at most (0: no limit).
    pub max_distinct_labels: u64,
    /// Bytes of one text label at most (0: no limit).
    pub max_label_bytes: u64,
    /// Return per-row scores (a float per row: 64 bits of channel each).
    pub scores: bool,
    /// Return only `label_counts` (no per-row labels or scores, no
    /// `row_count`).
    pub counts_only: bool,
    /// With `counts_only`: labels held by fewer rows are left out.
    pub min_group_size: u64,
    /// `return`: captured stdout/stderr go back to the caller; `audit`: they
    /// are kept (an excerpt) in the audit record only.
    pub stdout: StdoutMode,
    /// `describe_table` shows sample rows.
    pub describe_samples: bool,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            labels: LabelKinds::Any,
            max_distinct_labels: 0,
            max_label_bytes: 0,
            scores: true,
            counts_only: false,
            min_group_size: 1,
            stdout: StdoutMode::Return,
            describe_samples: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LabelKinds {
    Any,
    Numbers,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StdoutMode {
    Return,
    Audit,
}

/// What this policy demands of the database connection.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseRules {
    /// Refuse to start when the database user could write (table
    /// privileges); otherwise sluice only warns.
    pub require_read_only_role: bool,
    /// PostgreSQL, MySQL/MariaDB: the database role this policy's queries
    /// run as (`SET LOCAL ROLE` / `SET ROLE`), so that the database itself
    /// enforces the table allow-list. Verified at start-up to read exactly
    /// the allowed tables and write nothing.
    pub role: Option<String>,
    /// Refuse to start unless the database itself enforces this policy's
    /// tables and read-only-ness (SQLite always does; PostgreSQL and MySQL
    /// need `role`).
    pub require_role: bool,
}

/// Sandbox layers that may be missing on a host (see `jail::LAYERS`).
pub const DEGRADABLE_LAYERS: &[&str] =
    &["network_namespace", "user_namespace", "mount_namespace", "landlock", "seccomp", "cgroup"];

/// How the child is jailed under this policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    /// `policies/seccomp/<name>.json`.
    pub seccomp_profile: String,
    /// Layers this policy accepts running without, when the host lacks
    /// them. Any other missing layer stops the server.
    pub allow_degraded: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self { seccomp_profile: "default".into(), allow_degraded: vec!["cgroup".into()] }
    }
}

fn default_environment() -> String {
    "default".into()
}

/// Limits of one policy. Units are in the names.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub timeout_s: f64,
    pub max_timeout_s: f64,
    pub memory_mb: u64,
    pub max_memory_mb: u64,
    pub cpu_s: u64,
    pub max_rows: u64,
    /// Bytes of all fetched values together (the server holds them).
    pub max_fetch_bytes: u64,
    pub sql_timeout_s: f64,
    pub max_output_bytes: u64,
    pub max_stdout_bytes: u64,
    pub max_stderr_bytes: u64,
    pub max_open_files: u64,
    pub max_threads: u64,
    pub max_file_size_mb: u64,
    /// All files in the scratch dir together (a tmpfs of this size).
    pub max_scratch_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_s: 30.0,
            max_timeout_s: 120.0,
            memory_mb: 512,
            max_memory_mb: 4096,
            cpu_s: 120,
            max_rows: 100_000,
            max_fetch_bytes: 256 * 1024 * 1024,
            sql_timeout_s: 10.0,
            max_output_bytes: 8 * 1024 * 1024,
            max_stdout_bytes: 64 * 1024,
            max_stderr_bytes: 64 * 1024,
            max_open_files: 256,
            max_threads: 256,
            max_file_size_mb: 64,
            max_scratch_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Tables {
    allow: Vec<String>,
}

impl Default for Tables {
    fn default() -> Self {
        Self { allow: vec!["*".into()] }
    }
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub environment: String,
    pub limits: Limits,
    pub tables: TableAllow,
    pub sandbox: Sandbox,
    pub database: DatabaseRules,
    pub output: Output,
}

/// Limits for one request after the request's own asks are clamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimits {
    pub timeout_s: f64,
    pub memory_mb: u64,
    pub cpu_s: u64,
}

/// A request asked for more than the policy allows (HTTP 400).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LimitError {
    pub field: &'static str,
    pub message: String,
}

impl Policy {
    pub fn request_limits(
        &self,
        timeout: Option<f64>,
        max_memory: Option<u64>,
    ) -> Result<RequestLimits, LimitError> {
        let l = &self.limits;
        let timeout_s = match timeout {
            None => l.timeout_s,
            Some(t) if t.is_nan() || t <= 0.0 || t.is_infinite() => {
                return Err(LimitError {
                    field: "timeout",
                    message: format!("must be a positive number of seconds, got {t}"),
                });
            }
            Some(t) if t > l.max_timeout_s => {
                return Err(LimitError {
                    field: "timeout",
                    message: format!(
                        "{t} s is over the maximum of policy `{}` ({} s); ask for at most {} s",
                        self.name, l.max_timeout_s, l.max_timeout_s
                    ),
                });
            }
            Some(t) => t,
        };
        let memory_mb = match max_memory {
            None => l.memory_mb,
            Some(0) => {
                return Err(LimitError {
                    field: "max_memory",
                    message: "must be a positive number of MB, got 0".into(),
                });
            }
            Some(m) if m > l.max_memory_mb => {
                return Err(LimitError {
                    field: "max_memory",
                    message: format!(
                        "{m} MB is over the maximum of policy `{}` ({} MB); ask for at most {} MB",
                        self.name, l.max_memory_mb, l.max_memory_mb
                    ),
                });
            }
            Some(m) => m,
        };
        Ok(RequestLimits { timeout_s, memory_mb, cpu_s: l.cpu_s })
    }
}

/// All loaded policies, by name.
#[derive(Debug, Clone)]
pub struct Policies {
    by_name: BTreeMap<String, Policy>,
}

impl Policies {
    /// Load every `*.toml` in `dir`, or the built-in policies when `None`.
    pub fn load(dir: Option<&Path>) -> Result<Self, PolicyError> {
        let mut by_name = BTreeMap::new();
        match dir {
            None => {
                for (name, text) in BUILTIN {
                    let file = format!("<built-in>/policies/{name}.toml");
                    by_name.insert(name.to_string(), parse(name, &file, text)?);
                }
            }
            Some(dir) => {
                let entries = std::fs::read_dir(dir)
                    .map_err(|source| PolicyError::ReadDir { dir: dir.into(), source })?;
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                for path in paths {
                    let file = path.display().to_string();
                    let name = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
                    let text = std::fs::read_to_string(&path)
                        .map_err(|source| PolicyError::Read { file: file.clone(), source })?;
                    by_name.insert(name.clone(), parse(&name, &file, &text)?);
                }
                if !by_name.contains_key("default") {
                    return Err(PolicyError::NoDefault(dir.display().to_string()));
                }
            }
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.by_name.values()
    }
}

mod validate;

use validate::parse;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_default_matches_the_documented_values() {
        let p = Policies::load(None).unwrap();
        let d = p.get("default").unwrap();
        assert_eq!(d.limits, Limits::default());
        assert_eq!(d.environment, "default");
        assert_eq!(d.tables, TableAllow::All);
        assert_eq!(d.sandbox, Sandbox::default());
    }

    #[test]
    fn unknown_degradable_layer_is_named() {
        let e =
            parse("x", "p.toml", "[sandbox]\nallow_degraded = [\"seccomp\", \"firewall\"]\n").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("sandbox.allow_degraded") && e.contains("firewall"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse("x", "policies/x.toml", "[limits]\ntimeout = 3\n").unwrap_err().to_string();
        assert!(e.starts_with("policies/x.toml:"), "{e}");
        assert!(e.contains("unknown field `timeout`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("x", "p.toml", "[limits]\ntimeout_s = 200\n").unwrap_err().to_string();
        assert!(e.contains("key `limits.timeout_s`") && e.contains("max_timeout_s"), "{e}");
        let e = parse("x", "p.toml", "[limits]\nmax_rows = 0\n").unwrap_err().to_string();
        assert!(e.contains("key `limits.max_rows`"), "{e}");
        let e = parse("x", "p.toml", "[limits]\nmemory_mb = -1\n").unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("memory_mb"), "{e}");
        let e = parse("X Y", "p.toml", "").unwrap_err().to_string();
        assert!(e.contains("policy names"), "{e}");
    }

    #[test]
    fn request_limits_clamp_to_policy() {
        let p = Policies::load(None).unwrap();
        let d = p.get("default").unwrap();
        assert_eq!(d.request_limits(None, None).unwrap().timeout_s, 30.0);
        assert_eq!(d.request_limits(Some(2.5), Some(100)).unwrap().memory_mb, 100);
        let e = d.request_limits(Some(121.0), None).unwrap_err();
        assert_eq!(e.field, "timeout");
        assert!(e.message.contains("120"));
        assert_eq!(d.request_limits(None, Some(5000)).unwrap_err().field, "max_memory");
        assert_eq!(d.request_limits(Some(-1.0), None).unwrap_err().field, "timeout");
    }

    #[test]
    fn bad_table_names_and_roles_name_the_key() {
        let e = parse("x", "p.toml", "[tables]\nallow = [\"a b\"]\n").unwrap_err().to_string();
        assert!(e.contains("tables.allow") && e.contains("a b"), "{e}");
        let e = parse("x", "p.toml", "[database]\nrole = \"x;y\"\n").unwrap_err().to_string();
        assert!(e.contains("database.role"), "{e}");
    }
}
