"""One voice turn through the official `openai` SDK (client.realtime.connect) against the
local server on 127.0.0.1:PORT (argv[1]). Prints what the test checks."""
import asyncio, base64, math, struct, sys
from openai import AsyncOpenAI

async def main(port):
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", websocket_base_url=f"ws://127.0.0.1:{port}/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}})
        tone = b"".join(struct.pack("<h", int(8000*math.sin(i*440*2*math.pi/24000))) for i in range(24000))
        sil = b"\0\0" * 12000
        for buf in (sil, tone, sil, sil):
            for i in range(0, len(buf), 1920):
                await conn.input_audio_buffer.append(audio=base64.b64encode(buf[i:i+1920]).decode())
        n_audio = 0
        async for ev in conn:
            if ev.type == "response.output_audio.delta":
                n_audio += len(base64.b64decode(ev.delta)) // 2
            if ev.type in ("conversation.item.input_audio_transcription.completed",):
                print("input transcript:", ev.transcript)
            if ev.type == "response.output_audio_transcript.done":
                print("output transcript:", ev.transcript)
            if ev.type == "response.done":
                print("done:", ev.response.status, "samples", n_audio, "usage", ev.response.usage.total_tokens)
                break
asyncio.run(main(int(sys.argv[1])))
