"""The example judgement set, installed as package data ``clipscore_sr.data.judgements`` (``example/``).

Built by ``judgements/make_example.py`` (a maintainer script); read by ``srmetrics demo``.
"""
