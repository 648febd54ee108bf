#!/usr/bin/env bash
# Runs every example in examples/ against the bundled local realtime server, with a WAV file
# of espeak-ng speech as the microphone, and fails if one fails. Each example reads
# LIVEAGENT_* variables (see examples/common/mod.rs) to find the server and the WAV files.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=$(ls examples/*.rs 2>/dev/null | xargs -rn1 basename | sed 's/\.rs$//')
if [ -z "$examples" ]; then
  echo "no examples"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
espeak-ng -v en-us -s 150 -w "$work/question.wav" "What is two plus three? Please add them."
sox "$work/question.wav" -r 24000 -c 1 -b 16 "$work/question_24k.wav" pad 0 1.5
export LIVEAGENT_INPUT_WAV="$work/question_24k.wav" LIVEAGENT_OUTPUT_WAV="$work/answer.wav" LIVEAGENT_EXAMPLE_TIMEOUT_SECS=30
cargo build -q --examples
failed=0
for ex in $examples; do
  printf -- '--- example %s: ' "$ex"
  if timeout 120 cargo run -q --example "$ex" >"$work/$ex.log" 2>&1; then
    echo ok
  else
    echo FAILED; failed=1
    sed 's/^/    /' "$work/$ex.log" | tail -40
  fi
done
exit $failed
