//! Pinned requirements: every line one exact version, and nothing
//! installed that no line names (an environment must build the same
//! tomorrow, or a model pickled under it may stop loading).

use super::EnvError;
use super::spec::invalid;

/// Every requirement must pin one version: the environment must build the
/// same tomorrow as today, or a model pickled under it may stop loading.
pub(super) fn check_pinned(file: &str, requirements: &str) -> Result<(), EnvError> {
    let mut any = false;
    for (n, line) in requirements.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        any = true;
        if line.starts_with('-') {
            return Err(invalid(
                file,
                "requirements",
                format!(
                    "line {}: `{line}`: installer options are not read here (configure uv with UV_* \
                     variables, e.g. UV_INDEX_URL)",
                    n + 1
                ),
            ));
        }
        let spec = line.split(';').next().unwrap_or("");
        if spec.contains('@') || spec.contains("://") {
            return Err(invalid(
                file,
                "requirements",
                format!(
                    "line {}: `{line}`: direct references (`name @ url`) are not read here; pin \
                     `name==version` from an index (UV_INDEX_URL for a private one)",
                    n + 1
                ),
            ));
        }
        if !spec.contains("==") || spec.contains(',') || spec.contains('*') {
            return Err(invalid(
                file,
                "requirements",
                format!(
                    "line {}: `{line}` is not pinned; write `name==version` (one exact version, so the \
                     environment builds the same every time)",
                    n + 1
                ),
            ));
        }
    }
    if !any {
        return Err(invalid(file, "requirements", "no requirements: pin at least pandas and numpy".into()));
    }
    Ok(())
}

/// `name==version` lines of `installed` whose package `requirements` does
/// not name (names compared as PEP 503 normalises them).
pub(super) fn unpinned(requirements: &str, installed: &[String]) -> Vec<String> {
    fn norm(name: &str) -> String {
        let lower = name.trim().to_ascii_lowercase();
        lower.split(['-', '_', '.']).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
    }
    let pinned: Vec<String> = super::requirement_names(requirements).iter().map(|n| norm(n)).collect();
    installed
        .iter()
        .filter(|line| !pinned.contains(&norm(line.split("==").next().unwrap_or(line))))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_must_pin_every_installed_package() {
        let req = "scikit-learn==1.5.2\nPyYAML==6.0  # yaml\n";
        let installed =
            ["pyyaml==6.0", "scikit_learn==1.5.2", "scipy==1.13.1", "joblib==1.4.2"].map(String::from);
        assert_eq!(unpinned(req, &installed), ["scipy==1.13.1", "joblib==1.4.2"]);
        assert!(unpinned("a.b_c==1\n", &["A-B-C==1".into()]).is_empty());
    }
}
