"""Everything about people's judgements.

``judgements``        the canonical judgement schema: reading, validation (rows, paths, pairs), writing
``judgement_images``  the image checks of validation (headers only: exists, readable, sizes and bands agree)
``amt``               Amazon Mechanical Turk: a study's HITs out, batch results in
``vote_tables``       per-pair and per-(pair, annotator) vote counts; the unique (gt, image) pairs to score
``agreement``         2AFC agreement of metrics with the votes from per-pair values: CIs, paired tests, the table
``agreement_run``     the agreement job: judgements -> unique images scored once -> ``agreement``
``votes``             pairwise votes between methods as arrays, win counts, the comparison graph, simulated votes
``fits``              Bradley-Terry / Thurstone / Davidson fits (batched), win probabilities
``ranking``           ``rank``: the rankings per dataset and pooled, two-way bootstrap, pair table, the table
``ranking_agreement`` each metric's method ranking against people's (Kendall tau-b)
``resampling``        the one bootstrap module (scenes x annotators) the others use
``reliability``       Krippendorff's alpha, leave-one-out majority agreement, sentinels, repeats
``study``             ``srmetrics study``: making, serving and checking a 2AFC study
"""
