"""A subprocess that writes to a store until killed, or does a fixed amount of work.

python -m tests.crash_writer URL stream            # rewrite every key forever, one generation at a time
python -m tests.crash_writer URL own PREFIX N      # write PREFIX:0..N-1 once, then print "done"
python -m tests.crash_writer URL repeat KEY N      # write KEY N times (values 0..N-1)
python -m tests.crash_writer URL count N           # increment the key "counter" N times by compare-and-set
python -m tests.crash_writer URL gather PREFIX START N  # write PREFIX:START.. (N keys) all at once
python -m tests.crash_writer URL cas TASKS N        # TASKS tasks each add N to "counter" (etag reads)

Values of the stream mode are one generation number repeated, so a torn value is easy to spot.
"""

from __future__ import annotations

import asyncio
import sys

from storage import ConflictError, Driver, create_driver

KEYS = [f"item:{i}" for i in range(12)]
SIZE = 256 * 1024


def value_of(generation: int) -> bytes:
    """A value made of ``generation`` repeated, SIZE bytes or a little more."""
    unit = f"{generation:08d};".encode()
    return unit * (SIZE // len(unit) + 1)


def generation_of(value: bytes) -> int:
    """The generation a value holds; ValueError if it is torn."""
    unit = value[:9]
    if len(value) % 9 or value != unit * (len(value) // 9):
        raise ValueError(f"torn value of {len(value)} bytes starting {value[:20]!r}")
    return int(unit[:8])


async def _add(driver: Driver, count: int) -> None:
    """Increment "counter" ``count`` times: read value and etag together, write if unchanged."""
    for _ in range(count):
        while True:
            value, etag = await driver.get_item_with_etag("counter")
            try:
                if value is None:
                    await driver.set_item_conditional("counter", b"1", if_none_match=True)
                else:
                    new = str(int(value) + 1).encode()
                    await driver.set_item_conditional("counter", new, if_match=etag)
                break
            except ConflictError:
                await asyncio.sleep(0)


async def main(url: str, mode: str, *args: str) -> None:
    driver = create_driver(url, sweep_interval=0)
    try:
        if mode == "stream":
            generation = 1
            while True:
                for key in KEYS:
                    await driver.set_item(key, value_of(generation))
                print(generation, flush=True)
                generation += 1
        elif mode == "own":
            prefix, count = args[0], int(args[1])
            for i in range(count):
                await driver.set_item(f"{prefix}:{i}", str(i).encode())
            print("done", flush=True)
        elif mode == "repeat":
            key, count = args[0], int(args[1])
            for i in range(count):
                await driver.set_item(key, str(i).encode())
            print("done", flush=True)
        elif mode == "count":
            for _ in range(int(args[0])):
                while True:
                    meta = await driver.get_meta("counter")
                    current = int(await driver.get_item("counter") or b"0") if meta else 0
                    try:
                        if meta:
                            await driver.set_item_conditional(
                                "counter", str(current + 1).encode(), if_match=meta["etag"]
                            )
                        else:
                            await driver.set_item_conditional("counter", b"1", if_none_match=True)
                        break
                    except ConflictError:
                        continue
            print("done", flush=True)
        elif mode == "gather":
            prefix, start, count = args[0], int(args[1]), int(args[2])
            keys = [f"{prefix}:{i}" for i in range(start, start + count)]
            await asyncio.gather(*(driver.set_item(key, key.encode()) for key in keys))
            print("done", flush=True)
        elif mode == "cas":
            tasks, count = int(args[0]), int(args[1])
            await asyncio.gather(*(_add(driver, count) for _ in range(tasks)))
            print("done", flush=True)
    finally:
        await driver.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
