//! Where children's scratch dirs are mounted. On the host a scratch dir is
//! only an empty mount point: the child mounts a size-limited tmpfs on it
//! in its own mount namespace, so what it writes never reaches the disk and
//! is gone with the process. Each server has a directory of its own under
//! the data dir's `scratch/`; start-up removes what dead servers left.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::config::process_start;

/// Entries not named after a server (older layouts) are removed once they
/// are older than any request can run.
const LEGACY_AGE: Duration = Duration::from_secs(600);

/// Create `root` and a directory of this server's in it
/// (`<pid>-<process start time>-<n>`), and remove the directories of
/// servers that are no longer running. Both are 0711: children
/// (unprivileged uids of their own) must pass through them to their mount
/// point, but nobody may list them.
pub fn prepare(root: &Path) -> std::io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true).mode(0o711);
    b.create(root)?;
    set_mode(root)?;
    for e in std::fs::read_dir(root)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let stale = match owner(&name) {
            Some((pid, start)) => process_start(pid) != Some(start),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > LEGACY_AGE)),
        };
        if stale && let Err(err) = std::fs::remove_dir_all(e.path()) {
            tracing::warn!("could not remove stale scratch {}: {err}", e.path().display());
        }
    }
    let pid = std::process::id();
    let start = process_start(pid).unwrap_or(0);
    let mine = root.join(format!("{pid}-{start}-{}", N.fetch_add(1, Ordering::SeqCst)));
    b.create(&mine)?;
    set_mode(&mine)?;
    Ok(mine)
}

/// `<pid>-<start time>-<n>` → (pid, start time).
fn owner(name: &str) -> Option<(u32, u64)> {
    let mut it = name.split('-');
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    it.next()?.parse::<u32>().ok()?;
    Some((pid, start))
}

fn set_mode(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_servers_leftovers_go_and_live_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let live = format!("1-{}-0/request", process_start(1).unwrap());
        std::fs::create_dir_all(root.path().join(&live)).unwrap();
        // pid 1 with another start time: a server that had pid 1 once.
        std::fs::create_dir_all(root.path().join("1-5-0/x")).unwrap();
        // A pid above pid_max is never running.
        std::fs::create_dir_all(root.path().join("4194304999-7-0/x/y")).unwrap();
        std::fs::write(root.path().join("4194304999-7-0/x/y/f"), "left over").unwrap();
        let a = prepare(root.path()).unwrap();
        let b = prepare(root.path()).unwrap();
        assert!(root.path().join(&live).exists());
        assert!(!root.path().join("1-5-0").exists());
        assert!(!root.path().join("4194304999-7-0").exists());
        assert!(a.is_dir() && b.is_dir() && a != b, "two servers in one process keep their own");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o711);
    }
}
