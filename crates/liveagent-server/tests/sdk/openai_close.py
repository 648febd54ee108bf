"""Closes three `openai` SDK realtime connections (client.realtime.connect) against the local
server on 127.0.0.1:PORT (argv[1]) and prints how each close ended and how long it took (the
Rust test checks the clean end; the durations are only printed, never asserted)."""
import asyncio, sys, time
from openai import AsyncOpenAI

async def main(port):
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1",
                         websocket_base_url=f"ws://127.0.0.1:{port}/v1")
    for n in range(3):
        async with client.realtime.connect(model="gpt-realtime") as conn:
            first = await conn.recv()
            ws = conn._connection
            t0 = time.monotonic()
            await conn.close()
            ms = (time.monotonic() - t0) * 1000
            p = getattr(ws, "protocol", ws)
            rcvd = p.close_rcvd.code if p.close_rcvd else None
            sent = p.close_sent.code if p.close_sent else None
            print(f"close {n}: first={first.type} state={ws.state.name} sent={sent} rcvd={rcvd} "
                  f"rcvd_then_sent={p.close_rcvd_then_sent} ms={ms:.0f}")
asyncio.run(main(int(sys.argv[1])))
