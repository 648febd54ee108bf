#!/usr/bin/env bash
# Sets up what is missing and runs the liveagent demo.
# Without OPENAI_API_KEY / GEMINI_API_KEY it talks to the bundled local realtime server
# (offline). On a machine without a sound card it speaks a question from a WAV file and
# writes the agent's answer to demo-answer.wav. `scripts/demo.sh serve [--port N]` serves the
# agent to a browser tab on 127.0.0.1 instead. `scripts/demo.sh --cascade` runs cascade mode
# (speech-to-text → LLM → text-to-speech: the local server's fake stages offline, OpenAI's with
# OPENAI_API_KEY, `--llm-base-url` for a local LLM). Extra arguments go to the demo binary
# (see `scripts/demo.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo-only
exec cargo run -q --release -p liveagent-demo -- "$@"
