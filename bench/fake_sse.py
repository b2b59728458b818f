"""The FAKE SSE upstream both SSE benchmarks use: stamped events, so a reader in the same
process can tell each event's delay (time.perf_counter_ns is one clock for both)."""
import asyncio
import time


async def write_stamped_events(writer, events, gap_s):
    """A chunked text/event-stream answer of `events` events, gap_s apart, then its end."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    for _ in range(events):
        data = b"data: %d\n\n" % time.perf_counter_ns()
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        await asyncio.sleep(gap_s)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
