//! Microphone recorder and speaker player actors for liveagent (cpal + rubato), and WAV-file peers for headless use.
