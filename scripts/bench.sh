#!/usr/bin/env bash
# Runs liveagent's benchmarks against the local realtime server on 127.0.0.1 and prints their
# figures (RESULT lines; a summary at the end). See docs/performance.md for what each figure
# means. Bounded: about 12 minutes with the defaults.
#
# Knobs (environment):
#   SCALE_N=20,100,250,500,750,1000  session counts of the scale sweep (one process per N)
#   SCALE_SECS=30                measured seconds per scale run (plus ~10 s setup/warm-up)
#   PY_N=20,100                  session counts of the Python side-by-side runs (0 = skip them)
#   LAT_SESSIONS=20 LAT_SECS=12  latency runs (sessions x seconds of 20 ms chunks)
#   BARGE_TRIALS=20              barge-in trials
#   SKIP_AUDIO=1                 skip the benchmarks that need PulseAudio
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SCALE_N=${SCALE_N:-20,100,250,500,750,1000}
SCALE_SECS=${SCALE_SECS:-30}
PY_N=${PY_N:-20,100}
LAT_SESSIONS=${LAT_SESSIONS:-20}
LAT_SECS=${LAT_SECS:-12}
BARGE_TRIALS=${BARGE_TRIALS:-20}
LOG=$(mktemp /tmp/liveagent-bench.XXXX.log)

echo "== machine"
echo "nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); $(uname -sr)"
echo "rustc: $(rustc --version); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== building (release)"
cargo build -q --release -p liveagent-bench -p liveagent-server
BENCH=$CARGO_TARGET_DIR/release/liveagent-bench
SERVER=$CARGO_TARGET_DIR/release/liveagent-server

run() { echo "+ $*"; "$@" 2>&1 | tee -a "$LOG" || echo "(failed: $*)"; }

echo "== added latency, WavSink (no audio device needed)"
run "$BENCH" latency-out --sink wav --sessions "$LAT_SESSIONS" --secs "$LAT_SECS"

# A private PulseAudio with null sinks "mic" (its monitor is the microphone) and "spk" (the
# speaker), ALSA's default routed to it (the recipe of shared/audio/pulse-null-sinks.sh).
start_pulse() {
  command -v pulseaudio >/dev/null && command -v paplay >/dev/null || return 1
  PULSE_DIR=$(mktemp -d /tmp/pulse-bench.XXXX)
  export XDG_RUNTIME_DIR=$PULSE_DIR/run HOME=$PULSE_DIR/home
  mkdir -p -m 700 "$XDG_RUNTIME_DIR"; mkdir -p "$HOME"
  pulseaudio -n --daemonize=yes --exit-idle-time=-1 --log-target="file:$PULSE_DIR/pa.log" \
    -L module-native-protocol-unix \
    -L "module-null-sink sink_name=spk rate=24000 channels=1 format=s16le" \
    -L "module-null-sink sink_name=mic rate=24000 channels=1 format=s16le" || return 1
  trap 'pulseaudio --kill >/dev/null 2>&1 || true' EXIT
  for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
  export PULSE_SOURCE=mic.monitor PULSE_SINK=spk
  arecord -q -d 1 -f S16_LE -r 24000 -c 1 -t raw /dev/null 2>/dev/null || true
}

if [ "${SKIP_AUDIO:-0}" != 1 ] && start_pulse; then
  echo "== added latency, SoundDevicePlayer (cpal -> ALSA -> PulseAudio null sink)"
  run "$BENCH" latency-out --sink device --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" || true
  echo "== added latency, SoundDeviceRecorder (PulseAudio mic.monitor -> cpal) through a session"
  run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" || true
  echo "== the output device alone (bare cpal stream): period and reported output latency"
  run "$BENCH" device-latency --secs 3
  echo "== barge-in (cpal player + recorder on the PulseAudio null sinks, speech played into mic)"
  run "$BENCH" barge-in --trials "$BARGE_TRIALS" || true
  echo "== barge-in with a 256-frame device buffer (SoundDevicePlayer::device_buffer_frames)"
  run "$BENCH" barge-in --trials "$BARGE_TRIALS" --device-buffer-frames 256 || true
else
  echo "== skipping the audio-device benchmarks (SKIP_AUDIO=1 or no pulseaudio/paplay)"
fi

echo "== scale: N full-duplex sessions, liveagent-server in its own process"
run "$BENCH" scale --sessions "$SCALE_N" --secs "$SCALE_SECS"

if [ "$PY_N" != 0 ]; then
  echo "== Python frameworks side by side (same server binary, same audio, N in $PY_N)"
  VENV=$ROOT/bench/python/.venv
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r bench/python/requirements.txt
  fi
  echo "ag2 $("$VENV/bin/pip" show ag2 2>/dev/null | awk '/^Version/{print $2}'), openai-agents $("$VENV/bin/pip" show openai-agents 2>/dev/null | awk '/^Version/{print $2}')"
  for n in ${PY_N//,/ }; do
    if [[ ",$SCALE_N," != *",$n,"* ]]; then
      run "$BENCH" scale --sessions "$n" --secs "$SCALE_SECS"
    fi
    for fw in ag2 openai-agents; do
      out=$(mktemp)
      "$SERVER" --port 0 --workers 1 >"$out" 2>/dev/null &
      spid=$!
      for _ in $(seq 50); do grep -q "listening on" "$out" && break; sleep 0.1; done
      addr=$(sed -n 's/^liveagent-server listening on //p' "$out")
      run timeout $((SCALE_SECS + 150)) "$VENV/bin/python" bench/python/side_by_side.py \
        --framework "$fw" --url "ws://$addr/v1" --sessions "$n" --secs "$SCALE_SECS" --server-pid "$spid" || true
      kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
      rm -f "$out"
    done
  done
fi

echo
echo "== summary"
grep '^RESULT' "$LOG" || true
rm -f "$LOG"
