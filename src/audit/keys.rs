//! API keys: random, high-entropy, shown once, stored only as SHA-256. A
//! key has roles (execute, audit, admin) and may be limited to policies.
//! Audit principals are the key's name and id, never the key.

use serde::Serialize;
use sqlx::Row;

use super::{AuditError, AuditStore, now, sha256_hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Run classifiers.
    Execute,
    /// Read the audit log.
    Audit,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Execute => "execute",
            Role::Audit => "audit",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "execute" => Some(Role::Execute),
            "audit" => Some(Role::Audit),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A stored key (without its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    /// `None`: every policy.
    pub policies: Option<Vec<String>>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Who is calling.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub policies: Option<Vec<String>>,
}

impl Principal {
    /// How the audit log names this caller.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.key_id)
    }

    pub fn may_use_policy(&self, policy: &str) -> bool {
        self.policies.as_ref().is_none_or(|ps| ps.iter().any(|p| p == policy))
    }

    /// The local user of `sluice mcp` / `sluice run`: every role.
    pub fn local(user: &str) -> Principal {
        Principal {
            key_id: "local".into(),
            name: format!("stdio:{user}"),
            roles: vec![Role::Admin],
            policies: None,
        }
    }
}

/// `bytes` bytes from the operating system's CSPRNG, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random number generator");
    hex::encode(buf)
}

fn key_from(row: &sqlx::any::AnyRow) -> Result<ApiKey, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    let policies: Option<String> = row.try_get("policies")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        roles: roles.split(',').filter_map(Role::parse).collect(),
        policies: policies.map(|p| p.split(',').filter(|s| !s.is_empty()).map(String::from).collect()),
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl AuditStore {
    /// Create a key; returns it with its secret, which is not stored.
    pub async fn create_key(
        &self,
        name: &str,
        roles: &[Role],
        policies: Option<&[String]>,
    ) -> Result<(ApiKey, String), AuditError> {
        // Names are printed on terminals and pages: no control characters.
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(AuditError::Filter {
                field: "name",
                message: "a key name must be non-empty printable text (no control characters)".into(),
            });
        }
        let id = format!("k_{}", random_hex(6));
        let secret = format!("sluice_{}", random_hex(32));
        let mut roles = roles.to_vec();
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        let roles_text = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
        let policies_text = policies.map(|p| p.join(","));
        let created_at = now();
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_sha256, roles, policies, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(sha256_hex(&secret))
        .bind(&roles_text)
        .bind(&policies_text)
        .bind(&created_at)
        .execute(&self.pool)
        .await?;
        let key = ApiKey {
            id,
            name: name.into(),
            roles,
            policies: policies.map(|p| p.to_vec()),
            created_at,
            revoked_at: None,
        };
        Ok((key, secret))
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, AuditError> {
        let rows = sqlx::query(
            "SELECT id, name, roles, policies, created_at, revoked_at FROM api_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_from).collect::<Result<_, _>>()?)
    }

    /// Revoke a key by id; it stops working at once.
    pub async fn revoke_key(&self, id: &str) -> Result<(), AuditError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(AuditError::NotFound(format!(
                "no active key {id}; `sluice keys list` shows the keys and their ids"
            )));
        }
        Ok(())
    }

    pub async fn active_key_count(&self) -> Result<i64, AuditError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The principal of a presented key, if it is a live key.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, AuditError> {
        let row = sqlx::query(
            "SELECT id, name, roles, policies, created_at, revoked_at FROM api_keys \
             WHERE key_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256_hex(secret))
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => {
                let k = key_from(&r)?;
                Some(Principal { key_id: k.id, name: k.name, roles: k.roles, policies: k.policies })
            }
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_and_distinct() {
        let a = random_hex(32);
        let b = random_hex(32);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn roles_and_policies() {
        let p = Principal {
            key_id: "k".into(),
            name: "n".into(),
            roles: vec![Role::Audit],
            policies: Some(vec!["a".into()]),
        };
        assert_eq!(p.roles, [Role::Audit]);
        assert!(p.may_use_policy("a") && !p.may_use_policy("b"));
        let admin = Principal::local("me");
        // What the roles allow is the permission table's (app/authz.rs tests).
        assert!(admin.roles == [Role::Admin] && admin.may_use_policy("x"));
        assert_eq!(admin.name, "stdio:me");
    }
}
