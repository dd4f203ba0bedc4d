//! A request checked against its policy before anything runs: the policy
//! exists and the key may use it, the limits are within the policy's, the
//! params can be bound, the entrypoint is a name.

use serde_json::Value;

use super::App;
use super::authz::{Grant, act};
use super::types::{AppError, ExecuteRequest};
use crate::code;
use crate::executor::ChildLimits;
use crate::policy::Policy;
use crate::sql::Param;

/// What the SQL and sandbox stages need of a checked request.
pub(super) struct Prepared {
    pub params: Vec<Param>,
    pub entrypoint: String,
    pub code: String,
    pub limits: ChildLimits,
}

impl App {
    pub(super) fn prepare<'a>(
        &'a self,
        grant: &Grant<act::RunCode>,
        req: &ExecuteRequest,
    ) -> Result<(&'a Policy, Prepared), AppError> {
        let policy = self.policy(req.policy.as_deref())?;
        grant.policy(&policy.name)?;
        let limits = policy
            .request_limits(req.timeout, req.max_memory)
            .map_err(|e| AppError::BadRequest { field: e.field.into(), message: e.message })?;
        let params = convert_params(&req.params)?;
        let entrypoint = req.entrypoint.clone().unwrap_or_else(|| "classify".into());
        if !code::is_identifier(&entrypoint) {
            return Err(AppError::BadRequest {
                field: "entrypoint".into(),
                message: format!("`{entrypoint}` is not a Python function name"),
            });
        }
        if req.sql_query.trim().is_empty() {
            return Err(AppError::BadRequest { field: "sql_query".into(), message: "is empty".into() });
        }
        let limits = ChildLimits::new(&policy.limits, limits.timeout_s, limits.cpu_s, limits.memory_mb);
        let code = code::extract(&req.classifier_code);
        Ok((policy, Prepared { params, entrypoint, code, limits }))
    }

    /// The named policy (`None`: `default`), or a 400 that lists them.
    pub(super) fn policy(&self, name: Option<&str>) -> Result<&Policy, AppError> {
        let name = name.unwrap_or("default");
        self.policies.get(name).ok_or_else(|| AppError::BadRequest {
            field: "policy".into(),
            message: format!(
                "unknown policy `{}`; known policies: {}",
                crate::output::clip(name, 128),
                self.policies.names().collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

fn convert_params(values: &[Value]) -> Result<Vec<Param>, AppError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(match v {
                Value::Null => Param::Null,
                Value::Bool(b) => Param::Bool(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Param::Int(i),
                    None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => Param::Text(s.clone()),
                Value::Array(_) | Value::Object(_) => {
                    return Err(AppError::BadRequest {
                        field: format!("params[{i}]"),
                        message: "arrays and objects cannot be bound; pass a string, number, boolean or null"
                            .into(),
                    });
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_reject_nested_values() {
        let e = convert_params(&[json!(1), json!([1])]).unwrap_err();
        assert!(matches!(e, AppError::BadRequest { ref field, .. } if field == "params[1]"));
        assert_eq!(
            convert_params(&[json!(1.5), json!("x")]).unwrap(),
            vec![Param::Float(1.5), Param::Text("x".into())]
        );
    }
}
