//! A custom observer actor: it receives the event kinds it asks for (here the session's
//! lifecycle, speech and responses) as typed messages, for the life of each conversation.

mod common;

use actix::prelude::*;
use liveagent::{
    EventFilter, LiveAgent, LiveEvent, ResponseDone, SessionClosed, SessionOpened, SpeechStarted,
    SpeechStopped,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Logs the turns of a conversation and counts completed responses.
struct TurnLogger {
    responses: Arc<AtomicU32>,
}

impl Actor for TurnLogger {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for TurnLogger {
    type Result = ();

    fn handle(&mut self, event: LiveEvent, _: &mut Context<Self>) {
        match event {
            LiveEvent::SessionOpened(e) => println!("[observer] session opened on {}", e.provider),
            LiveEvent::SpeechStarted(_) => println!("[observer] user started speaking"),
            LiveEvent::SpeechStopped(_) => println!("[observer] user stopped speaking"),
            LiveEvent::ResponseDone(r) => {
                self.responses.fetch_add(1, Ordering::SeqCst);
                println!(
                    "[observer] response {} {:?}, usage {:?}",
                    r.response_id, r.status, r.usage
                );
            }
            LiveEvent::SessionClosed(c) => println!("[observer] session closed: {}", c.reason),
            _ => {}
        }
    }
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let responses = Arc::new(AtomicU32::new(0));
    let counter = responses.clone();
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(common::openai_config("gpt-realtime-2", None).await)
        .observer(
            EventFilter::of::<SessionOpened>()
                .or::<SpeechStarted>()
                .or::<SpeechStopped>()
                .or::<ResponseDone>()
                .or::<SessionClosed>(),
            move |_context| {
                TurnLogger {
                    responses: counter.clone(),
                }
                .start()
                .recipient()
            },
        )
        .build()?;
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    anyhow::ensure!(
        responses.load(Ordering::SeqCst) > 0,
        "the observer saw no response"
    );
    Ok(())
}
