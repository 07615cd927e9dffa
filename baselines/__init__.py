"""Reference SR generators, dataset readers and trainers, installed as ``clipscore_sr.baselines``.

The source lives in the top-level ``baselines/`` folder of the repository; it is importable only under
the namespaced name ``clipscore_sr.baselines`` (never as a bare ``baselines``).
"""
