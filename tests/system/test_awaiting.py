"""Where a task waits: the chain the teardown's evidence line prints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from system.awaiting import await_chain, describe_waiting


async def test_the_chain_follows_coroutines_into_an_async_context_managers_body() -> None:
    release = asyncio.Event()

    @contextlib.asynccontextmanager
    async def checkout() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await hand_back()  # a pool's putconn, say

    async def hand_back() -> None:
        await release.wait()

    async def query() -> None:
        async with checkout():
            pass

    task = asyncio.create_task(query(), name="fetch")
    await asyncio.sleep(0.01)
    chain = await_chain(task)
    # the query, the context manager's exit, the generator's body, the call it awaits
    names = [step.split(":")[0] for step in chain.split(" -> ")]
    assert names[:2] == ["test_awaiting.query", "contextlib.__aexit__"]
    body, call = names.index("test_awaiting.checkout"), names.index("test_awaiting.hand_back")
    assert call > body
    assert describe_waiting([task]).startswith("fetch at test_awaiting.query:")
    release.set()
    await task
    assert describe_waiting([task]) == "no task left"
