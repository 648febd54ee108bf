//! [`CutProxy`]: a TCP proxy in front of the local server whose connections a test can cut
//! at any moment, a network fault (no close frame) on the real socket path.

use std::sync::Arc;

/// A TCP proxy in front of a server whose connections the test can cut at any moment: a
/// network fault (no close frame, no FIN from the server side first) on the real socket path.
pub struct CutProxy {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    cuts: Arc<std::sync::atomic::AtomicU64>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl CutProxy {
    /// Proxies 127.0.0.1:(free port) to `target`.
    pub async fn start(target: std::net::SocketAddr) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cut_tx = cut.clone();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_down = down.clone();
        actix::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound); // the network is down: connections fail at once
                    continue;
                }
                let mut cut_rx = cut_tx.subscribe();
                actix::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        CutProxy {
            addr,
            cut,
            cuts: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            down,
        }
    }

    /// The proxy's address: point a provider configuration at it instead of the server.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The OpenAI base URL through the proxy.
    pub fn openai_url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// Cuts every connection open now.
    pub fn cut(&self) {
        self.cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// A handle that can cut (for tools and spawned tasks).
    pub fn cutter(&self) -> impl Fn() + Send + Sync + Clone + 'static {
        let cut = self.cut.clone();
        let cuts = self.cuts.clone();
        move || {
            cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            cut.send_modify(|n| *n += 1);
        }
    }

    /// Takes the network down (new connections fail at once) or brings it back up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many cuts were made.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}
