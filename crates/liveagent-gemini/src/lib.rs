//! Gemini Live provider for liveagent: configuration, wire types and the protocol state machine.
