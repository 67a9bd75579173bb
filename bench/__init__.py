"""fastnmf's benchmark harness: providers × problems × metrics (``python -m bench --help``).

Layout, one job per module:

- ``problems``  — named problems and presets (``tiny``, ``cpu``, ``gpu``, custom shapes);
- ``datasets``  — the matrices themselves: synthetic, scikit-learn digits, a document-term corpus;
- ``providers`` — one adapter per library, all driven as ``start(W0, H0)`` then ``advance(n)``;
- ``loss``      — the one loss function every provider is judged by;
- ``costs``     — bytes and flops of one iteration (docs/benchmarks.md, Cost model);
- ``probes``    — this machine's limits, measured in the same run (read bandwidth, GEMM rate);
- ``clock``     — timers (perf_counter / CUDA events) and peak-memory meters;
- ``runner``    — the chunked timing loop, the progress bar, Ctrl-C;
- ``metrics``   — from timed traces to the reported numbers (percentiles, time to target, …);
- ``report``    — JSON lines and the markdown table; ``plots`` — the PNGs;
- ``environment`` — device, versions, git sha, timestamp.

Benchmarks are not tests: nothing here asserts a time (docs/benchmarks.md).
"""
