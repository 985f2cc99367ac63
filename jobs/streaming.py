"""Streaming rows read from the database to the client in bounded memory.

Under ASGI Django collects a synchronous streaming iterator into a list before sending it, so a
long download would sit in memory whole. `batched` hands the server batches of lines instead, each
read in the thread that holds the request's database connection (where the chunked cursor
lives)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from itertools import islice

from asgiref.sync import sync_to_async

Lines = Generator[str, None, None]
BATCH_LINES = 500


async def batched(lines: Lines, size: int = BATCH_LINES) -> AsyncIterator[str]:
    next_batch = sync_to_async(lambda: "".join(islice(lines, size)), thread_sensitive=True)
    try:
        while batch := await next_batch():
            yield batch
    finally:
        # Closes the cursor if the client went away mid-stream.
        await sync_to_async(lines.close, thread_sensitive=True)()
