//! LiveAgent: full-duplex voice agents over realtime APIs, as an actix actor runtime.
