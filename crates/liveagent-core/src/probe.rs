//! [`MicProbe`]: where a microphone chunk spends its time between the capture callback and
//! the provider socket, stage by stage, for the benchmarks.
//!
//! Off by default: every [`mark`](MicProbe::mark) is then one relaxed atomic load. A
//! benchmark [`enable`](MicProbe::enable)s it, runs, and [`take`](MicProbe::take)s the
//! per-stage durations. Marks are keyed by the chunk's sample buffer (the `Arc` the
//! recorder allocates and every hop shares), so no field rides along with the audio. The
//! probe takes a mutex per mark while enabled: it is a measuring instrument, not something
//! to leave on in production, and it is never touched from an audio callback (the callback
//! stage is the chunk's [`origin`](crate::AudioChunk::origin)).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The stages of the microphone path, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicStage {
    /// The device callback that completed the chunk began (the chunk's `origin`).
    Callback = 0,
    /// The recorder woke up and started draining its ring.
    Woken = 1,
    /// The recorder published the chunk (after resampling and conversion).
    Published = 2,
    /// The event bus took the chunk from its mailbox.
    Bus = 3,
    /// The session actor's handler took the chunk from its mailbox.
    Session = 4,
    /// The protocol encoded the frame and the session handed it to its socket writer.
    Encoded = 5,
    /// The socket writer flushed the frame into the socket (the `write` syscall returned).
    Written = 6,
}

/// Number of [`MicStage`]s.
pub const MIC_STAGES: usize = 7;

/// Names of the stages, indexed by `MicStage as usize`.
pub const MIC_STAGE_NAMES: [&str; MIC_STAGES] = [
    "callback",
    "woken",
    "published",
    "bus",
    "session",
    "encoded",
    "written",
];

/// One chunk's stage times (nanoseconds after the probe's epoch; 0: not seen).
pub type StageTimes = [u64; MIC_STAGES];

#[derive(Default)]
struct State {
    open: HashMap<usize, StageTimes>,
    done: Vec<StageTimes>,
    cap: usize,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static STATE: OnceLock<Mutex<State>> = OnceLock::new();
static EPOCH: OnceLock<Instant> = OnceLock::new();

thread_local! {
    /// Chunks handed to a socket writer on this thread and not flushed yet.
    static UNFLUSHED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The microphone-path probe (see the [module docs](self)).
///
/// ```
/// use liveagent_core::probe::{MicProbe, MicStage};
/// use std::time::Instant;
/// MicProbe::enable(100);
/// let key = 0x1000;
/// MicProbe::mark_at(key, MicStage::Callback, Instant::now());
/// MicProbe::mark(key, MicStage::Session);
/// MicProbe::mark(key, MicStage::Written);
/// let done = MicProbe::take();
/// assert_eq!(done.len(), 1);
/// assert!(done[0][MicStage::Written as usize] >= done[0][MicStage::Callback as usize]);
/// ```
pub struct MicProbe;

impl MicProbe {
    /// Starts recording (keeps at most `cap` completed chunks) and forgets earlier marks.
    pub fn enable(cap: usize) {
        EPOCH.get_or_init(Instant::now);
        let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
        s.open.clear();
        s.done.clear();
        s.cap = cap;
        ENABLED.store(true, Ordering::Release);
    }

    /// Stops recording.
    pub fn disable() {
        ENABLED.store(false, Ordering::Release);
    }

    /// True while recording.
    #[inline]
    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// The key of a chunk: the address of its shared sample buffer.
    #[inline]
    pub fn key(samples: &std::sync::Arc<[i16]>) -> usize {
        std::sync::Arc::as_ptr(samples) as *const i16 as usize
    }

    /// Marks `stage` of chunk `key` now.
    #[inline]
    pub fn mark(key: usize, stage: MicStage) {
        if Self::enabled() {
            Self::mark_at(key, stage, Instant::now());
        }
    }

    /// Marks `stage` of chunk `key` at `at`. [`MicStage::Callback`] opens a chunk's record
    /// (forgetting an unfinished one under the same key); [`MicStage::Written`] closes it.
    pub fn mark_at(key: usize, stage: MicStage, at: Instant) {
        if !Self::enabled() {
            return;
        }
        let epoch = *EPOCH.get_or_init(Instant::now);
        let ns = at.saturating_duration_since(epoch).as_nanos() as u64;
        let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
        if stage == MicStage::Callback {
            let mut t = StageTimes::default();
            t[0] = ns.max(1);
            s.open.insert(key, t);
            return;
        }
        let Some(t) = s.open.get_mut(&key) else {
            return;
        };
        let i = stage as usize;
        if t[i] == 0 {
            t[i] = ns.max(1);
        }
        if stage == MicStage::Written {
            let t = s.open.remove(&key).unwrap_or_default();
            if s.done.len() < s.cap {
                s.done.push(t);
            }
        }
    }

    /// Notes that chunk `key` was handed to a socket writer on this thread; the next
    /// [`flushed`](Self::flushed) on this thread marks it [`MicStage::Written`].
    pub fn handed_to_writer(key: usize) {
        if Self::enabled() {
            Self::mark(key, MicStage::Encoded);
            UNFLUSHED.with(|u| u.borrow_mut().push(key));
        }
    }

    /// A socket writer on this thread flushed everything handed to it.
    #[inline]
    pub fn flushed() {
        if Self::enabled() {
            let now = Instant::now();
            UNFLUSHED.with(|u| {
                for key in u.borrow_mut().drain(..) {
                    Self::mark_at(key, MicStage::Written, now);
                }
            });
        }
    }

    /// The completed chunks so far (and stops nothing).
    pub fn take() -> Vec<StageTimes> {
        let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut s.done)
    }

    /// The span from stage `a` to stage `b` of one chunk, when both were seen.
    pub fn span(t: &StageTimes, a: MicStage, b: MicStage) -> Option<Duration> {
        let (x, y) = (t[a as usize], t[b as usize]);
        (x != 0 && y != 0).then(|| Duration::from_nanos(y.saturating_sub(x)))
    }
}

fn state() -> &'static Mutex<State> {
    STATE.get_or_init(|| Mutex::new(State::default()))
}
