//! [`doorbell`]: wakes an actor from an audio callback without a lock, an allocation or a
//! polling timer.
//!
//! The callback [`rings`](Doorbell::ring); the actor's context reads the [`Bell`] as a
//! stream of wake-ups. A ring that finds a wake-up already pending costs one atomic swap; the
//! first ring after the actor took its wake-up also writes one byte to a non-blocking Unix
//! datagram socket, which the actor's arbiter (a tokio runtime) sees through epoll like any
//! other socket. Neither side takes a user-space lock (a tokio `Waker` from another thread
//! would: the arbiter's `LocalSet` queues remote wake-ups under a mutex) and nothing
//! allocates after [`doorbell`] returns.
//!
//! On platforms without Unix sockets (Windows) the bell falls back to an atomic flag checked
//! by a 1 ms timer (the recorder's former polling); the callback side stays the same.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix::prelude::Stream;

/// The callback's end: [`ring`](Doorbell::ring) it after pushing samples.
pub(crate) struct Doorbell {
    pending: Arc<AtomicBool>,
    #[cfg(unix)]
    tx: std::os::unix::net::UnixDatagram,
}

impl Doorbell {
    /// Wakes the bell's reader unless a wake-up is already pending. Never blocks, never
    /// allocates, takes no lock: safe in a real-time audio callback.
    pub(crate) fn ring(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            #[cfg(unix)]
            {
                // Non-blocking; a full socket buffer means a wake-up is already queued.
                let _ = self.tx.send(&[1]);
            }
        }
    }
}

/// The actor's end before it is registered with the reactor of the arbiter that reads it.
pub(crate) struct BellSocket {
    pending: Arc<AtomicBool>,
    #[cfg(unix)]
    rx: std::os::unix::net::UnixDatagram,
}

/// The actor's end: a stream that yields `()` once per wake-up (rings coalesce).
pub(crate) struct Bell {
    pending: Arc<AtomicBool>,
    #[cfg(unix)]
    rx: tokio::net::UnixDatagram,
    #[cfg(not(unix))]
    tick: tokio::time::Interval,
}

/// A connected pair.
pub(crate) fn doorbell() -> io::Result<(Doorbell, BellSocket)> {
    let pending = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        let (tx, rx) = std::os::unix::net::UnixDatagram::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok((
            Doorbell {
                pending: pending.clone(),
                tx,
            },
            BellSocket { pending, rx },
        ))
    }
    #[cfg(not(unix))]
    {
        Ok((
            Doorbell {
                pending: pending.clone(),
            },
            BellSocket { pending },
        ))
    }
}

impl BellSocket {
    /// Registers the reader with the current tokio runtime (call it on the arbiter whose
    /// actor reads the bell, e.g. in `Actor::started`).
    pub(crate) fn register(self) -> io::Result<Bell> {
        #[cfg(unix)]
        {
            Ok(Bell {
                pending: self.pending,
                rx: tokio::net::UnixDatagram::from_std(self.rx)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Bell {
                pending: self.pending,
                tick: tokio::time::interval(std::time::Duration::from_millis(1)),
            })
        }
    }
}

impl Stream for Bell {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let this = self.get_mut();
        #[cfg(unix)]
        loop {
            match this.rx.poll_recv_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    tracing::error!(error = %e, "audio wake-up socket failed");
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(())) => {}
            }
            let mut buf = [0u8; 16];
            let mut got = false;
            loop {
                match this.rx.try_recv(&mut buf) {
                    Ok(_) => got = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::error!(error = %e, "audio wake-up socket failed");
                        return Poll::Ready(None);
                    }
                }
            }
            if got {
                // Acquire: everything the callback pushed before its ring is visible to the
                // reader's drain that follows; a push after this swap rings again.
                this.pending.swap(false, Ordering::AcqRel);
                return Poll::Ready(Some(()));
            }
        }
        #[cfg(not(unix))]
        loop {
            std::task::ready!(this.tick.poll_tick(cx));
            if this.pending.swap(false, Ordering::AcqRel) {
                return Poll::Ready(Some(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix::test]
    async fn rings_wake_the_reader_and_coalesce() {
        let (door, bell) = doorbell().unwrap();
        let mut bell = bell.register().unwrap();
        fn next(bell: &mut Bell) -> impl std::future::Future<Output = Option<()>> + '_ {
            std::future::poll_fn(move |cx| Pin::new(&mut *bell).poll_next(cx))
        }
        // Nothing rung: no wake-up.
        assert!(
            tokio::time::timeout(Duration::from_millis(30), next(&mut bell))
                .await
                .is_err()
        );
        // Three rings from another thread before the reader looks: one wake-up.
        let t = std::thread::spawn(move || {
            for _ in 0..3 {
                door.ring();
            }
            door
        });
        let door = t.join().unwrap();
        assert_eq!(next(&mut bell).await, Some(()));
        assert!(
            tokio::time::timeout(Duration::from_millis(30), next(&mut bell))
                .await
                .is_err()
        );
        // After the wake-up was taken, the next ring wakes again.
        door.ring();
        assert_eq!(next(&mut bell).await, Some(()));
    }
}
