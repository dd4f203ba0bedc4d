//! Serving the router on a listener until the process ends. Connections are
//! served by hyper directly (not `axum::serve`) so that slow clients cannot
//! hold the server: headers must arrive within `HEADER_TIMEOUT`, bodies
//! within `BODY_TIMEOUT`, and at most `MAX_CONNECTIONS` are open at once
//! (past that, new connections wait in the kernel's accept queue).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::app::App;

/// A client must send its request line and headers within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// … and the whole body within this after the headers.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most.
pub const MAX_CONNECTIONS: usize = 1024;

pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let router = super::router(app);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (stream, addr) = match listener.accept().await {
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
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            if let Err(e) = http.serve_connection(TokioIo::new(stream), service).with_upgrades().await {
                tracing::debug!(client = %addr, "connection ended: {e}");
            }
            drop(permit);
        });
    }
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
