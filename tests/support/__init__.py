"""What the tests and the benchmarks share: waiting, free ports, specs, the emulator, processes
(worker, beat, emulator, NCS receiver, a private Redis), the promise checks and media checks.

Conftest files only register fixtures; everything else a test or a benchmark uses lives here.
"""
