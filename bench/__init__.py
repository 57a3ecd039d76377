"""Benchmarks of Agentry against bare pydantic-ai, built on the infrastructure
they share with the test suite (`testing`: the fake model, live processes)."""
