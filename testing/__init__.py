"""Test and benchmark infrastructure shared by `tests/` and `bench/`.

Nothing in the product imports this package; it stands the product up the
way it is deployed and plays the model it talks to.

Public surface:
    testing.fake_openai   a fake OpenAI-compatible chat-completions server
                          (in a thread: `FakeOpenAIThread`; as a process:
                          `python -m testing.fake_openai`), steered by
                          `[[tokens=N delay=D ...]]` directives in the prompt
    testing.live          real server processes: `free_port`, `LiveServer`
                          (daphne), `FakeModelServer`, `RedisServer`,
                          `PostgresDatabase`, `ApiClient`, `server_env`
"""
