//! [`ToolMiddleware`]: code wrapped around every tool call.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use liveagent_core::{HumanInputRequest, ToolCall};

use crate::tool::{ToolContext, ToolOutcome};
use crate::toolbox::Inner;

/// Wraps tool calls, around-style: logging, metrics, redaction, argument rewriting,
/// caching, short-circuiting.
///
/// ## Order
///
/// The first middleware registered is the outermost: with `[a, b]`, a call runs
/// `a` → `b` → approval ([`HitlHook`](crate::HitlHook)) → tool → back through `b` → `a`.
/// A middleware that does not call `next.run(..)` short-circuits everything inside it
/// (including approval and the tool). The tool's timeout covers the tool only; a
/// middleware is expected not to hang. Panics in middleware are caught like tool panics.
///
/// After the chain has produced the outcome, [`on_result`](Self::on_result) runs on every
/// middleware innermost-first (`b` then `a`), right before the result is published; it sees
/// every outcome, including those made without reaching the tool (unknown tool, denied
/// call, timeout, panic).
///
/// ```
/// use futures_util::future::{FutureExt, LocalBoxFuture};
/// use liveagent_core::{HumanInputRequest, ToolCall};
/// use liveagent_tools::{Next, ToolMiddleware, ToolOutcome};
///
/// /// Logs every call and its outcome.
/// struct Log;
/// impl ToolMiddleware for Log {
///     fn call<'a>(&'a self, call: ToolCall, next: Next) -> LocalBoxFuture<'a, ToolOutcome> {
///         async move {
///             tracing::info!(tool = %call.name, "calling");
///             let out = next.run(call).await;
///             tracing::info!(ok = out.is_ok(), "called");
///             out
///         }
///         .boxed_local()
///     }
/// }
/// ```
pub trait ToolMiddleware: Send + Sync + 'static {
    /// A name for logs.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Handles `call`; call `next.run(call)` to go on to the inner middleware, approval and
    /// the tool. The default just goes on.
    fn call<'a>(&'a self, call: ToolCall, next: Next) -> LocalBoxFuture<'a, ToolOutcome> {
        next.run(call).boxed_local()
    }

    /// Sees (and may rewrite, e.g. redact) the final outcome of `call` (the call as the
    /// model made it) before it is published. The default does nothing.
    fn on_result(&self, call: &ToolCall, output: &mut ToolOutcome) {
        let _ = (call, output);
    }

    /// Sees (and may rewrite) a human's answer to a tool's
    /// [`input`](crate::ToolContext::input) question before the tool gets it (AG2
    /// `on_human_input`); innermost middleware first. The default does nothing.
    fn on_human_input(&self, request: &HumanInputRequest, answer: &mut String) {
        let _ = (request, answer);
    }
}

/// The rest of the chain, handed to [`ToolMiddleware::call`].
pub struct Next {
    pub(crate) inner: Arc<Inner>,
    pub(crate) index: usize,
    pub(crate) cx: ToolContext,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("index", &self.index)
            .field("cx", &self.cx)
            .finish()
    }
}

impl Next {
    /// The call's context (call id, dependencies, conversation).
    pub fn context(&self) -> &ToolContext {
        &self.cx
    }

    /// Runs the inner middleware, approval and the tool on `call` (which may differ from
    /// the call this middleware received: rewritten arguments, another tool name).
    pub async fn run(self, call: ToolCall) -> ToolOutcome {
        match self.inner.middleware.get(self.index).cloned() {
            Some(middleware) => {
                let next = Next {
                    inner: self.inner.clone(),
                    index: self.index + 1,
                    cx: self.cx.clone(),
                };
                middleware.call(call, next).await
            }
            None => self.inner.terminal(call, self.cx).await,
        }
    }
}

/// A middleware from an async closure `|call, next| async move { next.run(call).await }`.
///
/// ```
/// use liveagent_tools::{middleware_fn, Toolbox};
/// let toolbox = Toolbox::new().middleware(middleware_fn(|mut call: liveagent_core::ToolCall, next| async move {
///     // Rewrite arguments before the tool sees them.
///     if let Some(city) = call.arguments.get_mut("city") {
///         *city = serde_json::json!(city.as_str().unwrap_or_default().trim());
///     }
///     next.run(call).await
/// }));
/// # let _ = toolbox;
/// ```
pub fn middleware_fn<F, Fut>(f: F) -> FnMiddleware<F>
where
    F: Fn(ToolCall, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ToolOutcome> + 'static,
{
    FnMiddleware(f)
}

/// A middleware made by [`middleware_fn`].
pub struct FnMiddleware<F>(F);

impl<F, Fut> ToolMiddleware for FnMiddleware<F>
where
    F: Fn(ToolCall, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ToolOutcome> + 'static,
{
    fn name(&self) -> &str {
        "middleware_fn"
    }

    fn call<'a>(&'a self, call: ToolCall, next: Next) -> LocalBoxFuture<'a, ToolOutcome> {
        (self.0)(call, next).boxed_local()
    }
}
