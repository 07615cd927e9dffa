"""Collecting human 2AFC judgements: ``srmetrics study make|serve|export-amt|status|plan``.

``sampling``  balanced, seeded choice of trials (GT, output X, output Y), sentinels and repeats; the slot schedule
``render``    one display stretch per scene (from the GT), applied identically to GT, X and Y; 8-bit PNGs
``manifest``  ``study.json``: format, options, every trial (balanced) or the schedule and scenes (active)
``make``      folders -> paired files -> trials -> renders -> manifest
``store``     the append-only, fsynced, locked ``judgements.csv`` (idempotent per annotator and trial)
``app``       the local web app (Starlette on uvicorn) and its static page
``active``    the active pair sampler (expected information gain on the method scores)
``live``      the active design served: the next trial of each annotator chosen between answers
``auditlog``  ``active-log.jsonl``: every trial the server gave, and why
``status``    per-annotator quality checks (sentinel accuracy, repeat consistency, response times)
``plan``      ``study plan``: votes needed, balanced-random vs active, by simulation
``demo``      the bundled example as a study
(Amazon Mechanical Turk export: :mod:`clipscore_sr.human.amt`.)
"""
