"""Coverage-guided fuzzing of Gossamer's input boundaries with atheris (issue 17).

Each module in `fuzz/targets/` is one target: its docstring says what it feeds where and
which outcomes are allowed; it exposes `test_one_input(data: bytes) -> None`, which
raises `fuzz.harness.FuzzBug` (or lets any unexpected exception out) when an input
breaks a rule. Seeds live in `fuzz/corpus/<target>/` (`fuzz/make_corpus.py` writes the
generated ones). `./dev fuzz NAME [seconds]` runs one target on a temporary copy of its
seeds; `./dev fuzz` lists them; `./dev test` runs all of them for
`GOSSAMER_FUZZ_SECONDS` (15) each after the tests. Crashes are written to
`test-artifacts/fuzz/<target>/`; `python -m fuzz NAME --replay FILE` re-runs one
without atheris. Only Gossamer's own modules are instrumented.
"""
