"""``srmetrics report``: one offline HTML page from the tables the toolkit writes (see :mod:`.data`, :mod:`.build`)."""
