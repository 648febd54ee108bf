"""The `liveagent-bench cascade` workload through AG2's cascade mode (`ag2.live.CascadeConfig`),
pointed at the same local server's fake OpenAI-shaped speech-to-text, chat and text-to-speech
endpoints, for a side-by-side comparison on the same machine (see docs/performance.md).

    python cascade_side_by_side.py --base http://127.0.0.1:PORT/v1 --sessions 10 --turns 5

Each conversation speaks the same 24 kHz test speech (espeak-ng + sox, as the Rust bench makes
it) followed by 1 s of silence, in 20 ms chunks on a real-time schedule, waits for the answer,
and repeats. AG2's defaults are kept (energy turn detector with its 0.7 s of silence, barge-in
off) except `min_chars=20` (liveagent's default; AG2's is 60) so both cut the same sentences.

One change to AG2, said here and in the printout: its OpenAI transcriber asks for
`response_format="text"`, which OpenAI refuses for the gpt-4o transcribe models (and so does
the local server); `JsonTranscriber` asks for `json` and is otherwise AG2's code. AG2's TTS
reads the whole speech body before publishing audio (no streaming), as it ships.

Printed (`RESULT` lines): per turn, end of voice -> final transcript -> first LLM token -> first
audio out (the app's subscriber has the first SynthesizedAudioEvent), p50/p99; CPU of this
process per turn and per conversation; RSS per conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import tempfile
import time

TEXT = "What is the weather like today?"
CHUNK = 480 * 2  # 20 ms of 24 kHz PCM16 mono, in bytes


def speech_pattern(silence_ms: int) -> tuple[list[bytes], int]:
    with tempfile.TemporaryDirectory() as d:
        wav, raw = os.path.join(d, "s.wav"), os.path.join(d, "s.raw")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", wav, TEXT], check=True)
        subprocess.run(
            ["sox", wav, "-r", "24000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", raw],
            check=True,
        )
        pcm = open(raw, "rb").read()
    voiced = math.ceil(len(pcm) / CHUNK)
    pcm += b"\0" * (24 * silence_ms * 2)
    chunks = [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]
    chunks[-1] = chunks[-1].ljust(CHUNK, b"\0")
    return chunks, voiced


def cpu_seconds() -> float:
    rest = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[max(1, min(len(s), math.ceil(p / 100 * len(s)))) - 1]


class Turn:
    def __init__(self) -> None:
        self.voice_end = 0.0
        self.transcript = 0.0
        self.first_token = 0.0
        self.first_audio = 0.0


async def conversation(base: str, turns: int, pattern: list[bytes], voiced: int, phase: float, out: list[Turn]):
    from ag2.config import OpenAIConfig
    from ag2.events import ModelMessageChunk
    from ag2.events.voice import RecordedAudioEvent, SynthesizedAudioEvent, TranscriptionCompletedEvent
    from ag2.live import CascadeConfig, LiveAgent, OpenAITTSConfig
    from ag2.live.openai import STTConfig
    from ag2.live.stt import voice_to_wav_buffer
    from openai import AsyncOpenAI

    class JsonTranscriber(STTConfig):
        """AG2's OpenAI transcriber with `response_format="json"` (see the module docs)."""

        async def transcribe(self, voice, context) -> str:  # type: ignore[no-untyped-def]
            from ag2.events.voice import TranscriptionChunkEvent

            stream = await self.client.audio.transcriptions.create(
                model=self.model, file=voice_to_wav_buffer(voice), response_format="json", stream=True
            )
            text = ""
            async for event in stream:
                if event.type == "transcript.text.delta":
                    text += event.delta
                    await context.send(TranscriptionChunkEvent(event.delta))
                elif event.type == "transcript.text.done":
                    text = event.text
            await context.send(TranscriptionCompletedEvent(text))
            return text

    client = AsyncOpenAI(api_key="local", base_url=base)
    config = CascadeConfig(
        stt=JsonTranscriber("gpt-4o-mini-transcribe", client=client),
        model=OpenAIConfig("gpt-4o-mini", api_key="local", base_url=base, streaming=True),
        tts=OpenAITTSConfig("gpt-4o-mini-tts", client=client, voice="marin"),
        min_chars=20,
    )
    agent = LiveAgent("bench", "You are a benchmark.", config=config)
    current: list[Turn] = []

    async def on_transcript(ev) -> None:  # type: ignore[no-untyped-def]
        if current and not current[-1].transcript:
            current[-1].transcript = time.perf_counter()

    async def on_chunk(ev) -> None:  # type: ignore[no-untyped-def]
        if current and not current[-1].first_token:
            current[-1].first_token = time.perf_counter()

    async def on_audio(ev) -> None:  # type: ignore[no-untyped-def]
        if current and not current[-1].first_audio:
            current[-1].first_audio = time.perf_counter()

    await asyncio.sleep(phase)
    async with agent.run() as ctx:
        with (
            ctx.stream.where(TranscriptionCompletedEvent).sub_scope(on_transcript),
            ctx.stream.where(ModelMessageChunk).sub_scope(on_chunk),
            ctx.stream.where(SynthesizedAudioEvent).sub_scope(on_audio),
        ):
            for _ in range(turns):
                turn = Turn()
                current.append(turn)
                t0 = time.perf_counter()
                for k, chunk in enumerate(pattern):
                    delay = t0 + k * 0.02 - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await ctx.send(RecordedAudioEvent(chunk))
                    if k + 1 == voiced:
                        turn.voice_end = time.perf_counter()
                deadline = time.perf_counter() + 20
                while not turn.first_audio and time.perf_counter() < deadline:
                    await asyncio.sleep(0.02)
                # Let the answer finish (its audio is ~1.2 s at real time).
                await asyncio.sleep(1.5)
    out.extend(current)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT/v1 of liveagent-server")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--turns", type=int, default=5)
    a = ap.parse_args()
    import ag2.live  # noqa: F401  (import cost outside the measurement)

    pattern, voiced = speech_pattern(1000)
    rss0 = rss_bytes()
    cpu0 = cpu_seconds()
    wall0 = time.perf_counter()
    turns: list[Turn] = []
    peak = [rss0]

    async def watch() -> None:
        while True:
            peak[0] = max(peak[0], rss_bytes())
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(
        *(conversation(a.base, a.turns, pattern, voiced, (0.037 * i) % 1.0, turns) for i in range(a.sessions))
    )
    watcher.cancel()
    wall = time.perf_counter() - wall0
    cpu = cpu_seconds() - cpu0
    answered = [t for t in turns if t.first_audio and t.voice_end]
    la = "/".join(open("/proc/loadavg").read().split()[:3])
    import importlib.metadata as md

    print(
        f"RESULT ag2-cascade N={a.sessions} turns/conversation={a.turns} (ag2 {md.version('ag2')}, JsonTranscriber): "
        f"answered={len(answered)} of {len(turns)} wall_s={wall:.1f} loadavg={la}",
        flush=True,
    )

    def line(name: str, vals: list[float]) -> None:
        print(
            f"RESULT ag2-cascade stage {name}: p50_ms={pct(vals, 50) * 1000:.3f} p99_ms={pct(vals, 99) * 1000:.3f} "
            f"max_ms={max(vals, default=0) * 1000:.3f} turns={len(vals)}",
            flush=True,
        )

    line("end_of_voice->final_transcript", [t.transcript - t.voice_end for t in answered if t.transcript])
    line(
        "final_transcript->first_llm_token",
        [t.first_token - t.transcript for t in answered if t.transcript and t.first_token],
    )
    line("first_llm_token->first_audio_out", [t.first_audio - t.first_token for t in answered if t.first_token])
    line("end_of_voice->first_audio_out", [t.first_audio - t.voice_end for t in answered])
    print(
        f"RESULT ag2-cascade per conversation: client_cpu_ms/turn={cpu * 1000 / max(1, len(answered)):.1f} "
        f"client_cpu={cpu / wall / a.sessions * 100:.1f}% of a core "
        f"client_rss_KiB={(peak[0] - rss0) / 1024 / a.sessions:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
