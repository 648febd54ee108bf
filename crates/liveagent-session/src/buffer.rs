//! [`PendingCommands`]: what the application asked for while the session was not ready.

use std::collections::VecDeque;
use std::time::Duration;

use liveagent_core::SessionCommand;

/// Commands held while the session is connecting or reconnecting, in arrival order.
///
/// Audio is bounded by duration: past the bound the oldest audio is dropped (and counted).
/// Every other command (tool results, text, control) is kept, so nothing the model must see
/// is lost.
///
/// ```
/// use std::time::Duration;
/// use liveagent_core::{AudioChunk, SessionCommand, ControlCommand};
/// use liveagent_session::buffer::PendingCommands;
///
/// let mut pending = PendingCommands::new(Duration::from_millis(40));
/// for _ in 0..3 {
///     pending.push(SessionCommand::Audio(AudioChunk::silence(20, 24_000)));
/// }
/// pending.push(SessionCommand::Control(ControlCommand::CreateResponse));
/// assert_eq!(pending.take_dropped_us(), 20_000); // one 20 ms chunk over the 40 ms bound
/// assert_eq!(pending.drain().count(), 3);       // two audio chunks and the command
/// ```
#[derive(Debug)]
pub struct PendingCommands {
    queue: VecDeque<SessionCommand>,
    audio_us: u64,
    max_audio_us: u64,
    dropped_us: u64,
}

impl PendingCommands {
    /// An empty queue holding at most `max_audio` of audio.
    pub fn new(max_audio: Duration) -> Self {
        PendingCommands {
            queue: VecDeque::new(),
            audio_us: 0,
            max_audio_us: max_audio.as_micros() as u64,
            dropped_us: 0,
        }
    }

    /// Queues a command, dropping the oldest audio if the audio bound is exceeded.
    pub fn push(&mut self, command: SessionCommand) {
        if let SessionCommand::Audio(chunk) = &command {
            self.audio_us += chunk.duration_us();
        }
        self.queue.push_back(command);
        while self.audio_us > self.max_audio_us {
            let Some(pos) = self
                .queue
                .iter()
                .position(|c| matches!(c, SessionCommand::Audio(_)))
            else {
                break;
            };
            if let Some(SessionCommand::Audio(chunk)) = self.queue.remove(pos) {
                self.audio_us -= chunk.duration_us();
                self.dropped_us += chunk.duration_us();
            }
        }
    }

    /// Microphone audio dropped since the last call, in microseconds.
    pub fn take_dropped_us(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_us)
    }

    /// Audio currently held, in microseconds.
    pub fn audio_us(&self) -> u64 {
        self.audio_us
    }

    /// Number of commands held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes every held command, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = SessionCommand> + '_ {
        self.audio_us = 0;
        self.queue.drain(..)
    }
}
