"""One voice turn through the official `google-genai` SDK (client.aio.live.connect) against
the local server on 127.0.0.1:PORT (argv[1]). The SDK always opens wss:// when given an API
key, so the two helpers that pick the scheme and the TLS context are patched to plain ws://."""
import asyncio, math, struct, sys
from google import genai
from google.genai import types

async def main(port):
    from google.genai import _api_client
    _api_client.BaseApiClient._websocket_base_url = lambda self, http_options=None: f"ws://127.0.0.1:{port}"
    _api_client.BaseApiClient._ensure_websocket_ssl_ctx = lambda self, *a, **k: {}
    client = genai.Client(api_key="k", http_options={"base_url": f"http://127.0.0.1:{port}", "api_version": "v1beta"})
    cfg = types.LiveConnectConfig(response_modalities=["AUDIO"], input_audio_transcription={}, output_audio_transcription={},
        session_resumption=types.SessionResumptionConfig(),
        tools=[{"function_declarations": [{"name": "get_weather", "description": "w", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}])
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=cfg) as s:
        tone = b"".join(struct.pack("<h", int(8000*math.sin(i*440*2*math.pi/16000))) for i in range(16000))
        sil = b"\0\0" * 8000
        for buf in (sil, tone, sil, sil):
            for i in range(0, len(buf), 1280):
                await s.send_realtime_input(audio=types.Blob(data=buf[i:i+1280], mime_type="audio/pcm;rate=16000"))
        n = 0; out = ""
        async for msg in s.receive():
            if msg.session_resumption_update:
                print("handle", msg.session_resumption_update.new_handle)
            sc = msg.server_content
            if sc and sc.model_turn:
                for p in sc.model_turn.parts:
                    if p.inline_data: n += len(p.inline_data.data)//2
            if sc and sc.input_transcription: print("input transcript:", sc.input_transcription.text)
            if sc and sc.output_transcription: out += sc.output_transcription.text
            if sc and sc.turn_complete:
                print("turn complete; samples", n, "out:", out, "usage", msg.usage_metadata.total_token_count)
                break
asyncio.run(main(int(sys.argv[1])))
