//! Local realtime server speaking the OpenAI Realtime and Gemini Live wire protocols on 127.0.0.1: the offline provider for demos and the peer of every test.
