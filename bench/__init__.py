"""Benchmarks of Agentry against bare pydantic-ai, and the fake model they share
with the test suite (`bench.fake_openai`)."""
