"""Everything about people's judgements.

``judgements``  the canonical judgement schema, validation and AMT import
``agreement``   2AFC agreement of metrics with the votes, bootstrap CIs, paired tests
"""
