//! The one permission table: which role may do what, on which policy and
//! on whose records. Every door (HTTP routes, the review pages,
//! `/tools/call`, each MCP tool, the CLI) asks `grant` before it calls the
//! application, and the application's functions take the `Grant` as their
//! proof, so a door cannot skip the table and two doors cannot disagree.

use std::marker::PhantomData;

use crate::audit::keys::{Principal, Role};
use crate::audit::{Record, Scope};

/// Who sent a request, from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client_addr: Option<String>,
}

impl Caller {
    /// The local user of `sluice mcp` / `sluice run`: every role.
    pub fn local(user: &str) -> Caller {
        Caller { principal: Principal::local(user), client_addr: None }
    }
}

/// The actions, in one list: the `Action` enum, `Action::ALL`, each one's
/// words in a refusal, and its marker type in `act` (so that a grant for
/// one action cannot be passed where another is needed).
macro_rules! actions {
    ($($(#[$doc:meta])* $name:ident => $words:literal,)*) => {
        /// Everything a caller can ask sluice to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $name,)*
        }

        impl Action {
            pub const ALL: &[Action] = &[$(Action::$name,)*];

            fn describe(self) -> &'static str {
                match self {
                    $(Action::$name => $words,)*
                }
            }
        }

        pub mod act {
            pub trait Act {
                const ACTION: super::Action;
            }
            $(
                #[derive(Debug)]
                pub struct $name;
                impl Act for $name {
                    const ACTION: super::Action = super::Action::$name;
                }
            )*
        }
    };
}

actions! {
    /// Run code on a query's rows (execute_classifier, describe_table's samples).
    RunCode => "running code",
    /// See the tables, columns and functions a policy allows.
    ReadSchema => "reading the schema",
    /// Read one audit record.
    ReadRecord => "reading an audit record",
    /// List and search the audit log (API and review pages).
    ListRecords => "listing the audit log",
    /// Verify the audit log's hash chain.
    VerifyChain => "verifying the audit log",
    /// Prometheus metrics.
    ReadMetrics => "reading metrics",
    /// What sluice runs on: database, guards, sandbox layers (`/readyz` detail).
    ReadServerDetails => "reading the server's details",
    /// The tool definitions (`GET /tools`, MCP `tools/list`).
    ListTools => "listing the tools",
    /// Create, list and revoke API keys.
    ManageKeys => "managing keys",
}

/// How far a grant reaches: everything the key's policies cover, or only
/// what the key itself did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Any,
    Own,
}

/// The table. `admin` may do everything; a key limited to some policies
/// runs code and reads schemas only under those, and sees audit records of
/// those policies and its own (README, "Keys and roles").
pub const TABLE: &[(Action, Role, Reach)] = &[
    (Action::RunCode, Role::Execute, Reach::Any),
    (Action::ReadSchema, Role::Execute, Reach::Any),
    (Action::ReadRecord, Role::Execute, Reach::Own),
    (Action::ReadRecord, Role::Audit, Reach::Any),
    (Action::ListRecords, Role::Audit, Reach::Any),
    (Action::VerifyChain, Role::Audit, Reach::Any),
    (Action::ReadMetrics, Role::Audit, Reach::Any),
    (Action::ReadServerDetails, Role::Audit, Reach::Any),
    (Action::ListTools, Role::Execute, Reach::Any),
    (Action::ListTools, Role::Audit, Reach::Any),
    (Action::ManageKeys, Role::Admin, Reach::Any),
];

/// What the table allows `roles` to do with `action`; `None`: nothing.
pub fn decide(roles: &[Role], action: Action) -> Option<Reach> {
    if roles.contains(&Role::Admin) {
        return Some(Reach::Any);
    }
    let mut best = None;
    for (a, role, reach) in TABLE {
        if *a == action && roles.contains(role) {
            best = match (best, reach) {
                (Some(Reach::Any), _) | (_, Reach::Any) => Some(Reach::Any),
                _ => Some(Reach::Own),
            };
        }
    }
    best
}

/// Why the table said no; a door turns it into 403, a tool error or a CLI
/// error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Proof that the table let `caller` do `A`. Only `grant` makes one.
#[derive(Debug)]
pub struct Grant<A> {
    caller: Caller,
    reach: Reach,
    action: PhantomData<A>,
}

/// Ask the table whether `caller` may do `A`.
pub fn grant<A: act::Act>(caller: &Caller) -> Result<Grant<A>, Denied> {
    let p = &caller.principal;
    match decide(&p.roles, A::ACTION) {
        Some(reach) => Ok(Grant { caller: caller.clone(), reach, action: PhantomData }),
        None => {
            let need: Vec<&str> =
                TABLE.iter().filter(|(a, ..)| *a == A::ACTION).map(|(_, r, _)| r.as_str()).collect();
            let have: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
            Err(Denied(format!(
                "this key ({}) has role(s) {}; {} needs `{}` (admin has every role)",
                p.label(),
                have.join(", "),
                A::ACTION.describe(),
                need.join("` or `")
            )))
        }
    }
}

// By hand: a derive would ask `A: Clone` of the marker type.
impl<A> Clone for Grant<A> {
    fn clone(&self) -> Self {
        Self { caller: self.caller.clone(), reach: self.reach, action: PhantomData }
    }
}

impl<A> Grant<A> {
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// `Err` unless the key may work under `policy`.
    pub fn policy(&self, policy: &str) -> Result<(), Denied> {
        let p = &self.caller.principal;
        if p.may_use_policy(policy) {
            return Ok(());
        }
        Err(Denied(format!(
            "this key may not use policy `{}`; it may use: {}",
            crate::output::clip(policy, 128),
            p.policies.as_deref().unwrap_or_default().join(", ")
        )))
    }

    /// Which records the grant shows: `None` for every record.
    pub fn scope(&self) -> Option<Scope> {
        let p = &self.caller.principal;
        match self.reach {
            Reach::Own => Some(Scope { policies: Vec::new(), principal: p.label() }),
            Reach::Any => Scope::of(p),
        }
    }

    /// May the grant's holder see record `r`?
    pub fn sees(&self, r: &Record) -> bool {
        self.scope().is_none_or(|s| s.sees(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_may_do_everything_and_each_action_has_a_role() {
        for &a in Action::ALL {
            assert_eq!(decide(&[Role::Admin], a), Some(Reach::Any), "{a:?}");
            assert!(TABLE.iter().any(|(t, ..)| *t == a), "{a:?} has no row");
        }
    }

    #[test]
    fn execute_keys_read_their_own_records_only() {
        assert_eq!(decide(&[Role::Execute], Action::ReadRecord), Some(Reach::Own));
        assert_eq!(decide(&[Role::Execute, Role::Audit], Action::ReadRecord), Some(Reach::Any));
        assert_eq!(decide(&[Role::Audit], Action::RunCode), None);
        assert_eq!(decide(&[Role::Audit], Action::ReadSchema), None);
        assert_eq!(decide(&[Role::Execute], Action::ListRecords), None);
        assert_eq!(decide(&[], Action::ListTools), None);
    }

    #[test]
    fn a_refusal_names_the_role_needed() {
        let caller = Caller {
            principal: Principal {
                key_id: "k1".into(),
                name: "ops".into(),
                roles: vec![Role::Audit],
                policies: None,
            },
            client_addr: None,
        };
        let e = grant::<act::RunCode>(&caller).unwrap_err().0;
        assert!(e.contains("running code needs `execute` (admin has every role)"), "{e}");
        assert!(e.contains("(ops (k1)) has role(s) audit"), "{e}");
    }
}
