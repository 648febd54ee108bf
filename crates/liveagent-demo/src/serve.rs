//! `liveagent-demo serve`: the agent in a browser tab. Serves the transport's page on
//! 127.0.0.1 and prints its URL; Ctrl-C closes every page's conversation cleanly.

use actix_web::{App, HttpServer};
use liveagent::LiveAgent;
use liveagent_transport::{BrowserTransport, OriginPolicy};

/// Serves `agent` to browser tabs on 127.0.0.1:`port` until Ctrl-C.
pub async fn serve(agent: LiveAgent, port: u16) -> anyhow::Result<()> {
    // Same-host Origin policy: only pages served by this app may open the socket.
    let transport = BrowserTransport::new(agent).origin_policy(OriginPolicy::SameHost);
    let mount = transport.clone();
    let server = HttpServer::new(move || App::new().configure(mount.configure()))
        .workers(1)
        // Small audio frames every 20 ms: no Nagle delays (see docs/transports.md).
        .tcp_nodelay(true)
        .disable_signals()
        .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!(
        "* open http://{addr}{} in a browser (Ctrl-C to stop)",
        transport.page_path()
    );
    println!("  (browsers allow the microphone on http only for localhost/127.0.0.1; see docs/transports.md for https)");
    liveagent_transport::serve(server.run(), [transport.shutdown_handle()]).await?;
    println!("* stopped; every conversation was closed");
    Ok(())
}
