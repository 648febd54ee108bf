#!/usr/bin/env bash
# Runs liveagent's benchmarks against the local realtime server on 127.0.0.1 and prints their
# figures (RESULT lines; a summary at the end). See docs/performance.md for what each figure
# means. Bounded: about 22 minutes with the defaults (CAPACITY=1 adds at most CAP_BUDGET=180 s per framework).
#
# Knobs (environment):
#   SCALE_N=20,100,250,500,750,1000  session counts of the scale sweep (one process per N)
#   SCALE_SECS=30                measured seconds per scale run (plus ~10 s setup/warm-up)
#   SCALE_ARBITERS=0             worker arbiters (threads) the scale client spreads its sessions
#                                over round-robin (0: all on the main arbiter, with the driver)
#   PY_N=20,100                  session counts of the Python side-by-side runs (0 = skip them)
#   PY_FRAMEWORKS="ag2 openai-agents pipecat livekit"   the Python frameworks to run
#   LAT_SESSIONS=20 LAT_SECS=12  latency runs (sessions x seconds of 20 ms chunks)
#   BARGE_TRIALS=20              barge-in trials
#   TRANSPORT_N=300,400,500      browser-transport conversations on one core (0 = skip)
#   TRANSPORT_SECS=20            measured seconds per transport run (plus ~12 s setup/warm-up)
#   SKIP_AUDIO=1                 skip the benchmarks that need PulseAudio
#   SKIP_BUILD=1                 use the release binaries already in $CARGO_TARGET_DIR/release
#   CAPACITY=1                   also find each framework's capacity: the largest N whose scale
#                                run is real time (same criteria for all), client pinned to one
#                                core and the server to another; doubling from CAP_START (100,
#                                liveagent) or CAP_PY_START (10, Python), then bisecting to
#                                within 10 % (CAP_SECS=10 measured s per run, CAP_MAX=3200,
#                                CAP_FRAMEWORKS="liveagent $PY_FRAMEWORKS"). Each framework gets
#                                CAP_BUDGET=180 s at most (runs that would not fit are not
#                                started; the RESULT line says so): 15 min for all five.
#   CAPACITY=only                only the capacity sweep (no other benchmark).
#   CASCADE_N=10 CASCADE_TURNS=5 cascade conversations x spoken turns (CASCADE_N=0: skip), run
#                                by liveagent and by AG2's cascade mode side by side
#
#   SOAK=1                       also run the fault soak at the end (opt-in; ~11 min):
#                                SOAK_N=100 conversations for SOAK_SECS=600 s with the library's
#                                default history bounds; SOAK_TIGHT="512 256" (Conversation::history
#                                KiB, restore history KiB) adds a second run with those bounds
#
# `scripts/bench.sh soak` runs only the fault soak (docs/reliability.md; ~11 min).
# `scripts/bench.sh cascade` runs only the cascade benchmark and its AG2 side by side (~2 min).
# `scripts/bench.sh barge-in` runs only the barge-in benchmarks (~3 min, needs PulseAudio).
# `scripts/bench.sh capacity` runs only the capacity sweep (~15 min, see CAPACITY).
# `scripts/bench.sh py` runs only the fixed-N side by side with the Python frameworks (~7 min):
#   liveagent's scale run and PY_FRAMEWORKS at each N of PY_N, PY_SECS=20 s each, and a table
#   of the per-session figures with the ratios.
# `scripts/bench.sh mic` runs only the microphone path (~2 min, needs PulseAudio): callback ->
#   socket with LAT_SESSIONS recorders, the same traced stage by stage (MicProbe), and the same
#   with the input opened at the source's own format (24 kHz mono s16, 10 ms periods).
# `scripts/bench.sh mic-cold` runs the headline mic run MIC_COLD=3 times, each on a freshly
#   started PulseAudio (the first client after the sound server starts, where the max used to
#   miss), then once more on the last one (warm); ~20 s per run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SCALE_N=${SCALE_N:-20,100,250,500,750,1000}
SCALE_SECS=${SCALE_SECS:-30}
SCALE_ARBITERS=${SCALE_ARBITERS:-0}
PY_N=${PY_N:-20,100}
PY_FRAMEWORKS=${PY_FRAMEWORKS:-ag2 openai-agents pipecat livekit}
CAPACITY=${CAPACITY:-0}
CAP_SECS=${CAP_SECS:-10}
CAP_START=${CAP_START:-100}
CAP_PY_START=${CAP_PY_START:-10}
CAP_MAX=${CAP_MAX:-3200}
CAP_BUDGET=${CAP_BUDGET:-180}
CAP_FRAMEWORKS=${CAP_FRAMEWORKS:-liveagent $PY_FRAMEWORKS}
LAT_SESSIONS=${LAT_SESSIONS:-20}
LAT_SECS=${LAT_SECS:-12}
BARGE_TRIALS=${BARGE_TRIALS:-20}
CASCADE_N=${CASCADE_N:-10}
CASCADE_TURNS=${CASCADE_TURNS:-5}
ONLY=${1:-all}
TRANSPORT_N=${TRANSPORT_N:-300,400,500}
TRANSPORT_SECS=${TRANSPORT_SECS:-20}
SOAK=${SOAK:-0}
SOAK_N=${SOAK_N:-100}
SOAK_SECS=${SOAK_SECS:-600}
SOAK_TIGHT=${SOAK_TIGHT-}
LOG=$(mktemp /tmp/liveagent-bench.XXXX.log)

echo "== machine"
echo "nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); $(uname -sr)"
echo "rustc: $(rustc --version); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "== using the release binaries in $CARGO_TARGET_DIR/release (SKIP_BUILD=1)"
else
  echo "== building (release)"
  cargo build -q --release -p liveagent-bench -p liveagent-server
fi
BENCH=$CARGO_TARGET_DIR/release/liveagent-bench
SERVER=$CARGO_TARGET_DIR/release/liveagent-server

run() { echo "+ $*"; "$@" 2>&1 | tee -a "$LOG" || echo "(failed: $*)"; }

VENV=$ROOT/bench/python/.venv
# AG2's live module imports sounddevice, which needs PortAudio's shared library.
ensure_portaudio() {
  if ! ldconfig -p 2>/dev/null | grep -q libportaudio; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends libportaudio2 >/dev/null; } || echo "(could not install libportaudio2: AG2 will fail)"
  fi
}
python_env() {
  ensure_portaudio
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r bench/python/requirements.txt
  fi
}

# A liveagent-server process on a free port; sets SPID and ADDR (host:port).
start_server() {
  SOUT=$(mktemp)
  "$SERVER" --port 0 --workers 1 >"$SOUT" 2>/dev/null &
  SPID=$!
  for _ in $(seq 50); do grep -q "listening on" "$SOUT" && break; sleep 0.1; done
  ADDR=$(sed -n 's/^liveagent-server listening on //p' "$SOUT")
}
stop_server() { kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; rm -f "$SOUT"; }

cascade_bench() {
  [ "$CASCADE_N" != 0 ] || return 0
  echo "== cascade: $CASCADE_N conversations x $CASCADE_TURNS spoken turns (STT -> LLM -> TTS, fake stages)"
  run "$BENCH" cascade --sessions "$CASCADE_N" --turns "$CASCADE_TURNS"
  echo "== the same workload through AG2's cascade mode (ag2.live.CascadeConfig), same server binary"
  python_env
  echo "ag2 $("$VENV/bin/pip" show ag2 2>/dev/null | awk '/^Version/{print $2}')"
  start_server
  run timeout 300 "$VENV/bin/python" bench/python/cascade_side_by_side.py \
    --base "http://$ADDR/v1" --sessions "$CASCADE_N" --turns "$CASCADE_TURNS" || true
  stop_server
}

# Browser transport on one core: `scripts/bench.sh transport` runs only this.
transport_bench() {
  if [ "$TRANSPORT_N" != 0 ] && [ "$(nproc)" -ge 2 ]; then
    echo "== browser transport: the app (transport + conversations) pinned to cpu 0, the WebSocket"
    echo "   load generator and the local server in other processes pinned to cpu 1"
    run "$BENCH" transport-scale --sessions "$TRANSPORT_N" --secs "$TRANSPORT_SECS" --app-cpu 0 --load-cpus 1
  else
    echo "== skipping the one-core transport benchmark (TRANSPORT_N=0 or fewer than 2 CPUs)"
  fi
}

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

# Barge-in on the real cpal path with the player's default (adaptive) device buffer, and the
# host's default buffer for comparison; underruns are counted in the same runs.
# `scripts/bench.sh barge-in` runs only this (~3 min with BARGE_TRIALS=20; needs PulseAudio).
bargein_bench() {
  echo "== barge-in, default settings (adaptive device buffer; cpal player + recorder on the PulseAudio null sinks, speech played into mic)"
  run "$BENCH" barge-in --trials "$BARGE_TRIALS" || true
  echo "== barge-in with the host's default device buffer (the old default), for comparison"
  run "$BENCH" barge-in --trials "$BARGE_TRIALS" --host-buffer || true
}

# The fault soak (docs/reliability.md): faults through the whole run, the client's RSS and
# live heap every 30 s, tool results lost, panics, conversations alive.
soak_bench() {
  echo "== soak: $SOAK_N conversations x $SOAK_SECS s against a server injecting faults (default bounds)"
  run "$BENCH" soak --conversations "$SOAK_N" --secs "$SOAK_SECS" --sample-secs 30
  if [ -n "$SOAK_TIGHT" ]; then
    read -r hist restore <<<"$SOAK_TIGHT"
    echo "== soak with Conversation::history at $hist KiB and the restore history at $restore KiB (bounds reached within the run)"
    run "$BENCH" soak --conversations "$SOAK_N" --secs "$SOAK_SECS" --sample-secs 30 \
      --history-kib "$hist" --restore-history-kib "$restore"
  fi
}

if [ "$ONLY" = soak ]; then
  soak_bench
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  rm -f "$LOG"
  exit 0
fi

# Microphone callback -> socket (docs/performance-audio.md#mic-path): the headline run, then
# the same with every chunk traced stage by stage (the probe adds a mutex per stage).
mic_bench() {
  echo "== added latency, SoundDeviceRecorder (PulseAudio mic.monitor -> cpal) through a session,"
  echo "   default settings (the input opens in the session's format: 24 kHz mono s16, 10 ms asked)"
  run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" || true
  echo "== the same, traced stage by stage"
  run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" --stages || true
  echo "== the same with 360-frame periods asked (PulseAudio's plugin opens 240: exactly 10 ms)"
  run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" \
    --device-buffer-frames 360 || true
  echo "== the same with the input at the device's default configuration (48 kHz stereo f32,"
  echo "   the former default: cpal's ALSA loop busy-polls, docs/performance-audio.md#4)"
  run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" \
    --device-default-config || true
}

if [ "$ONLY" = mic ]; then
  if start_pulse; then
    mic_bench
  else
    echo "== the mic path needs pulseaudio, pulseaudio-utils and libasound2-plugins (scripts/setup.sh)"
  fi
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  rm -f "$LOG"
  exit 0
fi

if [ "$ONLY" = mic-cold ]; then
  for i in $(seq "${MIC_COLD:-3}"); do
    if ! start_pulse; then
      echo "== the mic path needs pulseaudio, pulseaudio-utils and libasound2-plugins (scripts/setup.sh)"
      break
    fi
    echo "== mic path, cold run $i: the first client of a fresh PulseAudio"
    run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" || true
    if [ "$i" = "${MIC_COLD:-3}" ]; then
      echo "== the same on that PulseAudio again (warm)"
      run "$BENCH" latency-in --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" || true
    fi
    pulseaudio --kill >/dev/null 2>&1 || true
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 || break; sleep 0.1; done
    rm -rf "$PULSE_DIR"
  done
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  rm -f "$LOG"
  exit 0
fi

if [ "$ONLY" = barge-in ]; then
  if start_pulse; then
    bargein_bench
  else
    echo "== barge-in needs pulseaudio, pulseaudio-utils and libasound2-plugins (scripts/setup.sh)"
  fi
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  rm -f "$LOG"
  exit 0
fi

if [ "$ONLY" = transport ]; then
  transport_bench
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  rm -f "$LOG"
  exit 0
fi

if [ "$ONLY" = cascade ]; then
  cascade_bench
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  rm -f "$LOG"
  exit 0
fi

# `scripts/bench.sh capacity` runs only the capacity sweep (as CAPACITY=1 does after the rest).
[ "$ONLY" = capacity ] && CAPACITY=1
if [ "$ONLY" = all ]; then
  echo "== added latency, WavSink (no audio device needed)"
  run "$BENCH" latency-out --sink wav --sessions "$LAT_SESSIONS" --secs "$LAT_SECS"
fi

if [ "$ONLY" != all ]; then
  :
elif [ "${SKIP_AUDIO:-0}" != 1 ] && start_pulse; then
  echo "== added latency, SoundDevicePlayer (cpal -> ALSA -> PulseAudio null sink)"
  run "$BENCH" latency-out --sink device --sessions "$LAT_SESSIONS" --secs "$LAT_SECS" || true
  mic_bench
  echo "== the output device alone (bare cpal stream): period and reported output latency"
  run "$BENCH" device-latency --secs 3
  bargein_bench
else
  echo "== skipping the audio-device benchmarks (SKIP_AUDIO=1 or no pulseaudio/paplay)"
fi

if [ "$ONLY" = all ]; then
  echo "== scale: N full-duplex sessions, liveagent-server in its own process"
  run "$BENCH" scale --sessions "$SCALE_N" --secs "$SCALE_SECS" --arbiters "$SCALE_ARBITERS"
fi

VENV=$ROOT/bench/python/.venv
setup_venv() {
  ensure_portaudio
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/pip" -q freeze 2>/dev/null | grep -qi '^livekit-agents'; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r bench/python/requirements.txt
  fi
  for p in ag2 openai-agents pipecat-ai livekit-agents; do
    printf '%s %s; ' "$p" "$("$VENV/bin/pip" show "$p" 2>/dev/null | awk '/^Version/{print $2}')"
  done
  echo
}

# py_run FRAMEWORK N SECS [CPU]: one side-by-side run against a fresh server process (pinned
# to the other CPU when CPU is given).
py_run() {
  local fw=$1 n=$2 secs=$3 cpu=${4:-} out spid addr pin_c=() pin_s=()
  if [ -n "$cpu" ]; then pin_c=(taskset -c "$cpu"); pin_s=(taskset -c "$SERVER_CPU"); fi
  out=$(mktemp)
  "${pin_s[@]}" "$SERVER" --port 0 --workers 1 >"$out" 2>/dev/null &
  spid=$!
  for _ in $(seq 50); do grep -q "listening on" "$out" && break; sleep 0.1; done
  addr=$(sed -n 's/^liveagent-server listening on //p' "$out")
  run timeout "${PY_TIMEOUT:-$((secs + 150))}" "${pin_c[@]}" "$VENV/bin/python" bench/python/side_by_side.py \
    --framework "$fw" --url "ws://$addr/v1" --sessions "$n" --secs "$secs" --server-pid "$spid" || true
  kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
  rm -f "$out"
}

# `scripts/bench.sh py`: the fixed-N side by side alone (issue 18 goal 3): for each N in
# PY_N, liveagent's scale run and every framework of PY_FRAMEWORKS, PY_SECS measured seconds
# each (default 20), each Python run killed after PY_SECS + 45 s + 0.75 s per session
# (PY_RUN_TIMEOUT overrides). About 6-7 minutes with the defaults (at most ~18 if every run
# hit its timeout), then a table of CPU and memory per session with the ratios.
if [ "$ONLY" = py ]; then
  PY_SECS=${PY_SECS:-20}
  echo "== fixed-N side by side: liveagent and $PY_FRAMEWORKS, N in $PY_N, $PY_SECS s each"
  setup_venv
  for n in ${PY_N//,/ }; do
    run timeout $((PY_SECS + 60)) "$BENCH" scale --sessions "$n" --secs "$PY_SECS" --arbiters "$SCALE_ARBITERS" || true
    # The workload's own cost: the cheapest possible client (src/floor.rs), same N and window.
    run timeout $((PY_SECS + 60)) "$BENCH" floor --sessions "$n" --secs "$PY_SECS" || true
    for fw in $PY_FRAMEWORKS; do
      # AG2 needs about a second per session to connect on a loaded machine.
      PY_TIMEOUT=${PY_RUN_TIMEOUT:-$((PY_SECS + 45 + n * 3 / 4))} py_run "$fw" "$n" "$PY_SECS"
    done
  done
  echo
  echo "== summary"
  grep '^RESULT' "$LOG" || true
  echo
  echo "== per session (client): CPU s/session-min, RSS KiB, anonymous RSS KiB; ratio = peer / liveagent"
  grep -E '^RESULT (scale|floor|python)' "$LOG" | awk '
    function val(key,   i, a) { for (i = 1; i <= NF; i++) if (index($i, key "=") == 1) { split($i, a, "="); return a[2] + 0 } return -1 }
    {
      if ($2 == "scale" || $2 == "floor") { fw = ($2 == "scale") ? "liveagent" : "(floor)"; n = $3 } else { fw = $3; n = $4 }
      sub(/^N=/, "", n); sub(/:$/, "", n)
      cpu = val("client_cpu_s/session-min"); rss = val("client_rss/session_KiB"); anon = val("client_anon/session_KiB")
      rt = ($0 ~ /realtime=yes/) ? "yes" : "NO"
      if (fw == "liveagent") { lc[n] = cpu; lr[n] = rss; la[n] = anon }
      if (fw == "(floor)") { fc[n] = cpu }
      else if (fw != "liveagent" && cpu > 0 && (!(n in best) || cpu < best[n])) { best[n] = cpu; bestfw[n] = fw }
      line[++k] = sprintf("%s|%s|%.3f|%d|%d|%s", n, fw, cpu, rss, anon, rt)
    }
    END {
      printf "%-5s %-14s %9s %8s %8s %9s %8s %8s %s\n", "N", "framework", "cpu", "rss", "anon", "cpu x", "rss x", "anon x", "realtime"
      for (i = 1; i <= k; i++) {
        split(line[i], f, "|"); n = f[1]
        cx = (lc[n] > 0) ? sprintf("%.1f", f[3] / lc[n]) : "-"
        rx = (lr[n] > 0) ? sprintf("%.1f", f[4] / lr[n]) : "-"
        ax = (la[n] > 0) ? sprintf("%.1f", f[5] / la[n]) : "-"
        printf "%-5s %-14s %9s %8s %8s %9s %8s %8s %s\n", n, f[2], f[3], f[4], f[5], cx, rx, ax, f[6]
      }
      for (n in best) if (n in fc)
        printf "N=%s: 1/10 of the cheapest peer (%s, %.3f) is %.4f CPU s/session-min; the floor alone (no library, frames built once, answers dropped) costs %.4f\n", n, bestfw[n], best[n], best[n] / 10, fc[n]
    }'
  rm -f "$LOG"
  exit 0
fi

[ "$ONLY" = all ] && transport_bench

if [ "$ONLY" = all ] && [ "$PY_N" != 0 ]; then
  echo "== Python frameworks side by side (same server binary, same audio, N in $PY_N)"
  setup_venv
  for n in ${PY_N//,/ }; do
    if [[ ",$SCALE_N," != *",$n,"* ]]; then
      run "$BENCH" scale --sessions "$n" --secs "$SCALE_SECS" --arbiters "$SCALE_ARBITERS"
    fi
    for fw in $PY_FRAMEWORKS; do
      py_run "$fw" "$n" "$SCALE_SECS"
    done
  done
fi

# capacity NAME: the largest N whose run is real time (realtime=yes on its RESULT line).
# Bounded: each framework gets CAP_BUDGET seconds (a run that would not fit is not started,
# and every run is killed at the end of the budget), so CAPACITY=1 adds at most about
# CAP_BUDGET x the number of frameworks (15 min for the five with the defaults).
CLIENT_CPU=1 SERVER_CPU=0
cap_run() { # cap_run NAME N TIMEOUT -> 0 when real time
  local name=$1 n=$2 limit=$3 line
  if [ "$name" = liveagent ]; then
    line=$(LIVEAGENT_BENCH_SERVER_CPUS=$SERVER_CPU run timeout "$limit" taskset -c "$CLIENT_CPU" "$BENCH" scale \
      --sessions "$n" --secs "$CAP_SECS" --arbiters "$SCALE_ARBITERS" | grep '^RESULT scale' || true)
  else
    line=$(PY_TIMEOUT=$limit py_run "$name" "$n" "$CAP_SECS" "$CLIENT_CPU" | grep '^RESULT python' || true)
  fi
  [[ "$line" == *"realtime=yes"* ]]
}
capacity() {
  local name=$1 lo=0 hi="" n start=$SECONDS left note=""
  if [ "$name" = liveagent ]; then n=$CAP_START; else n=$CAP_PY_START; fi
  # A run takes its measured seconds, 4 s of warm-up and its setup: count 1 s per 25
  # sessions for the setup (Python frameworks connect more slowly), and 10 s to spare.
  cap_cost() { echo $(( CAP_SECS + 14 + $1 / 25 )); }
  cap_fits() { left=$(( CAP_BUDGET - (SECONDS - start) )); [ "$left" -ge "$(cap_cost "$1")" ]; }
  while :; do
    if ! cap_fits "$n"; then note=" (time budget of ${CAP_BUDGET}s spent: N=$n not tried)"; break; fi
    if cap_run "$name" "$n" "$left"; then
      lo=$n; n=$((n * 2))
      if [ "$n" -gt "$CAP_MAX" ]; then note=" (CAP_MAX=$CAP_MAX reached)"; break; fi
    else
      hi=$n; break
    fi
  done
  if [ -n "$hi" ]; then
    while [ $((hi - lo)) -gt $(( lo / 10 > 2 ? lo / 10 : 2 )) ]; do
      n=$(( (lo + hi) / 2 ))
      if ! cap_fits "$n"; then note=" (time budget of ${CAP_BUDGET}s spent before the 10 % bisection ended)"; break; fi
      if cap_run "$name" "$n" "$left"; then lo=$n; else hi=$n; fi
    done
  fi
  echo "RESULT capacity $name: largest N in real time with the client on one core = $lo (first N not in real time: ${hi:-none found}; CAP_SECS=$CAP_SECS, $((SECONDS - start)) s)$note" | tee -a "$LOG"
}
if [ "$CAPACITY" = 1 ]; then
  echo "== capacity: largest N in real time, client pinned to CPU $CLIENT_CPU, server to CPU $SERVER_CPU"
  if [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; then
    echo "(capacity needs 2 CPUs and taskset; skipped)"
  else
    [ "$CAP_FRAMEWORKS" = liveagent ] || setup_venv
    for fw in $CAP_FRAMEWORKS; do capacity "$fw"; done
  fi
fi

[ "$ONLY" = all ] && cascade_bench

if [ "$SOAK" = 1 ]; then
  soak_bench
fi

echo
echo "== summary"
grep '^RESULT' "$LOG" || true
rm -f "$LOG"
