"""A loopback TCP proxy that delays each client-to-server chunk by a fixed time.

Stands in for the network distance to a real object store (moto answers in a few
milliseconds on loopback; S3 from a training job is tens of milliseconds away).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while chunk := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.contextmanager
def latency_proxy(target_port: int, delay_ms: float) -> Iterator[int]:
    """Yield the port of a proxy to 127.0.0.1:target_port adding delay_ms per request."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port_box: list[int] = []
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
            await asyncio.gather(
                _pipe(reader, up_writer, delay_ms / 1000), _pipe(up_reader, writer, 0.0)
            )
        except (ConnectionError, asyncio.CancelledError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        ready.set()
        await stop.wait()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait()
    try:
        yield port_box[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=5)
