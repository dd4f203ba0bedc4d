//! One request's child from submission to reaping: the guard that kills
//! and cleans up after it however the request ends, and the pipes and
//! events of its run.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use uuid::Uuid;

use super::protocol::Exit;
use super::zygote::{Event, Zygote};
use super::{BACKSTOP, ExecError, uids};

/// One request's child while it may still live. Dropped without `reaped`
/// (an error, a backstop, a stop's kill): the child is killed, and its uid,
/// cgroup and scratch dir are released once the zygote has reaped it.
pub(super) struct Running {
    pub(super) zygote: Arc<Zygote>,
    pub(super) id: Uuid,
    pub(super) events: Option<tokio::sync::mpsc::UnboundedReceiver<Event>>,
    pub(super) uid: Option<uids::UidLease>,
    pub(super) cgroup: Option<crate::executor::cgroup::RequestCgroup>,
    /// Never outlives its request.
    pub(super) scratch: Option<PathBuf>,
    pub(super) reaped: bool,
    /// The zygote was asked to kill it already.
    pub(super) killed: bool,
    pub(super) cleanups: tokio_util::task::TaskTracker,
}

impl Drop for Running {
    fn drop(&mut self) {
        let (events, uid, cgroup) = (self.events.take(), self.uid.take(), self.cgroup.take());
        if let Some(dir) = self.scratch.take() {
            // Only the mount point lives on the host (the tmpfs is in the
            // child's mount namespace), so it can go at once.
            let _ = std::fs::remove_dir_all(dir);
        }
        if !self.reaped && !self.killed && events.is_some() {
            self.zygote.kill_child(self.id);
        }
        // Never handed to the zygote: no child exists, nothing to wait for.
        let reaped = self.reaped || events.is_none();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on: never hand the uid to another child.
            std::mem::forget(uid);
            return;
        };
        rt.spawn(self.cleanups.track_future(async move {
            if !reaped {
                let gone = match events {
                    Some(mut events) => tokio::time::timeout(BACKSTOP, wait_exit(&mut events)).await.is_ok(),
                    None => false,
                };
                if !gone {
                    // Not reaped (or not known to be): its uid stays taken.
                    // Its cgroup goes if it is empty (a child never started).
                    tracing::warn!("a child was not reported gone; its sandbox uid is retired");
                    std::mem::forget(uid);
                    if let Some(c) = cgroup {
                        c.remove().await;
                    }
                    return;
                }
            }
            drop(uid);
            if let Some(c) = cgroup {
                c.remove().await;
            }
        }));
    }
}

/// The start of a request on a child's channel: the header frame with the
/// rows' memfd attached. An error means the child was gone before it got
/// anything (the caller may use another).
pub(super) async fn send_header(
    stream: tokio::net::UnixStream,
    header: &[u8],
    rows: &OwnedFd,
) -> std::io::Result<tokio::net::UnixStream> {
    let sent =
        stream.async_io(Interest::WRITABLE, || send_with_fds(&stream, header, &[rows.as_raw_fd()])).await?;
    let mut stream = stream;
    // A stream socket may take a message in parts; the fd went with the first.
    stream.write_all(&header[sent..]).await?;
    Ok(stream)
}

/// One `sendmsg` of `bytes` with `fds` attached (`SCM_RIGHTS`), without
/// SIGPIPE: the zygote's control socket and a child's channel both pass
/// fds this way. Returns the bytes sent (a stream socket may take part).
pub(super) fn send_with_fds(socket: &impl AsRawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(std::io::Error::from)
}

/// The child's result bytes; `None` when it wrote more than `cap`.
pub(super) async fn read_result(fd: OwnedFd, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut buf = Vec::new();
    let n = rx.take(cap + 1).read_to_end(&mut buf).await?;
    Ok((n as u64 <= cap).then_some(buf))
}

pub(super) async fn wait_started(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Result<i32, ExecError> {
    match events.recv().await {
        Some(Event::Started { pid }) => Ok(pid),
        Some(Event::Exited(_)) => Err(ExecError::Protocol("the child exited before it started".into())),
        Some(Event::Error(m)) => Err(ExecError::Protocol(m)),
        Some(Event::Gone) | None => Err(ExecError::ZygoteGone),
    }
}

pub(super) async fn wait_exit(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Result<Exit, ExecError> {
    loop {
        match events.recv().await {
            Some(Event::Started { .. }) => continue,
            Some(Event::Exited(e)) => return Ok(e),
            Some(Event::Error(m)) => return Err(ExecError::Protocol(m)),
            Some(Event::Gone) | None => return Err(ExecError::ZygoteGone),
        }
    }
}
