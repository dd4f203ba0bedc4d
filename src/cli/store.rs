//! The commands on the audit store: `keys` and `audit`. They act as the
//! local user (`cli_caller`) under the same permission table as every door.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{AuditCommand, ExportFormat, KeysCommand, cli_caller, open_store};
use crate::app::{act, grant};

/// Text from the audit store, safe to print on a terminal: control
/// characters (escape sequences) are shown escaped, never sent.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

pub async fn keys(data_dir: PathBuf, c: KeysCommand) -> anyhow::Result<ExitCode> {
    grant::<act::ManageKeys>(&cli_caller())?;
    match c {
        KeysCommand::Create { name, roles, policies, policies_dir, db } => {
            let known = crate::policy::Policies::load(policies_dir.as_deref())?;
            if let Some(p) = policies.iter().find(|p| known.get(p).is_none()) {
                let names: Vec<&str> = known.names().collect();
                anyhow::bail!(
                    "no policy `{p}`; policies: {} (give --policies DIR for another directory)",
                    names.join(", ")
                );
            }
            let store = open_store(data_dir, &db).await?;
            // A name names one live key: reviewers read names, not ids.
            if let Some(k) =
                store.list_keys().await?.into_iter().find(|k| k.revoked_at.is_none() && k.name == name)
            {
                anyhow::bail!(
                    "an active key is already named `{name}` ({}); pick another name or revoke it",
                    k.id
                );
            }
            let policies = (!policies.is_empty()).then_some(policies);
            let (key, secret) = store.create_key(&name, &roles, policies.as_deref()).await?;
            let roles: Vec<String> = key.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
            println!(
                "created key `{}` ({}) with role(s) {} for {}; it is shown only now:",
                key.name,
                key.id,
                roles.join(", "),
                key.policies
                    .map(|p| format!("policies {}", p.join(", ")))
                    .unwrap_or_else(|| "every policy".into())
            );
            println!("{secret}");
        }
        KeysCommand::List { db } => {
            let store = open_store(data_dir, &db).await?;
            println!(
                "{:<16} {:<20} {:<22} {:<20} {:<25} revoked",
                "id", "name", "roles", "policies", "created"
            );
            for k in store.list_keys().await? {
                let roles: Vec<String> = k.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
                println!(
                    "{:<16} {:<20} {:<22} {:<20} {:<25} {}",
                    k.id,
                    printable(&k.name),
                    roles.join(","),
                    k.policies.map(|p| p.join(",")).unwrap_or_else(|| "*".into()),
                    k.created_at,
                    k.revoked_at.unwrap_or_else(|| "-".into())
                );
            }
        }
        KeysCommand::Revoke { id, db } => {
            let store = open_store(data_dir, &db).await?;
            store.revoke_key(&id).await?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(data_dir: PathBuf, c: AuditCommand) -> anyhow::Result<ExitCode> {
    let caller = cli_caller();
    match &c {
        AuditCommand::Verify { .. } => grant::<act::VerifyChain>(&caller).map(drop)?,
        AuditCommand::Show { .. } => grant::<act::ReadRecord>(&caller).map(drop)?,
        _ => grant::<act::ListRecords>(&caller).map(drop)?,
    }
    match c {
        AuditCommand::List {
            status,
            principal,
            policy,
            code_sha256,
            since,
            until,
            limit,
            cursor,
            search,
            db,
        } => {
            let store = open_store(data_dir, &db).await?;
            let f = crate::audit::Filter {
                status,
                principal,
                policy,
                code_sha256,
                since,
                until,
                limit: Some(limit),
                cursor,
                q: search,
                scope: None,
            };
            let page = store.list(&f).await?;
            println!(
                "{:<25} {:<37} {:<19} {:<24} {:>6} {:>9}",
                "created", "execution", "status", "principal", "rows", "total_ms"
            );
            for r in page.records {
                let total = r.timings_ms.as_ref().and_then(|t| t.get("total")).and_then(|v| v.as_f64());
                println!(
                    "{:<25} {:<37} {:<19} {:<24} {:>6} {:>9}",
                    r.created_at,
                    r.execution_id,
                    r.status,
                    printable(&r.principal),
                    r.row_count.map(|n| n.to_string()).unwrap_or_default(),
                    total.map(|t| format!("{t:.1}")).unwrap_or_default()
                );
            }
            if let Some(next) = page.next_cursor {
                eprintln!("more records: sluice audit list --cursor {next} (with the same filters)");
            }
        }
        AuditCommand::Show { id, db } => {
            let store = open_store(data_dir, &db).await?;
            let id = store.resolve_prefix(&id).await?;
            println!("{}", serde_json::to_string_pretty(&store.get(&id).await?)?);
        }
        AuditCommand::Verify { db } => {
            let store = open_store(data_dir, &db).await?;
            let v = crate::audit::chain::verify(&store).await?;
            println!("{}", serde_json::to_string(&v)?);
            return Ok(if v.ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        AuditCommand::Export { format: ExportFormat::Jsonl, db } => {
            let store = open_store(data_dir, &db).await?;
            for r in store.all().await? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_the_store_prints_without_escape_sequences() {
        assert_eq!(super::printable("ok name"), "ok name");
        assert_eq!(super::printable("evil\u{1b}]0;x\u{7}\n"), "evil\\u{1b}]0;x\\u{7}\\n");
    }
}
