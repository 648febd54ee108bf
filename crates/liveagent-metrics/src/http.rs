//! The `/metrics` route for an actix-web application.

use actix_web::{web, HttpResponse};

use crate::fleet::FleetMetrics;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl FleetMetrics {
    /// Mounts `GET /metrics` on an actix-web app:
    /// `App::new().configure(metrics.configure())`.
    ///
    /// ```no_run
    /// use actix_web::{App, HttpServer};
    /// use liveagent_metrics::FleetMetrics;
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let metrics = FleetMetrics::new();
    /// HttpServer::new(move || App::new().configure(metrics.configure()))
    ///     .bind("127.0.0.1:9090")?
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn configure(&self) -> impl Fn(&mut web::ServiceConfig) + Clone + 'static {
        let metrics = self.clone();
        move |cfg: &mut web::ServiceConfig| {
            let metrics = metrics.clone();
            cfg.route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render();
                    async move {
                        HttpResponse::Ok()
                            .insert_header(("content-type", CONTENT_TYPE))
                            .body(body)
                    }
                }),
            );
        }
    }
}
