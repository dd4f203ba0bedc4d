//! Serving the router on a listener until the process ends.

use std::sync::Arc;

use crate::service::App;

pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let router = crate::api::router(app);
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
}
