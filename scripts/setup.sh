#!/usr/bin/env bash
# Installs what liveagent's demo and tests need on a Debian machine, skipping what is there:
# system packages (ALSA headers for cpal, espeak-ng/sox for test speech, PulseAudio for the
# real-time audio tests, redis-server for the conversation-store tests, headless Chromium +
# chromedriver for the browser-transport test) and the protocol validator's Python venv.
# Usage: scripts/setup.sh [--demo-only]
set -euo pipefail
cd "$(dirname "$0")/.."

demo_pkgs=(pkg-config libasound2-dev espeak-ng sox)
test_pkgs=(pulseaudio pulseaudio-utils libasound2-plugins alsa-utils python3-venv redis-server chromium chromium-driver)
pkgs=("${demo_pkgs[@]}")
[ "${1:-}" = "--demo-only" ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust (https://rustup.rs) and run this again." >&2
  exit 1
fi

if [ "${1:-}" != "--demo-only" ]; then
  shared=${LIVEAGENT_SHARED:-../shared}
  if [ -x "$shared/protocols/validate" ] || [ -f "$shared/protocols/validate" ]; then
    # The first run builds the validator's venv (openai + google-genai SDKs from PyPI).
    if ! out=$(bash "$shared/protocols/validate" -q "$shared/protocols/examples/openai_ga.jsonl" 2>&1); then
      echo "$out" >&2
      echo "setup: the protocol validator could not be set up" >&2
      exit 1
    fi
  else
    echo "setup: $shared/protocols/validate not found: the protocol tests need ../shared beside the repository" >&2
    exit 1
  fi
fi
echo "setup: ok"
