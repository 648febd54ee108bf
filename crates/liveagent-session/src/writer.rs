//! [`FrameWriter`]: the session's socket writer, actix's `SinkWrite` without its second
//! wake-up per frame.
//!
//! `actix::io::SinkWrite` queues an item and wakes the actor's task on every `write`. When
//! the write comes from a mailbox handler (a microphone frame, a tool result, the deadline
//! tick) that wake-up is wasted: an actor's context handles its mailbox first and then polls
//! every future spawned on it, the writer included, in the same pass — so the frame is
//! already handed to the socket, and the wake only makes the runtime poll the whole actor a
//! second time (mailbox, stream reader, writer) with nothing to do. That was one extra actor
//! poll per outbound frame, ~2 writer polls per frame in the N=10 callgrind profile.
//!
//! [`FrameWriter::write_in_mailbox`] is for those writes: it queues without waking. Anything
//! else (the stream handler, timers, spawned futures) uses [`FrameWriter::write`], which
//! wakes as `SinkWrite` does, because the writer may already have been polled in that pass.
//! Apart from that the behaviour is `SinkWrite`'s: items go out in order, errors go to
//! [`WriteHandler::error`], [`WriteHandler::finished`] is called once the sink is closed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{self, Poll, Waker};

use actix::fut::ActorFuture;
use actix::io::WriteHandler;
use actix::prelude::*;
use futures_util::Sink;

/// Queues items for a sink; a future on the actor's context hands them to the sink.
pub(crate) struct FrameWriter<I, S: Sink<I> + Unpin> {
    inner: Rc<RefCell<Inner<I, S>>>,
}

struct Inner<I, S> {
    sink: S,
    buffer: VecDeque<I>,
    closing: bool,
    closed: bool,
    task: Option<Waker>,
}

impl<I: 'static, S: Sink<I> + Unpin + 'static> FrameWriter<I, S> {
    /// Starts writing to `sink` from a future spawned on `ctx`.
    pub(crate) fn new<A, C>(sink: S, ctx: &mut C) -> Self
    where
        A: Actor<Context = C> + WriteHandler<S::Error>,
        C: AsyncContext<A>,
    {
        let inner = Rc::new(RefCell::new(Inner {
            sink,
            buffer: VecDeque::new(),
            closing: false,
            closed: false,
            task: None,
        }));
        ctx.spawn(WriterFuture {
            inner: inner.clone(),
        });
        FrameWriter { inner }
    }

    /// Queues `item` and wakes the actor so that the writer runs; `Err(item)` once closing.
    pub(crate) fn write(&mut self, item: I) -> Result<(), I> {
        self.push(item, true)
    }

    /// Queues `item` without waking the actor. Only for a caller inside one of the actor's
    /// mailbox handlers: the context polls the writer right after its mailbox.
    pub(crate) fn write_in_mailbox(&mut self, item: I) -> Result<(), I> {
        self.push(item, false)
    }

    fn push(&mut self, item: I, wake: bool) -> Result<(), I> {
        let mut inner = self.inner.borrow_mut();
        if inner.closing {
            return Err(item);
        }
        inner.buffer.push_back(item);
        if wake {
            if let Some(task) = &inner.task {
                task.wake_by_ref();
            }
        }
        Ok(())
    }

    /// Closes the sink once the queued items are written.
    pub(crate) fn close(&mut self) {
        let mut inner = self.inner.borrow_mut();
        inner.closing = true;
        if let Some(task) = &inner.task {
            task.wake_by_ref();
        }
    }
}

struct WriterFuture<I, S> {
    inner: Rc<RefCell<Inner<I, S>>>,
}

impl<I: 'static, S, A> ActorFuture<A> for WriterFuture<I, S>
where
    S: Sink<I> + Unpin,
    A: Actor + WriteHandler<S::Error>,
    A::Context: AsyncContext<A>,
{
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut A::Context,
        cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        // Everything queued, or until the sink is not ready (it wakes us when it is).
        while let Poll::Ready(Ok(())) = Pin::new(&mut inner.sink).poll_ready(cx) {
            let Some(item) = inner.buffer.pop_front() else {
                break;
            };
            let _ = Pin::new(&mut inner.sink).start_send(item);
        }
        if !inner.closing {
            if let Poll::Ready(Err(e)) = Pin::new(&mut inner.sink).poll_flush(cx) {
                if act.error(e, ctx) == Running::Stop {
                    act.finished(ctx);
                    return Poll::Ready(());
                }
            }
        } else {
            debug_assert!(!inner.closed);
            match Pin::new(&mut inner.sink).poll_close(cx) {
                Poll::Ready(Err(e)) => {
                    let running = act.error(e, ctx);
                    if running == Running::Stop {
                        act.finished(ctx);
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Ok(())) if inner.buffer.is_empty() => {
                    inner.closed = true;
                    act.finished(ctx);
                    return Poll::Ready(());
                }
                _ => {}
            }
        }
        // The same task every time: clone its waker only when it changed.
        match &inner.task {
            Some(task) if task.will_wake(cx.waker()) => {}
            _ => inner.task = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
