"""The scale workload of `liveagent-bench scale` through a Python framework, for a side-by-side
comparison on the same server, audio and machine (see docs/performance.md).

    python side_by_side.py --framework ag2|openai-agents|pipecat|livekit --url ws://127.0.0.1:PORT/v1 \
        --sessions 50 --secs 30 [--server-pid PID]

Each session streams the same 24 kHz test speech + 3 s of silence (espeak-ng + sox, as the Rust
bench makes it) in 20 ms chunks on a real-time schedule, and receives the echo brain's spoken
answers. Everything runs in one asyncio loop on one thread, like the Rust client.

Drivers: AG2 (`ag2.live.LiveAgent`), openai-agents (`RealtimeRunner`), pipecat
(`OpenAIRealtimeLLMService` in a `PipelineWorker` with no transport: the bench queues
`InputAudioRawFrame`s into it and a sink processor takes its `TTSAudioRawFrame`s) and LiveKit
Agents (`livekit.plugins.openai.realtime.RealtimeModel(base_url=...)`; its `RealtimeSession`
used directly, without a room or a LiveKit server: `push_audio(rtc.AudioFrame)` in, the
`generation_created` audio streams out). LiveKit's websocket is aiohttp's, so its
receive-to-app latency is not stamped (recv_samples=0).

Printed figures (one `RESULT` line), measured over `--secs` after a 4 s warm-up:
- CPU seconds per session-minute of this process (/proc/self/stat) and of the server (--server-pid);
- RSS delta per session;
- send lag: scheduled chunk time until the framework's send call returned (the frame was handed
  to the websocket), p50/p99;
- receive latency: the websocket `recv()` that returned an `response.output_audio.delta` frame
  until the framework delivered that audio to the application, p50/p99;
- answer rate: audio duration / arrival span of each answer (>= 0.95x = real time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextvars
import os
import subprocess
import sys
import tempfile
import time

import websockets.asyncio.connection as wsconn

TEXT = "What is the weather like today?"
CHUNK = 480 * 2  # 20 ms of 24 kHz PCM16 mono, in bytes

LAST_AUDIO_RECV: contextvars.ContextVar[float] = contextvars.ContextVar("last_audio_recv", default=0.0)

_orig_recv = wsconn.Connection.recv


async def _stamped_recv(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    msg = await _orig_recv(self, *args, **kwargs)
    probe = msg[:64] if isinstance(msg, (bytes, str)) else b""
    needle = "response.output_audio.delta" if isinstance(probe, str) else b"response.output_audio.delta"
    if needle in probe or needle in (msg[:200] if isinstance(msg, (bytes, str)) else b""):
        now = time.perf_counter()
        LAST_AUDIO_RECV.set(now)
        q = getattr(self, "_bench_audio_stamps", None)
        if q is None:
            q = collections.deque()
            self._bench_audio_stamps = q
        q.append(now)
    return msg


wsconn.Connection.recv = _stamped_recv  # type: ignore[method-assign]


def speech_pattern(silence_ms: int) -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        wav, raw = os.path.join(d, "s.wav"), os.path.join(d, "s.raw")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", wav, TEXT], check=True)
        subprocess.run(
            ["sox", wav, "-r", "24000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", raw],
            check=True,
        )
        pcm = open(raw, "rb").read()
    pcm += b"\0" * (24 * silence_ms * 2)
    chunks = [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]
    chunks[-1] = chunks[-1].ljust(CHUNK, b"\0")
    return chunks


def cpu_seconds(pid: int | None) -> float:
    path = f"/proc/{pid}/stat" if pid else "/proc/self/stat"
    try:
        rest = open(path).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | None, field: str = "VmRSS:") -> int:
    """A kB field of /proc/PID/status in bytes: VmRSS, or RssAnon (heap and other private
    memory, without file-backed pages such as mapped code), as the Rust bench reports both."""
    path = f"/proc/{pid}/status" if pid else "/proc/self/status"
    try:
        for line in open(path):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    import math

    return s[max(1, min(len(s), math.ceil(p / 100 * len(s)))) - 1]


class Session:
    """Counters of one session."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.recv_lat: list[float] = []
        self.first = 0.0
        self.last = 0.0
        self.audio = 0.0
        self.last_dur = 0.0
        self.answers = 0
        self.min_ratio = float("inf")
        self.ratios: list[float] = []
        self.measuring = False

    def on_audio(self, nbytes: int, now: float) -> None:
        dur = nbytes / 2 / 24000
        if self.last and now - self.last > 0.3:
            self.close_answer()
        if not self.first:
            self.first = now
        self.last = now
        self.last_dur = dur
        self.audio += dur

    def close_answer(self) -> None:
        if self.first and self.audio >= 0.4:
            span = self.last - self.first + self.last_dur
            self.min_ratio = min(self.min_ratio, self.audio / span)
            self.ratios.append(self.audio / span)
            self.answers += 1
        self.first = self.last = self.audio = 0.0


# Microphones are not in phase: like the Rust bench, session i sends in slot i % SLOTS, the
# slots 1 ms apart (--slots; 1 puts every session in phase, as this harness did before).
SLOTS = 20


async def drive(send, sess: Session, pattern: list[bytes], phase: int, t0: float, stop_at: float) -> None:
    k = 0
    t0 += (phase % SLOTS) * 0.001
    while True:
        scheduled = t0 + k * 0.02
        if scheduled >= stop_at:
            return
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(pattern[(k + phase * 7) % len(pattern)])
        if sess.measuring:
            sess.lags.append(time.perf_counter() - scheduled)
        k += 1


async def run_ag2(url: str, sess: Session, ready: asyncio.Event, go: asyncio.Future, pattern, phase, done: asyncio.Event):
    from ag2.events.voice import RecordedAudioEvent, SynthesizedAudioEvent
    from ag2.live import LiveAgent, OpenAIRealTimeConfig
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="local", base_url=url.replace("ws://", "http://"), websocket_base_url=url)
    agent = LiveAgent("bench", "You are a benchmark.", config=OpenAIRealTimeConfig("gpt-realtime", client=client))

    async def on_audio(ev: SynthesizedAudioEvent) -> None:
        now = time.perf_counter()
        stamp = LAST_AUDIO_RECV.get()
        if sess.measuring and stamp:
            sess.recv_lat.append(now - stamp)
        sess.on_audio(len(ev.content), now)

    async with agent.run() as ctx:
        with ctx.stream.where(SynthesizedAudioEvent).sub_scope(on_audio):
            ready.set()
            t0, stop_at = await go

            async def send(chunk: bytes) -> None:
                await ctx.send(RecordedAudioEvent(chunk))

            await drive(send, sess, pattern, phase, t0, stop_at)
            done.set()


async def run_openai_agents(url: str, sess: Session, ready: asyncio.Event, go: asyncio.Future, pattern, phase, done: asyncio.Event):
    from agents.realtime import RealtimeAgent, RealtimeRunner

    agent = RealtimeAgent(name="bench", instructions="You are a benchmark.")
    runner = RealtimeRunner(agent, config={"tracing_disabled": True})
    session = await runner.run(
        model_config={
            "url": f"{url}/realtime?model=gpt-realtime",
            "api_key": "local",
            "initial_model_settings": {"model_name": "gpt-realtime"},
        }
    )
    async with session:
        ws = session._model._websocket  # the framework's own websocket (for the recv stamps)

        async def consume() -> None:
            async for event in session:
                if event.type == "audio":
                    now = time.perf_counter()
                    q = getattr(ws, "_bench_audio_stamps", None)
                    stamp = q.popleft() if q else 0.0
                    if sess.measuring and stamp:
                        sess.recv_lat.append(now - stamp)
                    sess.on_audio(len(event.audio.data), now)

        consumer = asyncio.create_task(consume())
        ready.set()
        t0, stop_at = await go
        await drive(session.send_audio, sess, pattern, phase, t0, stop_at)
        done.set()
        consumer.cancel()


async def run_pipecat(url: str, sess: Session, ready: asyncio.Event, go: asyncio.Future, pattern, phase, done: asyncio.Event):
    from pipecat.frames.frames import InputAudioRawFrame, TTSAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
    from pipecat.workers.runner import WorkerRunner

    class Sink(FrameProcessor):
        async def process_frame(self, frame, direction: FrameDirection) -> None:  # type: ignore[no-untyped-def]
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                now = time.perf_counter()
                q = getattr(llm._websocket, "_bench_audio_stamps", None)
                stamp = q.popleft() if q else 0.0
                if sess.measuring and stamp:
                    sess.recv_lat.append(now - stamp)
                sess.on_audio(len(frame.audio), now)
            else:
                await self.push_frame(frame, direction)

    llm = OpenAIRealtimeLLMService(
        api_key="local",
        base_url=f"{url}/realtime",
        settings=OpenAIRealtimeLLMService.Settings(model="gpt-realtime"),
    )
    worker = PipelineWorker(Pipeline([llm, Sink()]), enable_rtvi=False, idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    running = asyncio.create_task(runner.run(worker))
    for _ in range(1000):
        if llm._websocket is not None or running.done():
            break
        await asyncio.sleep(0.01)
    if llm._websocket is None:
        raise RuntimeError("pipecat did not connect")
    ready.set()
    t0, stop_at = await go

    async def send(chunk: bytes) -> None:
        await worker.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=24000, num_channels=1))

    await drive(send, sess, pattern, phase, t0, stop_at)
    done.set()
    await worker.cancel()
    running.cancel()


async def run_livekit(url: str, sess: Session, ready: asyncio.Event, go: asyncio.Future, pattern, phase, done: asyncio.Event):
    import aiohttp
    from livekit import rtc
    from livekit.plugins.openai.realtime import RealtimeModel

    http = aiohttp.ClientSession()
    model = RealtimeModel(model="gpt-realtime", api_key="local", base_url=url, http_session=http)
    session = model.session()
    consumers: set[asyncio.Task] = set()

    async def consume_message(msg) -> None:  # type: ignore[no-untyped-def]
        async for frame in msg.audio_stream:
            sess.on_audio(frame.samples_per_channel * 2, time.perf_counter())

    async def consume_generation(ev) -> None:  # type: ignore[no-untyped-def]
        async for msg in ev.message_stream:
            t = asyncio.create_task(consume_message(msg))
            consumers.add(t)
            t.add_done_callback(consumers.discard)

    def on_generation(ev) -> None:  # type: ignore[no-untyped-def]
        t = asyncio.create_task(consume_generation(ev))
        consumers.add(t)
        t.add_done_callback(consumers.discard)

    connected = asyncio.Event()
    session.on("generation_created", on_generation)
    session.on("openai_server_event_received", lambda ev: connected.set())
    await asyncio.wait_for(connected.wait(), 60)
    ready.set()
    t0, stop_at = await go

    async def send(chunk: bytes) -> None:
        session.push_audio(rtc.AudioFrame(data=chunk, sample_rate=24000, num_channels=1, samples_per_channel=len(chunk) // 2))

    try:
        await drive(send, sess, pattern, phase, t0, stop_at)
        done.set()
    finally:
        await session.aclose()
        await model.aclose()
        await http.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--framework", choices=["ag2", "openai-agents", "pipecat", "livekit"], required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--secs", type=int, default=30)
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--slots", type=int, default=20, help="1 ms send slots the sessions are spread over (1: all in phase)")
    a = ap.parse_args()
    global SLOTS
    SLOTS = max(1, a.slots)
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    pattern = speech_pattern(3000)
    # Import the framework before the baseline, so that RSS/session counts sessions only.
    if a.framework == "ag2":
        import ag2.live  # noqa: F401

        runner = run_ag2
    elif a.framework == "pipecat":
        from loguru import logger

        # pipecat logs every frame-level event at DEBUG by default: a deployment would not.
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        import pipecat.pipeline.worker  # noqa: F401
        import pipecat.services.openai.realtime.llm  # noqa: F401

        runner = run_pipecat
    elif a.framework == "livekit":
        import livekit.plugins.openai.realtime  # noqa: F401

        runner = run_livekit
    else:
        import agents.realtime  # noqa: F401

        runner = run_openai_agents
    await asyncio.sleep(0.2)
    server_rss0 = rss_bytes(a.server_pid)
    rss0 = rss_bytes(None)
    anon0 = rss_bytes(None, "RssAnon:")
    loop = asyncio.get_running_loop()
    go: asyncio.Future = loop.create_future()
    sessions = [Session() for _ in range(a.sessions)]
    tasks = []
    readies = []
    dones = []
    async def wait_ready(events: list[asyncio.Event]) -> None:
        ready = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in events)))
        await asyncio.wait([ready, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            for t in tasks:
                if t.done():
                    raise RuntimeError("a session failed to start") from t.exception()
            raise RuntimeError("sessions not ready after 120 s")

    for i, s in enumerate(sessions):
        r, d = asyncio.Event(), asyncio.Event()
        readies.append(r)
        dones.append(d)
        tasks.append(asyncio.create_task(runner(a.url, s, r, go, pattern, i, d)))
        if (i + 1) % 50 == 0:
            await wait_ready(readies)
    await wait_ready(readies)
    t0 = time.perf_counter() + 0.05
    stop_at = t0 + a.secs + 4
    go.set_result((t0, stop_at))
    await asyncio.sleep(4)
    for s in sessions:
        s.measuring = True
    c0, sc0, m0 = cpu_seconds(None), cpu_seconds(a.server_pid), time.perf_counter()
    await asyncio.sleep(a.secs)
    wall = time.perf_counter() - m0
    c_cpu = cpu_seconds(None) - c0
    s_cpu = cpu_seconds(a.server_pid) - sc0
    rss = rss_bytes(None)
    anon = rss_bytes(None, "RssAnon:")
    server_rss = rss_bytes(a.server_pid)
    for s in sessions:
        s.measuring = False
    await asyncio.wait([asyncio.gather(*(d.wait() for d in dones))], timeout=30)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    n = a.sessions
    lags = [x for s in sessions for x in s.lags]
    recv = [x for s in sessions for x in s.recv_lat]
    for s in sessions:
        s.close_answer()
    answers = sum(s.answers for s in sessions)
    silent = sum(1 for s in sessions if s.answers == 0)
    min_ratio = min((s.min_ratio for s in sessions if s.answers), default=0.0)
    ratios = sorted(r for s in sessions for r in s.ratios)
    p1_ratio = ratios[len(ratios) // 100] if ratios else 0.0
    load = "/".join(open("/proc/loadavg").read().split()[:3])
    p99 = pct(lags, 99)
    realtime = p99 <= 0.020 and min_ratio >= 0.95 and silent == 0
    mins = wall / 60
    print(
        f"RESULT python {a.framework} N={n}: client_cpu_s/session-min={c_cpu / (n * mins):.3f} "
        f"server_cpu_s/session-min={s_cpu / (n * mins):.3f} client_cpu={100 * c_cpu / wall:.0f}% "
        f"server_cpu={100 * s_cpu / wall:.0f}% client_rss/session_KiB={(rss - rss0) / n / 1024:.0f} "
        f"client_anon/session_KiB={(anon - anon0) / n / 1024:.0f} "
        f"server_rss/session_KiB={(server_rss - server_rss0) / n / 1024:.0f} "
        f"send_lag_p50_ms={1000 * pct(lags, 50):.2f} p99_ms={1000 * p99:.2f} "
        f"recv_to_app_p50_ms={1000 * pct(recv, 50):.3f} recv_to_app_p99_ms={1000 * pct(recv, 99):.3f} "
        f"recv_samples={len(recv)} min_answer_rate={min_ratio:.3f}x p1_answer_rate={p1_ratio:.3f}x answers={answers} "
        f"silent_sessions={silent} realtime={'yes' if realtime else 'NO'} loadavg={load}",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
