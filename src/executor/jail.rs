//! The host side of the sandbox: which layers this host can provide, the
//! compiled seccomp profiles, per-request cgroups, and what each request's
//! child is told to apply. The layers themselves are applied in the child
//! (sandbox crate + harness), in the order documented in ARCHITECTURE.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::protocol::ReadyInfo;
use super::{cgroup, seccomp};
use crate::policy::{Policies, Policy};

/// What each Landlock ABI adds that sluice uses, and what holds the line
/// where the kernel lacks it.
pub const LANDLOCK_FEATURES: &[(i32, &str, &str)] = &[
    (1, "filesystem rules", "nothing else confines the filesystem"),
    (2, "refer", "ABI 1 forbids every rename or link across directories, which is stricter"),
    (3, "truncate rules", "each child runs as a uid of its own that owns no file (sluice runs as root)"),
    (4, "TCP bind/connect rules", "the network namespace has no interface"),
    (
        5,
        "device ioctl rules",
        "the only devices a child can open are /dev/null and /dev/urandom, and seccomp \
      refuses the terminal ioctls",
    ),
    (6, "signal and abstract socket scoping", "seccomp lets a child signal only itself and open no socket"),
];

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(
        "sandbox layer `{layer}` is not available on this host ({detail}); policy `{policy}` does not accept \
         running without it (add \"{layer}\" to [sandbox] allow_degraded in that policy to accept it)"
    )]
    Missing { layer: &'static str, detail: String, policy: String },
}

/// One layer of the sandbox and whether this host provides it.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    pub name: &'static str,
    pub active: bool,
    pub detail: String,
}

/// What a child applies for one request.
#[derive(Debug, Clone)]
pub struct ChildSandbox {
    pub seccomp: Option<PathBuf>,
    pub landlock: bool,
}

pub struct Jail {
    pub cgroups: Result<cgroup::Cgroups, String>,
    profiles: BTreeMap<String, seccomp::CompiledProfile>,
}

impl Jail {
    /// Compile every policy's seccomp profile and set up cgroups.
    pub fn prepare(
        policies: &Policies,
        policies_dir: Option<&Path>,
        runtime_dir: &Path,
    ) -> Result<Jail, JailError> {
        let mut profiles = BTreeMap::new();
        for p in policies.iter() {
            let name = &p.sandbox.seccomp_profile;
            if !profiles.contains_key(name) {
                profiles.insert(name.clone(), seccomp::install(policies_dir, name, runtime_dir)?);
            }
        }
        let cgroups = cgroup::Cgroups::detect();
        if let Err(why) = &cgroups {
            tracing::info!("no per-request cgroups: {why}");
        }
        Ok(Jail { cgroups, profiles })
    }

    pub fn profile(&self, name: &str) -> Option<&seccomp::CompiledProfile> {
        self.profiles.get(name)
    }

    /// Every layer and whether it is active, given what the zygote found.
    pub fn layers(&self, z: &ReadyInfo) -> Vec<Layer> {
        let iso = &z.isolation;
        let ll = iso.landlock_abi;
        vec![
            Layer {
                name: "process",
                active: true,
                detail: "one fork per request, killed when its request ends or at its deadline".into(),
            },
            Layer {
                name: "network_namespace",
                active: iso.network_namespace,
                detail: iso.error.clone().unwrap_or_else(|| "no interfaces but a downed loopback".into()),
            },
            Layer {
                name: "user_namespace",
                active: iso.user_namespace,
                detail: match (iso.user_namespace, iso.child_uids) {
                    (true, Some([lo, hi])) => format!(
                        "each live child runs as a host uid of its own ({lo}-{hi}, no account, never root), \
                         no groups, no capabilities"
                    ),
                    (true, None) => format!(
                        "children run as the server's own uid {} with no capabilities (start sluice as root \
                         for a uid of their own each)",
                        iso.uid
                    ),
                    (false, _) => {
                        iso.error.clone().unwrap_or_else(|| "user namespaces are not available".into())
                    }
                },
            },
            Layer {
                name: "mount_namespace",
                active: iso.mount_namespace,
                detail: if iso.mount_namespace {
                    "each child's scratch dir is a tmpfs of its own (size per policy, no setuid, no devices, \
                     no executables), gone with the process"
                        .into()
                } else {
                    iso.error.clone().unwrap_or_else(|| "mount namespaces are not available".into())
                },
            },
            Layer {
                name: "landlock",
                // Below ABI 3 nothing stops truncate(2) or O_TRUNC on a
                // file the child's uid may write: only a uid of its own
                // (as root) makes that harmless.
                active: ll >= 3 || (ll >= 1 && iso.child_uids.is_some()),
                detail: landlock_detail(ll, iso.landlock_kernel_abi, iso.child_uids.is_some()),
            },
            Layer {
                name: "seccomp",
                active: iso.seccomp && !self.profiles.is_empty(),
                detail: if iso.seccomp {
                    format!("profiles: {}", self.profiles.keys().cloned().collect::<Vec<_>>().join(", "))
                } else {
                    "the kernel has no seccomp filters".into()
                },
            },
            Layer {
                name: "rlimits",
                active: true,
                detail: "CPU, address space, threads, files, file size, core".into(),
            },
            Layer {
                name: "cgroup",
                active: self.cgroups.is_ok(),
                detail: match &self.cgroups {
                    Ok(c) => format!("memory and pids per request ({})", c.describe()),
                    Err(why) => why.clone(),
                },
            },
        ]
    }

    /// Refuse to run a policy whose required layers are missing.
    pub fn check<'a>(
        &self,
        policies: impl IntoIterator<Item = &'a crate::policy::Policy>,
        z: &ReadyInfo,
    ) -> Result<(), JailError> {
        let layers = self.layers(z);
        for p in policies {
            for l in layers.iter().filter(|l| !l.active) {
                if !p.sandbox.allow_degraded.iter().any(|d| d == l.name) {
                    return Err(JailError::Missing {
                        layer: l.name,
                        detail: l.detail.clone(),
                        policy: p.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// What the child must apply under `policy` on this host.
    pub fn child_sandbox(&self, policy: &Policy, z: &ReadyInfo) -> ChildSandbox {
        let seccomp_ok = z.isolation.seccomp;
        ChildSandbox {
            seccomp: self
                .profiles
                .get(&policy.sandbox.seccomp_profile)
                .filter(|_| seccomp_ok)
                .map(|p| p.path.clone()),
            landlock: z.isolation.landlock_abi >= 1,
        }
    }
}

/// Which Landlock features are in use at ABI `abi`, and for each one
/// missing, what holds instead.
fn landlock_detail(abi: i32, kernel: i32, own_uids: bool) -> String {
    if abi < 1 {
        return if kernel > 0 {
            format!(
                "Landlock is off (SLUICE_LANDLOCK_ABI_MAX; the kernel has ABI {kernel}): nothing confines the filesystem"
            )
        } else {
            "the kernel has no Landlock (Linux 5.13+): nothing confines the filesystem".into()
        };
    }
    if abi < 3 && !own_uids {
        return format!(
            "ABI {abi} has no truncate rules, and children share the server's uid: a child could truncate \
             any file that uid may write (the audit log, the environment); run sluice as root (a uid per \
             child) or on Linux 6.2+ (ABI 3)"
        );
    }
    let (have, missing): (Vec<_>, Vec<_>) = LANDLOCK_FEATURES.iter().partition(|(n, _, _)| *n <= abi);
    let mut d = format!(
        "ABI {abi}{}: {}",
        if kernel > abi { format!(" (the kernel has {kernel})") } else { String::new() },
        have.iter().map(|(_, f, _)| *f).collect::<Vec<_>>().join(", ")
    );
    for (n, f, instead) in missing {
        d += &format!("; no {f} (ABI {n}): {instead}");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::protocol::Isolation;

    fn ready(landlock_abi: i32, user_namespace: bool) -> ReadyInfo {
        ReadyInfo {
            protocol: crate::executor::protocol::VERSION,
            pid: 1,
            python: "3.11".into(),
            versions: serde_json::json!({}),
            rows_reader: "pyarrow".into(),
            import_ms: 0.0,
            vm_kb: 0,
            rss_kb: 0,
            threads: 1,
            isolation: Isolation {
                user_namespace,
                network_namespace: true,
                error: None,
                mount_namespace: true,
                uid: 65534,
                child_uids: None,
                covered: 0,
                landlock_abi,
                landlock_kernel_abi: landlock_abi,
                seccomp: true,
            },
        }
    }

    fn jail() -> Jail {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let policies = Policies::load(None).unwrap();
        let dir = std::env::temp_dir().join(format!("sluice-jail-test-{}-{n}", std::process::id()));
        let mut j = Jail::prepare(&policies, None, &dir).unwrap();
        j.cgroups = Err("not in this test".into());
        j
    }

    #[test]
    fn a_missing_layer_stops_a_policy_that_does_not_accept_it() {
        let policies = Policies::load(None).unwrap();
        let j = jail();
        // cgroup missing: the default policy accepts that.
        assert!(j.check(policies.iter(), &ready(7, true)).is_ok());
        // An older kernel's Landlock is used for what it has, not refused…
        assert!(j.check(policies.iter(), &ready(3, true)).is_ok());
        // … unless truncation is unguarded: below ABI 3 with children on
        // the server's own uid.
        let e = j.check(policies.iter(), &ready(2, true)).unwrap_err().to_string();
        assert!(e.contains("`landlock`") && e.contains("truncate"), "{e}");
        let mut own = ready(1, true);
        own.isolation.child_uids = Some([2, 3]);
        assert!(j.check(policies.iter(), &own).is_ok());
        let ll = j.layers(&ready(3, true)).into_iter().find(|l| l.name == "landlock").unwrap();
        assert!(ll.active && ll.detail.contains("no TCP bind/connect rules (ABI 4)"), "{}", ll.detail);
        let e = j.check(policies.iter(), &ready(0, true)).unwrap_err().to_string();
        assert!(
            e.contains("`landlock`") && e.contains("policy `default`") && e.contains("allow_degraded"),
            "{e}"
        );
        let e = j.check(policies.iter(), &ready(7, false)).unwrap_err().to_string();
        assert!(e.contains("`user_namespace`"), "{e}");
    }

    #[test]
    fn every_layer_is_reported() {
        let names: Vec<_> = jail().layers(&ready(7, true)).iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "process",
                "network_namespace",
                "user_namespace",
                "mount_namespace",
                "landlock",
                "seccomp",
                "rlimits",
                "cgroup"
            ]
        );
    }
}
