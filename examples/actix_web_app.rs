//! `LiveAgentSystem` inside an actix-web app: `POST /conversations` starts a conversation
//! (here fed from a WAV file, as a phone bridge or a browser would feed it), `GET /stats`
//! reports what a system-wide observer counted, and the app shuts every conversation down
//! cleanly when it stops.
//!
//! When run as an example it also plays its own client: it posts one conversation, waits for
//! the answer and stops the server.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use liveagent::{EventFilter, LiveAgent, LiveAgentSystem, LiveEvent, ResponseDone};

/// Counts completed responses across every conversation of the app.
struct Metrics {
    responses: Arc<AtomicU64>,
}

impl Actor for Metrics {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for Metrics {
    type Result = ();
    fn handle(&mut self, _: LiveEvent, _: &mut Context<Self>) {
        self.responses.fetch_add(1, Ordering::SeqCst);
    }
}

struct AppState {
    system: LiveAgentSystem,
    agent: LiveAgent,
    responses: Arc<AtomicU64>,
}

async fn start_conversation(state: web::Data<AppState>) -> HttpResponse {
    match state.system.run(&state.agent) {
        Ok(context) => match common::attach_audio(&context, true) {
            Ok(audio) => {
                actix::spawn(async move {
                    let _ = common::run_until_done(&context, audio).await;
                });
                HttpResponse::Created()
                    .json(serde_json::json!({ "conversations": state.system.len() }))
            }
            Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
        },
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "conversations": state.system.len(),
        "responses": state.responses.load(Ordering::SeqCst),
    }))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let responses = Arc::new(AtomicU64::new(0));
    let counter = responses.clone();
    let system = LiveAgentSystem::new().observer(EventFilter::of::<ResponseDone>(), move |_| {
        Metrics {
            responses: counter.clone(),
        }
        .start()
        .recipient()
    });
    let agent = LiveAgent::builder("phone-assistant")
        .prompt("You answer the phone for a bakery.")
        .config(common::openai_config("gpt-realtime-2", None).await)
        .build()?;
    let state = web::Data::new(AppState {
        system: system.clone(),
        agent,
        responses: responses.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/conversations", web::post().to(start_conversation))
            .route("/stats", web::get().to(stats))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let app = actix::spawn(server);
    println!("app listening on http://{addr}");

    // Play the client: start a conversation and wait until the observer saw an answer.
    let client = awc::Client::default();
    let created = client
        .post(format!("http://{addr}/conversations"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        created.status().is_success(),
        "POST /conversations: {}",
        created.status()
    );
    let mut answered = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body: serde_json::Value = client
            .get(format!("http://{addr}/stats"))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .json()
            .await?;
        if body["responses"].as_u64().unwrap_or(0) > 0 {
            println!("stats: {body}");
            answered = true;
            break;
        }
    }
    let all_stopped = system.shutdown().await;
    handle.stop(true).await;
    let _ = app.await;
    anyhow::ensure!(answered, "no conversation was answered");
    anyhow::ensure!(all_stopped, "some conversation actors did not stop");
    Ok(())
}
