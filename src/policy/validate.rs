//! Reading one policy file: TOML → `Policy`, every value checked, with the
//! file, key and reason in the error.

use super::*;

pub(super) fn parse(name: &str, file: &str, text: &str) -> Result<Policy, PolicyError> {
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(PolicyError::BadName { file: file.into() });
    }
    let pf: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
        file: file.into(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    validate(file, &pf)?;
    let tables = if pf.tables.allow.iter().any(|t| t == "*") {
        TableAllow::All
    } else {
        let parsed: Result<Vec<TableRef>, String> =
            pf.tables.allow.iter().map(|t| TableRef::parse(t)).collect();
        TableAllow::Only(parsed.map_err(|problem| PolicyError::Invalid {
            file: file.into(),
            key: "tables.allow",
            problem,
        })?)
    };
    Ok(Policy {
        name: name.into(),
        description: pf.description,
        environment: pf.environment,
        limits: pf.limits,
        tables,
        sandbox: pf.sandbox,
        database: pf.database,
        output: pf.output,
    })
}

fn validate(file: &str, pf: &PolicyFile) -> Result<(), PolicyError> {
    let bad = |key: &'static str, problem: String| PolicyError::Invalid { file: file.into(), key, problem };
    if pf.output.min_group_size == 0 {
        return Err(bad("output.min_group_size", "must be at least 1".into()));
    }
    let l = &pf.limits;
    let positive_f = |key, v: f64| {
        if v > 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(bad(key, format!("must be a positive number, got {v}")))
        }
    };
    positive_f("limits.timeout_s", l.timeout_s)?;
    positive_f("limits.max_timeout_s", l.max_timeout_s)?;
    positive_f("limits.sql_timeout_s", l.sql_timeout_s)?;
    if l.timeout_s > l.max_timeout_s {
        return Err(bad(
            "limits.timeout_s",
            format!("{} is over limits.max_timeout_s ({})", l.timeout_s, l.max_timeout_s),
        ));
    }
    if l.memory_mb > l.max_memory_mb {
        return Err(bad(
            "limits.memory_mb",
            format!("{} is over limits.max_memory_mb ({})", l.memory_mb, l.max_memory_mb),
        ));
    }
    let positive = [
        ("limits.memory_mb", l.memory_mb),
        ("limits.max_memory_mb", l.max_memory_mb),
        ("limits.cpu_s", l.cpu_s),
        ("limits.max_rows", l.max_rows),
        ("limits.max_fetch_bytes", l.max_fetch_bytes),
        ("limits.max_output_bytes", l.max_output_bytes),
        ("limits.max_open_files", l.max_open_files),
        ("limits.max_threads", l.max_threads),
        ("limits.max_file_size_mb", l.max_file_size_mb),
        ("limits.max_scratch_mb", l.max_scratch_mb),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err(bad(key, "must be greater than 0".into()));
        }
    }
    if l.max_open_files < 16 {
        return Err(bad(
            "limits.max_open_files",
            format!("{} is too few for Python to run; use at least 16", l.max_open_files),
        ));
    }
    if pf.tables.allow.is_empty() {
        return Err(bad("tables.allow", "is empty: list tables, or [\"*\"] for all".into()));
    }
    for layer in &pf.sandbox.allow_degraded {
        if !DEGRADABLE_LAYERS.contains(&layer.as_str()) {
            return Err(bad(
                "sandbox.allow_degraded",
                format!(
                    "`{layer}` is not a layer that can be missing; choose from {}",
                    DEGRADABLE_LAYERS.join(", ")
                ),
            ));
        }
    }
    let profile = &pf.sandbox.seccomp_profile;
    if profile.is_empty() || !profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("sandbox.seccomp_profile", format!("`{profile}` is not a profile name")));
    }
    if let Some(role) = &pf.database.role
        && (role.is_empty()
            || role.len() > 63
            || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(bad(
            "database.role",
            format!("`{role}` is not a role name sluice accepts (1-63 of a-z, A-Z, 0-9, _ and -)"),
        ));
    }
    if pf.environment.is_empty() || pf.environment.contains('/') || pf.environment.starts_with('.') {
        return Err(bad("environment", format!("`{}` is not an environment name", pf.environment)));
    }
    Ok(())
}
