//! Serving the router on a listener until the process ends. Connections are
//! served by hyper directly (not `axum::serve`) so that slow clients cannot
//! hold the server: headers must arrive within `HEADER_TIMEOUT`, bodies
//! within `BODY_TIMEOUT`, and at most `MAX_CONNECTIONS` are open at once
//! (past that, new connections wait in the kernel's accept queue). A stop
//! drains the connections instead of cutting them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::app::App;

/// A client must send its request line and headers within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// … and the whole body within this after the headers.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most.
pub const MAX_CONNECTIONS: usize = 1024;
/// At a stop, how long open connections get to finish their request.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    serve_until(listener, app, std::future::pending()).await
}

/// Serve until `stop` resolves; then stop accepting, let each connection
/// finish the request it is on (idle keep-alive connections close), and
/// return once they have, or after `DRAIN_TIMEOUT`.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let router = super::router(app);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            permit = slots.clone().acquire_owned() => {
                let permit = permit.expect("the semaphore is never closed");
                tokio::select! {
                    () = &mut stop => break,
                    c = listener.accept() => c.map(|c| (c, permit)),
                }
            }
        };
        let ((stream, addr), permit) = match accepted {
            Ok(c) => c,
            // Out of fds or a connection reset before accept: keep serving.
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(|b| Body::from_stream(within(BODY_TIMEOUT, Body::new(b))));
            req.extensions_mut().insert(ConnectInfo(addr));
            router.clone().oneshot(req)
        });
        let draining = draining.clone();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let conn = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = draining.cancelled() => None,
            };
            let ended = match ended {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(client = %addr, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    draining.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        tracing::warn!(open = connections.len(), "connections still open after the drain; closing them");
    }
    Ok(())
}

/// The body's frames, ending in an error if they have not all arrived
/// within `limit` (a client trickling bytes cannot hold a request open).
fn within(
    limit: Duration,
    body: Body,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Send {
    let deadline = tokio::time::Instant::now() + limit;
    futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut s = state?;
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => Some((
                Err(axum::Error::new(format!(
                    "the request body did not arrive within {} s",
                    limit.as_secs()
                ))),
                None,
            )),
        }
    })
}
