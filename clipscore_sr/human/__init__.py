"""Everything about people's judgements.

``judgements``  the canonical judgement schema, validation and AMT import
``agreement``   2AFC agreement of metrics with the votes, bootstrap CIs, paired tests; ranking agreement
``ranking``     Bradley-Terry / Thurstone / Davidson rankings of methods, scene bootstrap, pair statistics
``reliability`` Krippendorff's alpha, leave-one-out majority agreement, sentinels, repeats
"""
