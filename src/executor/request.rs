//! One request through a pre-forked child: hand it over (header and rows,
//! the request's memory limit, its wall clock, the code), read the result,
//! end the child, classify.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::outcome::{self, Frame, Outcome};
use super::pool::Spare;
use super::running::{Running, read_result, send_header, wait_exit};
use super::{BACKSTOP, ChildLimits, ExecError, Executor, Job, RESULT_SLACK, protocol, usage};
use crate::policy::Policy;

/// A child that has its whole request and confirmed it.
struct Handover {
    running: Running,
    result: OwnedFd,
    pid: i32,
    pidfd: OwnedFd,
    /// When its wall clock started, and the CPU it had used by then.
    armed: Instant,
    cpu0: u64,
}

/// Why a hand-over failed: a spare that died while it waited got nothing
/// it could run (another is taken), anything else is the request's.
enum HandError {
    Gone(std::io::Error),
    Exec(ExecError),
}

impl Executor {
    /// Run one job to an outcome. `Err` only for sluice's own failures.
    /// However the request ends (a result, an error, the caller going
    /// away), its child is killed and reaped before its uid is reused.
    pub async fn run(&self, policy: &Policy, job: Job) -> Result<Outcome, ExecError> {
        let t0 = Instant::now();
        let _in_use = self.in_use(&policy.environment);
        let Job { id, code, entrypoint, rows, row_count, limits } = job;
        let header = protocol::Request { limits: &limits, entrypoint: &entrypoint }.frame();
        let rows = rows.into_fd();
        // A spare that died while it waited (killed from outside, say)
        // never confirms its request: take another, at most twice.
        let mut tries = 0;
        let handed = loop {
            let spare = self.take_spare(policy).await?;
            match self.hand_over(spare, &header, &rows, code.as_bytes(), &limits).await {
                Ok(h) => break h,
                Err(HandError::Gone(e)) if tries < 2 => {
                    tracing::debug!(execution_id = %id, "a spare was gone before its request ({e}); taking another");
                    tries += 1;
                }
                Err(HandError::Gone(source)) => {
                    return Err(ExecError::Io { what: "handing the request to its child", source });
                }
                Err(HandError::Exec(e)) => return Err(e),
            }
        };
        // The child holds its own copy of the rows now.
        drop(rows);
        let zygote = handed.running.zygote.clone();
        let result = self.finish(handed, id, row_count, &limits, t0).await;
        if matches!(result, Err(ExecError::ZygoteGone | ExecError::Protocol(_))) {
            zygote.kill();
        }
        result
    }

    /// Give `spare` its request: the header with the rows' memfd, then (its
    /// cgroup's memory lowered to the request's and its wall clock started)
    /// the code and EOF. The child answers one byte once it has all of it
    /// and has lowered its own rlimits; then its channel is closed.
    async fn hand_over(
        &self,
        spare: Spare,
        header: &[u8],
        rows: &OwnedFd,
        code: &[u8],
        l: &ChildLimits,
    ) -> Result<Handover, HandError> {
        let Spare { running, channel, result, pid, pidfd } = spare;
        let mut stream = send_header(channel, header, rows).await.map_err(HandError::Gone)?;
        if let Some(c) = &running.cgroup {
            c.set_memory(l.memory_mb).map_err(|source| {
                HandError::Exec(ExecError::Io { what: "setting the child's memory limit", source })
            })?;
        }
        let (armed, cpu0) = (Instant::now(), usage::cpu_ns(pid));
        running.zygote.arm(running.id, usage::monotonic_s(), l.timeout_s, cpu0);
        let confirmed = async {
            stream.write_all(code).await?;
            stream.shutdown().await?;
            let mut ack = [0u8; 1];
            match stream.read(&mut ack).await? {
                1 => Ok(()),
                _ => {
                    Err(std::io::Error::other("the child closed its channel without confirming its request"))
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs_f64(l.timeout_s) + BACKSTOP, confirmed).await {
            Ok(Ok(())) => Ok(Handover { running, result, pid, pidfd, armed, cpu0 }),
            Ok(Err(e)) => Err(HandError::Gone(e)),
            Err(_) => {
                Err(HandError::Exec(ExecError::Protocol("the child never confirmed its request".into())))
            }
        }
    }

    /// Read the child's result, end it, classify.
    async fn finish(
        &self,
        h: Handover,
        id: Uuid,
        row_count: usize,
        l: &ChildLimits,
        t0: Instant,
    ) -> Result<Outcome, ExecError> {
        let Handover { mut running, result, pid, pidfd, armed, cpu0 } = h;
        let deadline =
            tokio::time::Instant::from_std(armed) + Duration::from_secs_f64(l.timeout_s) + BACKSTOP;
        let backstop = || {
            ExecError::Protocol(format!(
                "no report from the zygote {:.0} s after the wall-clock limit",
                BACKSTOP.as_secs_f64()
            ))
        };
        let t_handed = t0.elapsed();
        let cap = l.max_output_bytes + l.max_stdout_bytes + l.max_stderr_bytes + RESULT_SLACK;
        let frame = match tokio::time::timeout_at(deadline, read_result(result, cap)).await {
            Ok(read) => Frame::parse(
                read.map_err(|source| ExecError::Io { what: "reading the child's result", source })?,
            ),
            Err(_) => return Err(backstop()),
        };
        // How long it ran, as of its result (not of the kill below).
        let wall = armed.elapsed().as_secs_f64();
        // The result is in (or over its cap): the request is not over while
        // its process lives, so it is killed now (code that wrote a result
        // and kept running included), through its pidfd, with its CPU and
        // peak memory read from the kernel just before (`usage`), never from
        // its own report. The zygote reaps it off the request path (the
        // guard releases its uid and cgroup then). Without a result, or if
        // it had already ended, how the process ended decides: the zygote's
        // `exited` report.
        let t_frame = t0.elapsed();
        if let Frame::Complete(r) = &frame {
            tracing::debug!(execution_id = %id, timings = ?r.timings, "child steps");
        }
        // In this order: the figures, then the kill that proves them.
        let mut ended = None;
        if !matches!(frame, Frame::Missing)
            && let Some((cpu, peak)) = usage::live_account(pid)
            && usage::kill(&pidfd).is_ok()
        {
            running.killed = true;
            ended = Some(protocol::Exit {
                exit_code: None,
                signal: Some(nix::sys::signal::Signal::SIGKILL as i32),
                cpu_ms: cpu.saturating_sub(cpu0) / 1_000_000,
                maxrss_kb: peak,
                wall_ms: wall * 1000.0,
                // Past its limit, the zygote's wall clock had it anyway.
                killed: Some(if wall >= l.timeout_s { "wall_clock" } else { "request_ended" }.into()),
            });
        }
        let mut exit = match ended {
            Some(exit) => exit,
            None => {
                let events = running.events.as_mut().ok_or(ExecError::ZygoteGone)?;
                let exit = match tokio::time::timeout_at(deadline, wait_exit(events)).await {
                    Ok(exit) => exit?,
                    Err(_) => return Err(backstop()),
                };
                running.reaped = true;
                exit
            }
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            execution_id = %id,
            child = pid,
            handed_ms = ms(t_handed),
            run_ms = ms(t_frame - t_handed),
            exit_ms = ms(t0.elapsed() - t_frame),
            "sandbox steps"
        );
        let oom = running.cgroup.as_ref().map(|c| c.oom_killed());
        // The process's peak RSS misses pages it no longer maps (tmpfs,
        // memfd); the cgroup was charged for them.
        if let Some(peak) = running.cgroup.as_ref().and_then(|c| c.peak_kb()) {
            exit.maxrss_kb = exit.maxrss_kb.max(peak);
        }
        Ok(outcome::classify(l, row_count, exit, frame, oom))
    }
}
