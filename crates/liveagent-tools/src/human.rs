//! Human input in the middle of a tool call (AG2's `context.input(...)` and `hitl_hook`):
//! a tool calls [`ToolContext::input`](crate::ToolContext::input), the conversation carries a
//! [`HumanInputRequest`], and an answer comes back as a [`HumanMessage`] from
//!
//! - the toolbox's [`HumanInputHook`], when one is set (a UI prompt, a policy, a test);
//! - otherwise anyone on the bus: a UI publishing `HumanMessage` (or calling
//!   `ConversationContext::answer`);
//! - or, in voice mode ([`Toolbox::human_input_voice`](crate::Toolbox::human_input_voice)),
//!   the user's voice: the agent is asked to speak the question and the next completed
//!   transcript of the user's speech is the answer.
//!
//! Every middleware's [`on_human_input`](crate::ToolMiddleware::on_human_input) sees (and may
//! rewrite) the answer before the tool gets it. The time spent waiting for a human does not
//! count against the tool's timeout; it has its own limit
//! ([`Toolbox::human_input_timeout`](crate::Toolbox::human_input_timeout), default 5 min).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};
use liveagent_core::{HumanInputRequest, HumanMessage, InputTranscriptChunk, UserText};

use crate::error::ToolError;
use crate::middleware::ToolMiddleware;
use crate::tool::ToolContext;

/// Answers [`HumanInputRequest`]s (AG2 `hitl_hook` for `context.input`).
///
/// Any `Fn(HumanInputRequest) -> impl Future<Output = String>` closure is a hook:
///
/// ```
/// use liveagent_tools::Toolbox;
/// let toolbox = Toolbox::new().human_input(|req: liveagent_core::HumanInputRequest| async move {
///     format!("yes ({})", req.question)
/// });
/// # let _ = toolbox;
/// ```
pub trait HumanInputHook: Send + Sync + 'static {
    /// The answer to `request`.
    fn answer<'a>(&'a self, request: &'a HumanInputRequest) -> LocalBoxFuture<'a, String>;
}

impl<F, Fut> HumanInputHook for F
where
    F: Fn(HumanInputRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + 'static,
{
    fn answer<'a>(&'a self, request: &'a HumanInputRequest) -> LocalBoxFuture<'a, String> {
        self(request.clone()).boxed_local()
    }
}

/// How a toolbox gets human input (cloned into each call's context).
#[derive(Clone)]
pub(crate) struct HumanInput {
    pub(crate) hook: Option<Arc<dyn HumanInputHook>>,
    pub(crate) voice: bool,
    pub(crate) timeout: Duration,
    pub(crate) middleware: Vec<Arc<dyn ToolMiddleware>>,
}

/// Time a call spent waiting for humans, so the tool's timeout can leave it out.
#[derive(Debug, Default)]
pub(crate) struct HumanClock {
    waiting: usize,
    since: Option<Instant>,
    total: Duration,
}

impl HumanClock {
    pub(crate) fn waited(&self) -> Duration {
        self.total + self.since.map(|s| s.elapsed()).unwrap_or_default()
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting > 0
    }
}

pub(crate) type SharedClock = Arc<Mutex<HumanClock>>;

struct Waiting(SharedClock);

impl Waiting {
    fn start(clock: &SharedClock) -> Self {
        let mut c = clock.lock().unwrap_or_else(|e| e.into_inner());
        if c.waiting == 0 {
            c.since = Some(Instant::now());
        }
        c.waiting += 1;
        Waiting(clock.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.waiting = c.waiting.saturating_sub(1);
        if c.waiting == 0 {
            if let Some(since) = c.since.take() {
                c.total += since.elapsed();
            }
        }
    }
}

/// Runs `fut`, failing with a timeout after `limit` of its own time, not counting the time
/// `clock` reports as spent waiting for humans.
pub(crate) async fn timeout_excluding_humans<F: Future>(
    limit: Duration,
    clock: &SharedClock,
    fut: F,
) -> Result<F::Output, ()> {
    let start = Instant::now();
    let mut fut = std::pin::pin!(fut);
    let mut deadline = start + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), &mut fut).await {
            Ok(out) => return Ok(out),
            Err(_) => {
                let (waited, waiting) = {
                    let c = clock.lock().unwrap_or_else(|e| e.into_inner());
                    (c.waited(), c.is_waiting())
                };
                let next = start + limit + waited;
                if waiting {
                    // Still asking a human: look again once the tool's own time could end.
                    deadline = Instant::now().max(next) + limit.min(Duration::from_secs(1));
                } else if next > Instant::now() {
                    deadline = next;
                } else {
                    return Err(());
                }
            }
        }
    }
}

pub(crate) async fn ask(cx: &ToolContext, question: &str) -> Result<String, ToolError> {
    let human = cx.human().cloned().unwrap_or_else(|| HumanInput {
        hook: None,
        voice: false,
        timeout: crate::toolbox::DEFAULT_APPROVAL_TIMEOUT,
        middleware: Vec::new(),
    });
    let n = cx.next_input_number();
    let request = HumanInputRequest {
        request_id: format!("{}:input-{n}", cx.call_id()).into(),
        question: question.into(),
        call_id: Some(cx.call_id().clone()),
        tool: Some(cx.tool_name().clone()),
        voice: human.voice && human.hook.is_none(),
    };
    let _waiting = Waiting::start(cx.clock());
    let answer = match (cx.conversation(), &human.hook) {
        (conversation, Some(hook)) => {
            if let Some(c) = conversation {
                c.publish(request.clone());
            }
            let answer = tokio::time::timeout(human.timeout, hook.answer(&request))
                .await
                .map_err(|_| no_answer(&human, question))?;
            if let Some(c) = conversation {
                c.publish(HumanMessage {
                    request_id: request.request_id.clone(),
                    text: answer.as_str().into(),
                });
            }
            answer
        }
        (Some(c), None) => {
            // Listen before asking, so a fast answer is not missed.
            let mut answers = c.stream().only::<HumanMessage>();
            let mut spoken = request
                .voice
                .then(|| c.stream().only::<InputTranscriptChunk>());
            c.publish(request.clone());
            if request.voice {
                c.publish(UserText {
                    text: format!(
                        "[The tool `{}` needs an answer from the user before it can go on. Ask the user this question, briefly and in your own words, then wait for the reply: {question}]",
                        cx.tool_name()
                    )
                    .into(),
                    respond: true,
                });
            }
            let wait = async {
                loop {
                    let spoken_next = async {
                        match spoken.as_mut() {
                            Some(s) => s.next().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        msg = answers.next() => match msg {
                            Some(m) if m.request_id == request.request_id => return Some(m.text.to_string()),
                            Some(_) => {}
                            None => return None,
                        },
                        t = spoken_next => match t {
                            Some(t) if t.is_final && !t.text.trim().is_empty() => {
                                let text = t.text.trim().to_owned();
                                c.publish(HumanMessage {
                                    request_id: request.request_id.clone(),
                                    text: text.as_str().into(),
                                });
                                return Some(text);
                            }
                            Some(_) => {}
                            None => return None,
                        },
                    }
                }
            };
            match tokio::time::timeout(human.timeout, wait).await {
                Ok(Some(answer)) => answer,
                Ok(None) => return Err(ToolError::msg("the conversation ended before the user answered")),
                Err(_) => return Err(no_answer(&human, question)),
            }
        }
        (None, None) => {
            return Err(ToolError::msg(format!(
                "tool `{}` asked the user \"{question}\" but nobody can answer here (no conversation and no human input hook)",
                cx.tool_name()
            )))
        }
    };
    let mut answer = answer;
    for middleware in human.middleware.iter().rev() {
        middleware.on_human_input(&request, &mut answer);
    }
    Ok(answer)
}

fn no_answer(human: &HumanInput, question: &str) -> ToolError {
    ToolError::msg(format!(
        "the user did not answer \"{question}\" within {} s",
        human.timeout.as_secs_f32()
    ))
}
