#!/usr/bin/env python3
"""Minimal edge for the benchmark: RTMP handshake responder + /api/v1/health (idle load).
Usage: fake_edge.py IP RTMP_PORT HTTP_PORT"""
import asyncio, json, sys

ip, rtmp_port, http_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def rtmp(reader, writer):
    try:
        c0c1 = await reader.readexactly(1537)
        writer.write(b"\x03" + bytes(1536) + c0c1[1:])
        await writer.drain()
    except Exception:
        pass
    writer.close()

async def http(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        body = json.dumps({"status": "ok", "node": ip, "connections": 0, "max_connections": 1000,
                           "cpu": 0.05, "egress_bps": 0, "max_egress_bps": 0, "draining": False}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
    except Exception:
        pass
    writer.close()

async def main():
    a = await asyncio.start_server(rtmp, ip, rtmp_port)
    b = await asyncio.start_server(http, ip, http_port)
    async with a, b:
        await asyncio.gather(a.serve_forever(), b.serve_forever())

asyncio.run(main())
