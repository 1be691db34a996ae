"""An HTTP/1.1 sink that takes every request and does nothing with it: what logging costs the model
server itself, without a broker and a logger competing for the same cores (bench.logging_overhead's
`sink` layout). It answers 200 with an empty body, which the model server's sender reads as "all taken".

    python -m bench.null_sink PORT
"""

from __future__ import annotations

import asyncio
import sys


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(_connection, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
