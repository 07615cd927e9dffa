"""Collecting human 2AFC judgements: ``srmetrics study make|serve|export-amt|status``.

``sampling``  balanced, seeded choice of trials (GT, output X, output Y), sentinels and repeats
``render``    one display stretch per scene (from the GT), applied identically to GT, X and Y; 8-bit PNGs
``manifest``  ``study.json``: format, options, every trial; loading and validation
``make``      folders -> paired files -> trials -> renders -> manifest
``store``     the append-only, fsynced, locked ``judgements.csv`` (idempotent per annotator and trial)
``app``       the local web app (Starlette on uvicorn) and its static page
``amt``       Amazon Mechanical Turk HIT export (CSV + crowd-html template)
``status``    per-annotator quality checks (sentinel accuracy, repeat consistency, response times)
"""
