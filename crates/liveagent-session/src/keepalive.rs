//! Liveness of one connection: client pings, the idle-read deadline and the stalled-write
//! deadline ([`SessionOptions::ping_interval`](crate::SessionOptions::ping_interval),
//! [`idle_timeout`](crate::SessionOptions::idle_timeout),
//! [`write_timeout`](crate::SessionOptions::write_timeout)).
//!
//! A provider (or a wedged proxy, a dead NAT entry) can stop sending and stop reading
//! without closing the TCP connection. Nothing fails then: writes go into kernel buffers
//! and reads just wait. [`Liveness`] notices it from two sides:
//!
//! - **reads**: every frame (a pong too) refreshes the read clock; the client pings every
//!   `ping_interval`, so a live peer is never silent for long;
//! - **writes**: [`CountingSink`] counts the frames the socket really accepted and flushed;
//!   a frame handed to the writer that is still not flushed `write_timeout` later means the
//!   peer stopped reading.
//!
//! The deadlines are checked on a [`Tick`] from [`spawn_ticker`].

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Sink;

/// A sink wrapper that counts the items that were handed to the inner sink and flushed.
pub(crate) struct CountingSink<S> {
    inner: S,
    sent: u64,
    flushed: Rc<Cell<u64>>,
}

impl<S> CountingSink<S> {
    /// Wraps `inner`; `flushed` is updated each time everything sent so far was flushed.
    pub(crate) fn new(inner: S, flushed: Rc<Cell<u64>>) -> Self {
        CountingSink {
            inner,
            sent: 0,
            flushed,
        }
    }
}

impl<I, S: Sink<I> + Unpin> Sink<I> for CountingSink<S> {
    type Error = S::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: I) -> Result<(), S::Error> {
        self.sent += 1;
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let sent = self.sent;
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = res {
            self.flushed.set(sent);
            liveagent_core::probe::MicProbe::flushed();
        }
        res
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Why a connection was found dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dead {
    /// Nothing arrived for this long.
    Silent(Duration),
    /// A frame could not be written for this long.
    Stalled(Duration),
}

impl Dead {
    /// The reason, for the error event and the reconnect event.
    pub(crate) fn reason(&self) -> String {
        match self {
            Dead::Silent(d) => format!(
                "no data and no pong from the provider for {} ms: the connection is half-open or the provider is stuck",
                d.as_millis()
            ),
            Dead::Stalled(d) => format!(
                "the provider stopped reading: a frame could not be written for {} ms",
                d.as_millis()
            ),
        }
    }
}

/// The clocks of one connection.
pub(crate) struct Liveness {
    last_read: Instant,
    last_ping: Instant,
    written: u64,
    flushed: Rc<Cell<u64>>,
    /// Since when a written frame has been waiting to be flushed.
    unflushed_since: Option<(u64, Instant)>,
}

impl Liveness {
    /// Fresh clocks for a connection opened now; `flushed` is its [`CountingSink`]'s counter.
    pub(crate) fn new(flushed: Rc<Cell<u64>>) -> Self {
        let now = Instant::now();
        Liveness {
            last_read: now,
            last_ping: now,
            written: 0,
            flushed,
            unflushed_since: None,
        }
    }

    /// Something arrived from the peer.
    pub(crate) fn on_read(&mut self) {
        self.last_read = Instant::now();
    }

    /// A frame was handed to the writer.
    pub(crate) fn on_write(&mut self) {
        self.written += 1;
        if self.unflushed_since.is_none() {
            self.unflushed_since = Some((self.written, Instant::now()));
        }
    }

    /// True when every frame handed to the writer has been flushed to the socket.
    pub(crate) fn all_flushed(&self) -> bool {
        self.flushed.get() >= self.written
    }

    /// True when a ping is due (and records it as sent).
    pub(crate) fn ping_due(&mut self, interval: Duration) -> bool {
        if interval.is_zero() || self.last_ping.elapsed() < interval {
            return false;
        }
        self.last_ping = Instant::now();
        true
    }

    /// Checks both deadlines (a zero duration disables one).
    pub(crate) fn check(&mut self, idle: Duration, write: Duration) -> Option<Dead> {
        let flushed = self.flushed.get();
        if let Some((waiting_for, since)) = self.unflushed_since {
            if flushed >= self.written {
                self.unflushed_since = None;
            } else if flushed >= waiting_for {
                // That frame went out; the oldest unflushed one is newer.
                self.unflushed_since = Some((flushed + 1, Instant::now()));
            } else if !write.is_zero() && since.elapsed() >= write {
                return Some(Dead::Stalled(write));
            }
        }
        if !idle.is_zero() && self.last_read.elapsed() >= idle {
            return Some(Dead::Silent(idle));
        }
        None
    }
}

/// The clock of the session's deadline checks (`SessionActor::tick`).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Tick;

/// Sends the session at `addr` a [`Tick`] every `period` until it has ended.
///
/// A task of its own rather than `ctx.run_interval`: an actor polls every future spawned on
/// its context each time it wakes, so an interval there meant a timer poll for every
/// microphone frame and every provider frame (a per-session cost in the N=1000 profile), not
/// one per period.
pub(crate) fn spawn_ticker<A>(addr: actix::WeakAddr<A>, period: Duration)
where
    A: actix::Actor + actix::Handler<Tick>,
    A::Context: actix::dev::ToEnvelope<A, Tick>,
{
    actix::spawn(async move {
        let start = tokio::time::Instant::now() + period;
        let mut interval = tokio::time::interval_at(start, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match addr.upgrade() {
                Some(addr) if addr.connected() => addr.do_send(Tick),
                _ => break,
            }
        }
    });
}
