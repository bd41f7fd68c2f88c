"""A fake api.chucknorris.io with a control API for application faults (see docs/DESIGN.md).

Run it with ``python -m harness.fakeapi --port 0 --seed 1``; drive it with
:class:`harness.fakeapi.client.FakeApiClient`.
"""
