//! The VAD turn detector on real speech (espeak-ng, through sox, as every speech test in
//! the workspace) and on sounds that are not a voice: each utterance is one turn with its
//! audio; silence, steady noise and a hum, loud enough to start the energy detector, start
//! no turn.

use liveagent_cascade::{
    Aggressiveness, SilenceTurnDetector, TurnDetector, TurnEvent, VadSettings, VadTurnDetector,
};
use liveagent_testkit::{silence_pcm, speech_pcm};

/// Feeds `pcm` in 20 ms chunks, as a microphone would.
fn feed(d: &mut dyn TurnDetector, pcm: &[i16], rate: u32) -> Vec<TurnEvent> {
    let chunk = (rate / 50) as usize;
    pcm.chunks(chunk).flat_map(|c| d.push(c, rate)).collect()
}

/// White noise of about `rms` (a deterministic generator).
fn noise(ms: u32, rate: u32, rms: f32) -> Vec<i16> {
    let mut x: u32 = 0x1234_5678;
    (0..rate * ms / 1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Uniform in [-1, 1) has an RMS of 1/sqrt(3).
            let u = (x as f32 / u32::MAX as f32) * 2.0 - 1.0;
            (u * rms * 3f32.sqrt()) as i16
        })
        .collect()
}

/// A mains hum with its harmonics (100 Hz, 200 Hz, 300 Hz).
fn hum(ms: u32, rate: u32, amplitude: f32) -> Vec<i16> {
    (0..rate * ms / 1000)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let v: f32 = [100.0f32, 200.0, 300.0]
                .iter()
                .map(|f| (t * f * std::f32::consts::TAU).sin() / 3.0)
                .sum();
            (v * amplitude) as i16
        })
        .collect()
}

fn turns(events: &[TurnEvent]) -> Vec<(u64, u64, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for e in events {
        match e {
            TurnEvent::Started { start_ms } => start = Some(*start_ms),
            TurnEvent::Stopped { end_ms, audio } => out.push((
                start.take().expect("start before stop"),
                *end_ms,
                audio.len(),
            )),
        }
    }
    out
}

#[test]
fn each_spoken_sentence_is_one_turn_at_every_rate() {
    for rate in [8_000, 16_000, 24_000, 48_000] {
        let speech = speech_pcm(
            "Hello there, what is the weather like in Paris today?",
            rate,
        );
        let speech_ms = speech.len() as u64 * 1000 / rate as u64;
        let mut pcm = silence_pcm(500, rate);
        pcm.extend(&speech);
        pcm.extend(silence_pcm(1500, rate));
        pcm.extend(speech_pcm("And tomorrow?", rate));
        pcm.extend(silence_pcm(1500, rate));
        let mut d = VadTurnDetector::default();
        let found = turns(&feed(&mut d, &pcm, rate));
        assert_eq!(
            found.len(),
            2,
            "two sentences, two turns at {rate} Hz: {found:?}"
        );
        let (start, end, samples) = found[0];
        // espeak's WAV has a little silence at its start; the voice starts within it.
        assert!(
            (450..=900).contains(&start),
            "the first turn starts with the voice at {rate} Hz: {start} ms"
        );
        // It ends 0.7 s after the voice, not later than the silence that follows.
        assert!(
            end >= 500 + speech_ms / 2 && end <= 500 + speech_ms + 800,
            "the first turn ends after the sentence at {rate} Hz: {end} ms ({speech_ms} ms of speech)"
        );
        // The turn's audio is at the input rate and holds the prefix padding.
        let audio_ms = samples as u64 * 1000 / rate as u64;
        assert!(
            audio_ms >= end - start + 250,
            "the turn keeps ~0.3 s from before the start at {rate} Hz: {audio_ms} ms for {start}..{end}"
        );
        assert!(!d.in_turn());
    }
}

#[test]
fn silence_noise_and_hum_start_no_turn() {
    let rate = 24_000;
    let sounds = [
        ("silence", silence_pcm(3000, rate)),
        ("white noise", noise(3000, rate, 2000.0)),
        ("hum", hum(3000, rate, 6000.0)),
    ];
    for (name, pcm) in &sounds {
        for aggressiveness in [
            Aggressiveness::LowBitrate,
            Aggressiveness::Aggressive,
            Aggressiveness::VeryAggressive,
        ] {
            let mut d = VadTurnDetector::new(VadSettings {
                aggressiveness,
                ..Default::default()
            });
            let events = feed(&mut d, pcm, rate);
            assert!(
                events.is_empty(),
                "{name} is no voice ({aggressiveness:?}): turns {:?}",
                turns(&events)
            );
        }
    }
    // The energy detector, for contrast, takes the loud ones for speech.
    for (name, pcm) in &sounds[1..] {
        let mut energy = SilenceTurnDetector::default();
        let events = feed(&mut energy, pcm, rate);
        assert!(
            matches!(events.first(), Some(TurnEvent::Started { .. })),
            "the energy detector starts a turn on {name}"
        );
    }
}

#[test]
fn speech_over_noise_is_still_heard() {
    let rate = 16_000;
    let speech = speech_pcm("Could you book a table for two at eight?", rate);
    let bed = noise(500 + speech.len() as u32 * 1000 / rate + 1500, rate, 300.0);
    let mut pcm = bed.clone();
    for (i, s) in speech.iter().enumerate() {
        let j = rate as usize / 2 + i;
        pcm[j] = pcm[j].saturating_add(*s);
    }
    for aggressiveness in [Aggressiveness::LowBitrate, Aggressiveness::Aggressive] {
        let mut d = VadTurnDetector::new(VadSettings {
            aggressiveness,
            ..Default::default()
        });
        let found = turns(&feed(&mut d, &pcm, rate));
        assert_eq!(found.len(), 1, "{aggressiveness:?}: {found:?}");
    }
}

#[test]
fn max_turn_cuts_and_commit_ends_a_turn() {
    let rate = 16_000;
    let speech = speech_pcm(
        "This is a rather long sentence that goes on and on without any pause at all.",
        rate,
    );
    let mut d = VadTurnDetector::new(VadSettings {
        max_turn: std::time::Duration::from_secs(1),
        ..Default::default()
    });
    let found = turns(&feed(&mut d, &speech, rate));
    assert!(!found.is_empty(), "a turn cut at 1 s");
    assert!(found[0].1 - found[0].0 <= 1100, "{found:?}");

    let mut d = VadTurnDetector::default();
    let events = feed(&mut d, &speech[..speech.len() / 2], rate);
    assert!(matches!(events.as_slice(), [TurnEvent::Started { .. }]));
    assert!(matches!(d.commit(), Some(TurnEvent::Stopped { .. })));
    assert!(!d.in_turn());
}
