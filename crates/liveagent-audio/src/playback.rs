//! The jitter buffer and interruption logic shared by [`SoundDevicePlayer`](crate::SoundDevicePlayer)
//! and [`WavSink`](crate::WavSink).
//!
//! Two halves joined by lock-free single-producer/single-consumer rings:
//!
//! - [`PlaybackQueue`] lives in the actor. It receives `SynthesizedAudio` and `Interrupted`,
//!   resamples audio to the output rate, numbers each assistant item with a sequence number,
//!   and pushes samples plus `(seq, frames)` segment markers into the rings.
//! - [`Renderer`] lives in the audio callback (or the WAV sink's clock). It never blocks or
//!   allocates: it pops samples, gates playback on the prebuffer, counts played frames per
//!   item, honours cuts (`cut_seq`, an atomic) at the start of every period, and reports item
//!   ends back through a third ring.
//!
//! Played milliseconds are counted where samples are handed to the device, not when they are
//! queued.
//!
//! The queue (ring plus what waits in the actor) is capped by duration
//! ([`QueueOptions::max_queued`]): audio arriving while it is full is dropped, with the rest
//! of its item (so the played position stays a prefix of what the provider produced and a
//! truncation stays exact), the item is reported `interrupted` with what was played, and an
//! `AudioDropped` event says how much was dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use liveagent_core::events::Id;
use liveagent_core::{
    AudioDropped, AudioPlaybackStarted, Interrupted, LatencySamples, LiveError, LiveEvent,
    PlaybackStopped, SynthesizedAudio,
};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::convert::MonoResampler;

#[derive(Clone, Copy, Debug)]
struct Segment {
    seq: u64,
    frames: usize,
    /// The resampler's tail of an item: resuming with it after running dry is no underrun.
    tail: bool,
}

#[derive(Clone, Copy, Debug)]
enum Report {
    /// The first frames of the item were handed to the output.
    Started { seq: u64 },
    /// The item ended because the next one started.
    Finished { seq: u64, frames: u64 },
    /// The item was cut by an interruption after `frames` were played.
    Cut { seq: u64, frames: u64 },
    /// The queue ran dry while playing the item.
    Dry { seq: u64, frames: u64 },
}

/// Counters and flags shared by the queue, the renderer and stats queries.
#[derive(Debug)]
pub(crate) struct Shared {
    epoch: Instant,
    cut_seq: AtomicU64,
    cut_ack: AtomicU64,
    release: AtomicBool,
    pub(crate) played_frames: AtomicU64,
    pub(crate) silent_frames: AtomicU64,
    pub(crate) underruns: AtomicU64,
    pub(crate) underrun_frames: AtomicU64,
    pub(crate) renders: AtomicU64,
    pub(crate) xruns: AtomicU64,
    /// Output callbacks that arrived after the audio buffered by the previous one had played
    /// out (the device ran dry without reporting an xrun).
    pub(crate) late_callbacks: AtomicU64,
    /// Device underruns (xruns or late callbacks) while speech was playing: audible.
    pub(crate) device_underruns: AtomicU64,
    /// Set by the error callback on an xrun, cleared by the next output callback (so that
    /// the late callback after an xrun is not counted twice).
    pub(crate) xrun_flag: AtomicBool,
    /// The last output callback handed audio (not only silence) to the device.
    pub(crate) last_audible: AtomicBool,
    lost_reports: AtomicU64,
    cur_seq: AtomicU64,
    cur_frames: AtomicU64,
    /// Nanoseconds after `epoch` at which the first silent frame after the last cut reaches
    /// the speaker (callback time + the device's reported output latency); 0 = none yet.
    cut_silent_at_ns: AtomicU64,
}

impl Shared {
    fn new() -> Self {
        Shared {
            epoch: Instant::now(),
            cut_seq: AtomicU64::new(0),
            cut_ack: AtomicU64::new(0),
            release: AtomicBool::new(false),
            played_frames: AtomicU64::new(0),
            silent_frames: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            underrun_frames: AtomicU64::new(0),
            renders: AtomicU64::new(0),
            xruns: AtomicU64::new(0),
            late_callbacks: AtomicU64::new(0),
            device_underruns: AtomicU64::new(0),
            xrun_flag: AtomicBool::new(false),
            last_audible: AtomicBool::new(false),
            lost_reports: AtomicU64::new(0),
            cur_seq: AtomicU64::new(0),
            cur_frames: AtomicU64::new(0),
            cut_silent_at_ns: AtomicU64::new(0),
        }
    }

    /// Records that the first silent frame after a cut reaches the speaker `output_delay`
    /// from now.
    pub(crate) fn mark_cut_silent(&self, output_delay: Duration) {
        let at = self.epoch.elapsed() + output_delay;
        self.cut_silent_at_ns
            .store((at.as_nanos() as u64).max(1), Ordering::Release);
    }

    fn cut_silent_at(&self) -> Option<Instant> {
        match self.cut_silent_at_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }
}

/// What one [`Renderer::render`] call produced.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rendered {
    /// Frames of queued audio at the start of the buffer; the rest is silence.
    pub audio_frames: usize,
    /// True when this call applied a new interruption cut.
    pub cut: bool,
}

/// The real-time half: owned by the audio callback.
pub(crate) struct Renderer {
    samples: HeapCons<f32>,
    segments: HeapCons<Segment>,
    reports: HeapProd<Report>,
    shared: Arc<Shared>,
    prebuffer: usize,
    playing: bool,
    seg: Option<Segment>,
    item: Option<(u64, u64)>,
    dry: Option<u64>,
    last_cut: u64,
}

impl Renderer {
    fn report(&mut self, r: Report) {
        if self.reports.try_push(r).is_err() {
            self.shared.lost_reports.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn apply_cut(&mut self, cut: u64) {
        if let Some(seg) = self.seg {
            if seg.seq <= cut {
                self.samples.skip(seg.frames);
                self.seg = None;
            }
        }
        while let Some(seg) = self.segments.first().copied() {
            if seg.seq > cut {
                break;
            }
            self.segments.try_pop();
            self.samples.skip(seg.frames);
        }
        if let Some((seq, frames)) = self.item {
            if seq <= cut {
                self.report(Report::Cut { seq, frames });
                self.item = None;
                self.dry = None;
            }
        }
        self.playing = false;
    }

    fn begin(&mut self, seg: Segment) {
        match self.item {
            Some((seq, _)) if seq == seg.seq => {
                if let Some(d) = self.dry.take() {
                    if !seg.tail {
                        self.shared.underruns.fetch_add(1, Ordering::Relaxed);
                        self.shared.underrun_frames.fetch_add(d, Ordering::Relaxed);
                    }
                }
            }
            Some((seq, frames)) => {
                self.report(Report::Finished { seq, frames });
                self.report(Report::Started { seq: seg.seq });
                self.item = Some((seg.seq, 0));
                self.dry = None;
            }
            None => {
                self.report(Report::Started { seq: seg.seq });
                self.item = Some((seg.seq, 0));
                self.dry = None;
            }
        }
        self.shared.cur_seq.store(seg.seq, Ordering::Relaxed);
    }

    /// Fills `out` (mono frames at the output rate) with queued audio or silence.
    pub(crate) fn render(&mut self, out: &mut [f32]) -> Rendered {
        self.shared.renders.fetch_add(1, Ordering::Relaxed);
        let mut result = Rendered::default();
        let cut = self.shared.cut_seq.load(Ordering::Acquire);
        if cut != self.last_cut {
            self.apply_cut(cut);
            self.last_cut = cut;
            self.shared.cut_ack.store(cut, Ordering::Release);
            result.cut = true;
        }
        if !self.playing {
            let avail = self.samples.occupied_len();
            if avail > 0 && (avail >= self.prebuffer || self.shared.release.load(Ordering::Acquire))
            {
                self.playing = true;
            }
        }
        let mut written = 0;
        if self.playing {
            while written < out.len() {
                let seg = match self.seg {
                    Some(seg) => seg,
                    None => match self.segments.try_pop() {
                        Some(seg) => {
                            self.begin(seg);
                            self.seg = Some(seg);
                            seg
                        }
                        None => {
                            self.playing = false;
                            if let (Some((seq, frames)), None) = (self.item, self.dry) {
                                self.dry = Some(0);
                                self.report(Report::Dry { seq, frames });
                            }
                            break;
                        }
                    },
                };
                let n = seg.frames.min(out.len() - written);
                let got = self.samples.pop_slice(&mut out[written..written + n]);
                if got < n {
                    // Cannot happen (samples are pushed before their marker); stay silent.
                    out[written + got..written + n].fill(0.0);
                }
                written += n;
                if let Some((_, frames)) = self.item.as_mut() {
                    *frames += n as u64;
                    self.shared.cur_frames.store(*frames, Ordering::Relaxed);
                }
                let left = seg.frames - n;
                self.seg = (left > 0).then_some(Segment {
                    frames: left,
                    ..seg
                });
            }
        }
        out[written..].fill(0.0);
        let silent = (out.len() - written) as u64;
        if let Some(d) = self.dry.as_mut() {
            *d += silent;
        }
        self.shared
            .played_frames
            .fetch_add(written as u64, Ordering::Relaxed);
        self.shared
            .silent_frames
            .fetch_add(silent, Ordering::Relaxed);
        result.audio_frames = written;
        result
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemState {
    Active,
    Dry(Instant),
    CutPending,
    Done,
}

#[derive(Debug)]
struct Item {
    seq: u64,
    id: Id,
    response_id: Option<Id>,
    base_frames: u64,
    frames: u64,
    state: ItemState,
    /// `AudioPlaybackStarted` was published for this item (or for the earlier part of
    /// the same assistant item).
    announced: bool,
    /// Audio of this item was dropped because the queue was full: the rest of it is dropped
    /// too, and it is reported interrupted.
    overflowed: bool,
}

/// Playback counters, from the player's or the WAV sink's `GetPlaybackStats` message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlaybackStats {
    /// Output sample rate (the device's, or the WAV file's).
    pub output_rate: u32,
    /// Milliseconds of assistant audio handed to the output.
    pub played_ms: u64,
    /// Milliseconds of silence handed to the output (idle, prebuffering, underruns).
    pub silence_ms: u64,
    /// Times the queue ran dry in the middle of an item (network jitter larger than the
    /// prebuffer); silence was played, never stale audio.
    pub underruns: u64,
    /// Milliseconds of silence inserted by those underruns.
    pub underrun_ms: u64,
    /// Xruns the audio device reported (its own buffer ran empty), with or without speech
    /// playing.
    pub device_xruns: u64,
    /// Output callbacks that came after the audio buffered by the previous one had played
    /// out (the device ran dry without an xrun report), with or without speech playing.
    pub late_callbacks: u64,
    /// Device underruns while speech was playing (an xrun or a late callback right after a
    /// period that held audio): the glitches a listener can hear, and what makes the
    /// adaptive device buffer grow. Reported as `PlaybackUnderrun { kind: Device }`.
    pub device_underruns: u64,
    /// Frames per device period in use now (0: the host's default, size unknown).
    pub device_buffer_frames: u32,
    /// Times the adaptive device buffer grew (the output stream was rebuilt).
    pub device_buffer_resizes: u64,
    /// Render periods (audio callbacks) so far.
    pub periods: u64,
    /// Milliseconds of audio waiting to be played.
    pub queued_ms: u64,
    /// `SynthesizedAudio` chunks received.
    pub chunks_received: u64,
    /// Chunks dropped because they belonged to an interrupted item or response.
    pub chunks_dropped_late: u64,
    /// Milliseconds of audio dropped because the queue was full (audio arriving far faster
    /// than it plays; see `max_queue_ms` on the player and the WAV sink).
    pub dropped_full_ms: u64,
    /// Items whose playback ended (played out or interrupted).
    pub items_finished: u64,
    /// Interruptions that cut audio.
    pub interruptions: u64,
    /// For the last interruption: time from handling `Interrupted` to the moment the first
    /// silent frame reaches the speaker (callback time plus the device's output latency).
    pub last_interrupt_to_silence: Option<Duration>,
    /// When the last handled interruption's silence reached the speaker (for benchmarks that
    /// time from their own `publish`).
    pub last_silence_at: Option<Instant>,
    /// Latency added by the library to synthesized audio: from the moment its frame was read
    /// from the socket ([`AudioChunk::origin`](liveagent_core::AudioChunk::origin)) until its
    /// samples are in the buffer the output callback consumes. Empty unless enabled with
    /// `measure_latency(n)` on the player or sink builder.
    pub socket_to_output: LatencySamples,
}

/// Options of the playback queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueOptions {
    pub output_rate: u32,
    pub prebuffer: Duration,
    pub ring: Duration,
    /// After running dry, how long without new audio of the item before it counts as played
    /// out.
    pub item_end: Duration,
    /// How long to wait for the renderer to acknowledge a cut before reporting anyway.
    pub cut_timeout: Duration,
    /// Most audio waiting to be played (ring plus what waits in the actor); audio arriving
    /// past it is dropped.
    pub max_queued: Duration,
}

/// Default of [`QueueOptions::max_queued`] beyond the prebuffer: 20 s. Real providers send a
/// long answer several times faster than real time, so the queue legitimately holds many
/// seconds; a flood (audio at 50x real time) is cut there.
pub(crate) const DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER: Duration = Duration::from_secs(20);

/// At most one `AudioDropped` report per this interval while the queue overflows.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// The actor half of the playback logic.
pub(crate) struct PlaybackQueue {
    samples: HeapProd<f32>,
    segments: HeapProd<Segment>,
    reports: HeapCons<Report>,
    pub(crate) shared: Arc<Shared>,
    opts: QueueOptions,
    resampler: MonoResampler,
    scratch: Vec<f32>,
    pending: VecDeque<(u64, Vec<f32>, usize, bool)>,
    /// Frames in `pending` not yet pushed into the ring.
    pending_frames: usize,
    /// Frames dropped because the queue was full, not reported yet.
    unreported_drop: u64,
    last_drop_report: Option<Instant>,
    items: VecDeque<Item>,
    next_seq: u64,
    last_enqueue: Option<Instant>,
    tail_flushed: bool,
    dead_items: VecDeque<Id>,
    dead_responses: VecDeque<Id>,
    cut_wait: Option<(u64, Instant)>,
    interrupt_at: Option<Instant>,
    stats: PlaybackStats,
    dropped_full_frames: u64,
}

const DEAD_MEMORY: usize = 64;

impl PlaybackQueue {
    /// A queue for audio arriving at `source_rate`, and its renderer.
    pub(crate) fn new(
        source_rate: u32,
        opts: QueueOptions,
    ) -> Result<(PlaybackQueue, Renderer), LiveError> {
        let ring_frames = (opts.output_rate as u64 * opts.ring.as_millis() as u64 / 1000)
            .max(opts.output_rate as u64 / 10) as usize;
        let (sp, sc) = HeapRb::<f32>::new(ring_frames).split();
        let (gp, gc) = HeapRb::<Segment>::new(4096).split();
        let (rp, rc) = HeapRb::<Report>::new(1024).split();
        let shared = Arc::new(Shared::new());
        let prebuffer =
            (opts.output_rate as u64 * opts.prebuffer.as_millis() as u64 / 1000) as usize;
        let renderer = Renderer {
            samples: sc,
            segments: gc,
            reports: rp,
            shared: shared.clone(),
            prebuffer: prebuffer.min(ring_frames / 2),
            playing: false,
            seg: None,
            item: None,
            dry: None,
            last_cut: 0,
        };
        let queue = PlaybackQueue {
            samples: sp,
            segments: gp,
            reports: rc,
            shared,
            opts,
            resampler: MonoResampler::new(source_rate, opts.output_rate)?,
            scratch: Vec::with_capacity(8192),
            pending: VecDeque::new(),
            pending_frames: 0,
            unreported_drop: 0,
            last_drop_report: None,
            items: VecDeque::new(),
            next_seq: 0,
            last_enqueue: None,
            tail_flushed: true,
            dead_items: VecDeque::new(),
            dead_responses: VecDeque::new(),
            cut_wait: None,
            interrupt_at: None,
            dropped_full_frames: 0,
            stats: PlaybackStats {
                output_rate: opts.output_rate,
                ..Default::default()
            },
        };
        Ok((queue, renderer))
    }

    fn remember_dead(list: &mut VecDeque<Id>, id: &Id) {
        if !list.iter().any(|d| d == id) {
            if list.len() >= DEAD_MEMORY {
                list.pop_front();
            }
            list.push_back(id.clone());
        }
    }

    fn flush_tail(&mut self) {
        if self.tail_flushed {
            return;
        }
        self.tail_flushed = true;
        let Some(seq) = self.items.back().map(|i| i.seq) else {
            return;
        };
        self.scratch.clear();
        self.resampler.flush(&mut self.scratch);
        if !self.scratch.is_empty() {
            let overflowed = self.items.back().is_some_and(|i| i.overflowed);
            if overflowed {
                self.scratch.clear();
                return;
            }
            self.pending_frames += self.scratch.len();
            self.pending
                .push_back((seq, std::mem::take(&mut self.scratch), 0, true));
            self.scratch = Vec::with_capacity(8192);
        }
    }

    /// Pushes waiting samples into the rings, as far as they have room.
    fn pump(&mut self) {
        while let Some((seq, data, off, tail)) = self.pending.front_mut() {
            if self.segments.vacant_len() == 0 {
                break;
            }
            let n = self.samples.push_slice(&data[*off..]);
            if n == 0 {
                break;
            }
            let _ = self.segments.try_push(Segment {
                seq: *seq,
                frames: n,
                tail: *tail,
            });
            *off += n;
            self.pending_frames -= n;
            if *off == data.len() {
                self.pending.pop_front();
            } else {
                break;
            }
        }
    }

    /// Keeps the last `n` socket-to-output latencies (0 = measure nothing).
    pub(crate) fn measure_latency(&mut self, n: usize) {
        self.stats.socket_to_output = LatencySamples::new(n);
    }

    /// Queues a chunk of synthesized audio.
    pub(crate) fn on_audio(&mut self, ev: &SynthesizedAudio, now: Instant) {
        self.stats.chunks_received += 1;
        if ev.audio.is_empty() || ev.audio.sample_rate == 0 {
            return;
        }
        let dead_item = self.dead_items.iter().any(|d| *d == ev.item_id);
        let dead_resp = ev
            .response_id
            .as_ref()
            .is_some_and(|r| self.dead_responses.iter().any(|d| d == r));
        if dead_item || dead_resp {
            self.stats.chunks_dropped_late += 1;
            return;
        }
        let continuing = self.items.back().is_some_and(|i| {
            i.id == ev.item_id && matches!(i.state, ItemState::Active | ItemState::Dry(_))
        });
        if !continuing {
            self.flush_tail();
            let base = self
                .items
                .iter()
                .rev()
                .find(|i| i.id == ev.item_id && i.state == ItemState::Done)
                .map(|i| i.base_frames + i.frames)
                .unwrap_or(0);
            self.next_seq += 1;
            self.items.push_back(Item {
                seq: self.next_seq,
                id: ev.item_id.clone(),
                response_id: ev.response_id.clone(),
                base_frames: base,
                frames: 0,
                state: ItemState::Active,
                announced: base > 0,
                overflowed: false,
            });
            while self.items.len() > 32
                && self
                    .items
                    .front()
                    .is_some_and(|i| i.state == ItemState::Done)
            {
                self.items.pop_front();
            }
        } else if let Some(item) = self.items.back_mut() {
            item.state = ItemState::Active;
        }
        if ev.audio.sample_rate != self.resampler.in_rate() {
            self.flush_tail();
            match MonoResampler::new(ev.audio.sample_rate, self.opts.output_rate) {
                Ok(r) => self.resampler = r,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping synthesized audio with a bad sample rate");
                    return;
                }
            }
        }
        let seq = self.next_seq;
        self.scratch.clear();
        self.resampler
            .process_i16(&ev.audio.samples, &mut self.scratch);
        self.tail_flushed = self.resampler.is_passthrough();
        self.cap_scratch();
        if !self.scratch.is_empty() {
            let data = std::mem::replace(&mut self.scratch, Vec::with_capacity(8192));
            self.pending_frames += data.len();
            self.pending.push_back((seq, data, 0, false));
        }
        self.last_enqueue = Some(now);
        self.shared.release.store(false, Ordering::Release);
        self.pump();
        if let (Some(origin), true) = (ev.audio.origin, self.pending.is_empty()) {
            self.stats.socket_to_output.record(origin.elapsed());
        }
    }

    /// True when nothing is playing or waiting to play: no item is active, drying out or
    /// being cut, and the rings are empty. A safe point to rebuild the output stream.
    pub(crate) fn is_idle(&self) -> bool {
        self.queued_frames() == 0
            && self.cut_wait.is_none()
            && self.items.iter().all(|i| i.state == ItemState::Done)
    }

    /// Frames waiting to be played (ring plus pending).
    fn queued_frames(&self) -> usize {
        self.samples.occupied_len() + self.pending_frames
    }

    /// Applies the duration cap to the freshly resampled `scratch` of the newest item: keeps
    /// what fits, drops the rest (and, once the item overflowed, all of its later audio).
    fn cap_scratch(&mut self) {
        if self.scratch.is_empty() {
            return;
        }
        let max =
            (self.opts.output_rate as u128 * self.opts.max_queued.as_millis() / 1000) as usize;
        let room = max.saturating_sub(self.queued_frames());
        let Some(item) = self.items.back_mut() else {
            return;
        };
        let keep = if item.overflowed {
            0
        } else {
            room.min(self.scratch.len())
        };
        if keep == self.scratch.len() {
            return;
        }
        if !item.overflowed {
            item.overflowed = true;
            tracing::warn!(
                item = %item.id,
                max_queued_ms = self.opts.max_queued.as_millis() as u64,
                "playback queue full (audio arrives far faster than it plays); dropping the rest of the item"
            );
        }
        let dropped = (self.scratch.len() - keep) as u64;
        self.scratch.truncate(keep);
        self.unreported_drop += dropped;
        self.dropped_full_frames += dropped;
        self.stats.dropped_full_ms = self.ms(self.dropped_full_frames);
    }

    /// The `AudioDropped` report for audio dropped because the queue was full, at most one
    /// per second while it overflows.
    pub(crate) fn take_dropped(&mut self, now: Instant) -> Option<AudioDropped> {
        if self.unreported_drop == 0 {
            return None;
        }
        if self
            .last_drop_report
            .is_some_and(|t| now.saturating_duration_since(t) < DROP_REPORT_EVERY)
        {
            return None;
        }
        self.last_drop_report = Some(now);
        let frames = std::mem::take(&mut self.unreported_drop);
        let dropped_ms = self.ms(frames);
        Some(AudioDropped {
            source: "player".into(),
            dropped_ms,
            reason: format!(
                "the playback queue was full ({} ms): synthesized audio arrives far faster than it plays",
                self.opts.max_queued.as_millis()
            ),
        })
    }

    /// Stops playback at once and drops the audio of every item queued so far.
    pub(crate) fn on_interrupted(&mut self, ev: &Interrupted, now: Instant) {
        if let Some(id) = &ev.item_id {
            Self::remember_dead(&mut self.dead_items, id);
        }
        if let Some(id) = &ev.response_id {
            Self::remember_dead(&mut self.dead_responses, id);
        }
        let mut any = false;
        for item in self.items.iter_mut() {
            if matches!(item.state, ItemState::Active | ItemState::Dry(_)) {
                item.state = ItemState::CutPending;
                any = true;
                Self::remember_dead(&mut self.dead_items, &item.id);
                if let Some(r) = &item.response_id {
                    Self::remember_dead(&mut self.dead_responses, r);
                }
            }
        }
        if !any {
            return;
        }
        self.stats.interruptions += 1;
        self.pending.clear();
        self.pending_frames = 0;
        self.resampler.reset();
        self.tail_flushed = true;
        self.last_enqueue = None;
        let cut = self.next_seq;
        self.shared.cut_seq.store(cut, Ordering::Release);
        self.cut_wait = Some((cut, now + self.opts.cut_timeout));
        self.interrupt_at = Some(now);
    }

    fn ms(&self, frames: u64) -> u64 {
        frames * 1000 / self.opts.output_rate.max(1) as u64
    }

    fn stopped(&mut self, idx: usize, interrupted: bool) -> PlaybackStopped {
        let item = &mut self.items[idx];
        item.state = ItemState::Done;
        // An item whose audio was dropped for a full queue was not heard in full.
        let interrupted = interrupted || item.overflowed;
        let frames = item.base_frames + item.frames;
        let id = item.id.clone();
        self.stats.items_finished += 1;
        PlaybackStopped {
            item_id: id,
            played_ms: self.ms(frames),
            interrupted,
        }
    }

    /// [`tick_events`](Self::tick_events), keeping only the `PlaybackStopped` events.
    #[cfg(test)]
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<PlaybackStopped> {
        self.tick_events(now)
            .into_iter()
            .filter_map(|e| match e {
                LiveEvent::PlaybackStopped(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Periodic work: moves waiting audio into the ring, reads the renderer's reports and
    /// returns the events to publish, in order: [`AudioPlaybackStarted`] when the first
    /// sample of an assistant item reached the output, [`PlaybackStopped`] when it ended.
    pub(crate) fn tick_events(&mut self, now: Instant) -> Vec<LiveEvent> {
        let mut out: Vec<LiveEvent> = Vec::new();
        let ack = self.shared.cut_ack.load(Ordering::Acquire);
        while let Some(report) = self.reports.try_pop() {
            let (seq, frames) = match report {
                Report::Started { seq } => {
                    if let Some(item) = self.items.iter_mut().find(|i| i.seq == seq) {
                        if !item.announced {
                            item.announced = true;
                            out.push(
                                AudioPlaybackStarted {
                                    item_id: item.id.clone(),
                                    response_id: item.response_id.clone(),
                                }
                                .into(),
                            );
                        }
                    }
                    continue;
                }
                Report::Finished { seq, frames }
                | Report::Cut { seq, frames }
                | Report::Dry { seq, frames } => (seq, frames),
            };
            let Some(idx) = self.items.iter().position(|i| i.seq == seq) else {
                continue;
            };
            self.items[idx].frames = frames;
            match (report, self.items[idx].state) {
                (Report::Finished { .. }, ItemState::Active | ItemState::Dry(_)) => {
                    out.push(self.stopped(idx, false).into());
                }
                (Report::Dry { .. }, ItemState::Active | ItemState::Dry(_)) => {
                    self.items[idx].state = ItemState::Dry(now);
                }
                _ => {}
            }
        }
        if let Some((cut, deadline)) = self.cut_wait {
            let acked = ack >= cut;
            if acked || now >= deadline {
                if !acked {
                    tracing::warn!("audio output did not acknowledge the interruption in time");
                }
                let cur_seq = self.shared.cur_seq.load(Ordering::Relaxed);
                let cur_frames = self.shared.cur_frames.load(Ordering::Relaxed);
                for idx in 0..self.items.len() {
                    if self.items[idx].state == ItemState::CutPending {
                        if !acked && self.items[idx].seq == cur_seq {
                            self.items[idx].frames = self.items[idx].frames.max(cur_frames);
                        }
                        out.push(self.stopped(idx, true).into());
                    }
                }
                self.cut_wait = None;
                if acked {
                    if let (Some(t0), Some(t1)) = (self.interrupt_at, self.shared.cut_silent_at()) {
                        self.stats.last_interrupt_to_silence =
                            Some(t1.saturating_duration_since(t0));
                        self.stats.last_silence_at = Some(t1);
                    }
                }
            }
        }
        self.pump();
        if let Some(t) = self.last_enqueue {
            if now.saturating_duration_since(t) >= self.opts.prebuffer {
                self.flush_tail();
                self.pump();
                self.shared.release.store(true, Ordering::Release);
            }
        }
        let item_end = self.opts.item_end;
        let pending_seqs: Vec<u64> = self.pending.iter().map(|p| p.0).collect();
        for idx in 0..self.items.len() {
            if let ItemState::Dry(since) = self.items[idx].state {
                let seq = self.items[idx].seq;
                if now.saturating_duration_since(since) >= item_end
                    && !pending_seqs.contains(&seq)
                    && self.samples.occupied_len() == 0
                {
                    out.push(self.stopped(idx, false).into());
                }
            }
        }
        out
    }

    /// The output is going away: reports every unfinished item as interrupted, with the
    /// frames played so far (after the events still due).
    pub(crate) fn abandon(&mut self) -> Vec<LiveEvent> {
        let mut out = self.tick_events(Instant::now());
        let cur_seq = self.shared.cur_seq.load(Ordering::Relaxed);
        let cur_frames = self.shared.cur_frames.load(Ordering::Relaxed);
        for idx in 0..self.items.len() {
            if self.items[idx].state != ItemState::Done {
                if self.items[idx].seq == cur_seq {
                    self.items[idx].frames = self.items[idx].frames.max(cur_frames);
                }
                out.push(self.stopped(idx, true).into());
            }
        }
        self.pending.clear();
        self.pending_frames = 0;
        out
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> PlaybackStats {
        let s = &self.shared;
        let mut stats = self.stats.clone();
        stats.played_ms = self.ms(s.played_frames.load(Ordering::Relaxed));
        stats.silence_ms = self.ms(s.silent_frames.load(Ordering::Relaxed));
        stats.underruns = s.underruns.load(Ordering::Relaxed);
        stats.underrun_ms = self.ms(s.underrun_frames.load(Ordering::Relaxed));
        stats.device_xruns = s.xruns.load(Ordering::Relaxed);
        stats.late_callbacks = s.late_callbacks.load(Ordering::Relaxed);
        stats.device_underruns = s.device_underruns.load(Ordering::Relaxed);
        stats.periods = s.renders.load(Ordering::Relaxed);
        stats.queued_ms = self.ms(self.queued_frames() as u64);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveagent_core::AudioChunk;

    fn opts(prebuffer_ms: u64) -> QueueOptions {
        QueueOptions {
            output_rate: 1000,
            prebuffer: Duration::from_millis(prebuffer_ms),
            ring: Duration::from_secs(10),
            item_end: Duration::from_millis(100),
            cut_timeout: Duration::from_millis(500),
            max_queued: Duration::from_secs(10),
        }
    }

    fn chunk(item: &str, samples: Vec<i16>) -> SynthesizedAudio {
        SynthesizedAudio {
            response_id: Some("resp".into()),
            item_id: item.into(),
            audio: AudioChunk::new(samples, 1000),
        }
    }

    fn to_i16(v: &[f32]) -> Vec<i16> {
        v.iter().map(|x| crate::convert::f32_to_pcm16(*x)).collect()
    }

    #[test]
    fn prebuffers_then_plays_in_order_and_reports_items() {
        let (mut q, mut r) = PlaybackQueue::new(1000, opts(50)).unwrap();
        let t0 = Instant::now();
        q.on_audio(&chunk("a", (1..=30).collect()), t0);
        let mut buf = [0f32; 20];
        // 30 < 50 frames of prebuffer: silence
        assert_eq!(r.render(&mut buf).audio_frames, 0);
        q.on_audio(&chunk("a", (31..=60).collect()), t0);
        assert_eq!(r.render(&mut buf).audio_frames, 20);
        assert_eq!(to_i16(&buf), (1..=20).collect::<Vec<i16>>());
        q.on_audio(&chunk("b", vec![7; 10]), t0);
        let mut big = [0f32; 100];
        assert_eq!(r.render(&mut big).audio_frames, 50);
        assert_eq!(to_i16(&big[..40]), (21..=60).collect::<Vec<i16>>());
        assert_eq!(to_i16(&big[40..50]), vec![7; 10]);
        assert!(big[50..].iter().all(|x| *x == 0.0));
        let stopped = q.tick(t0);
        assert_eq!(stopped.len(), 1);
        assert_eq!(&*stopped[0].item_id, "a");
        assert_eq!(stopped[0].played_ms, 60);
        assert!(!stopped[0].interrupted);
        // b ran dry; after item_end without more audio it counts as played out
        let stopped = q.tick(t0 + Duration::from_millis(200));
        assert_eq!(stopped.len(), 1);
        assert_eq!((&*stopped[0].item_id, stopped[0].played_ms), ("b", 10));
        assert_eq!(q.stats().underruns, 0);
    }

    #[test]
    fn interruption_cuts_reports_and_drops_late_chunks() {
        let (mut q, mut r) = PlaybackQueue::new(1000, opts(0)).unwrap();
        let t0 = Instant::now();
        q.on_audio(&chunk("a", vec![100; 500]), t0);
        let mut buf = [0f32; 120];
        assert_eq!(r.render(&mut buf).audio_frames, 120);
        q.on_interrupted(&Interrupted::default(), t0);
        // no report before the renderer acknowledged the cut
        assert!(q.tick(t0).is_empty());
        let rendered = r.render(&mut buf);
        assert!(rendered.cut);
        assert_eq!(rendered.audio_frames, 0);
        assert!(buf.iter().all(|x| *x == 0.0));
        let stopped = q.tick(t0);
        assert_eq!(stopped.len(), 1);
        assert_eq!(
            (
                &*stopped[0].item_id,
                stopped[0].played_ms,
                stopped[0].interrupted
            ),
            ("a", 120, true)
        );
        // a late chunk of the cut item is dropped, a new item plays
        q.on_audio(&chunk("a", vec![100; 50]), t0);
        let mut c = chunk("c", vec![9; 50]);
        c.response_id = Some("resp2".into());
        q.on_audio(&c, t0);
        assert_eq!(r.render(&mut buf).audio_frames, 50);
        assert_eq!(to_i16(&buf[..50]), vec![9; 50]);
        assert_eq!(q.stats().chunks_dropped_late, 1);
    }

    #[test]
    fn underrun_plays_silence_and_is_counted() {
        let (mut q, mut r) = PlaybackQueue::new(1000, opts(0)).unwrap();
        let t0 = Instant::now();
        q.on_audio(&chunk("a", vec![5; 10]), t0);
        let mut buf = [0f32; 30];
        assert_eq!(r.render(&mut buf).audio_frames, 10);
        assert_eq!(r.render(&mut buf).audio_frames, 0);
        q.tick(t0);
        q.on_audio(&chunk("a", vec![6; 10]), t0);
        assert_eq!(r.render(&mut buf).audio_frames, 10);
        assert_eq!(to_i16(&buf[..10]), vec![6; 10]);
        assert!(buf[10..].iter().all(|x| *x == 0.0));
        let stats = q.stats();
        assert_eq!(stats.underruns, 1);
        assert_eq!(stats.underrun_ms, 50); // 20 + 30 silent frames at 1 kHz
    }
}
