//! Human-in-the-loop approval: [`HitlHook`] and its verdict, [`Approval`].

use std::future::Future;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use liveagent_core::ToolCall;
use serde_json::Value;

use crate::tool::ToolContext;

/// The verdict of a [`HitlHook`] on one call.
#[derive(Clone, Debug, PartialEq)]
pub enum Approval {
    /// Run the call as the model made it.
    Approve,
    /// Do not run it; the model gets an error result with `reason`.
    Deny {
        /// Why, for the model (it may tell the user or try something else).
        reason: String,
    },
    /// Run it with these arguments instead.
    Edit {
        /// The arguments to use.
        arguments: Value,
    },
}

impl Approval {
    /// A denial with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Approval::Deny {
            reason: reason.into(),
        }
    }
}

/// An async approval step that runs before every tool call (after the
/// [middleware](crate::ToolMiddleware), right before the tool itself). A UI can ask the
/// user; a policy can deny or rewrite arguments.
///
/// The hook's wait counts against the toolbox's
/// [`approval_timeout`](crate::Toolbox::approval_timeout) (default 5 minutes), not against
/// the tool's timeout; when it expires the call is denied.
///
/// Any `Fn(ToolCall) -> impl Future<Output = Approval>` closure is a hook:
///
/// ```
/// use liveagent_tools::{Approval, Toolbox};
/// let toolbox = Toolbox::new().hitl(|call: liveagent_core::ToolCall| async move {
///     if &*call.name == "delete_account" {
///         Approval::deny("deleting accounts needs a human operator")
///     } else {
///         Approval::Approve
///     }
/// });
/// # let _ = toolbox;
/// ```
pub trait HitlHook: Send + Sync + 'static {
    /// Decides on `call` (its context gives the call id, dependencies and conversation).
    fn review<'a>(
        &'a self,
        call: &'a ToolCall,
        cx: &'a ToolContext,
    ) -> LocalBoxFuture<'a, Approval>;
}

impl<F, Fut> HitlHook for F
where
    F: Fn(ToolCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Approval> + 'static,
{
    fn review<'a>(
        &'a self,
        call: &'a ToolCall,
        _cx: &'a ToolContext,
    ) -> LocalBoxFuture<'a, Approval> {
        self(call.clone()).boxed_local()
    }
}
