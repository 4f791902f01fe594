"""The store: what ``python -m engine index`` writes and a search opens (metadata, vectors, vector indexes,
the category classifier), one module a layer: ``files`` (durable writes, checksums), ``vector_index``
(usearch), ``meta`` (``meta.json``), ``versions`` (saving and opening). It imports nothing above it, and no torch.
"""
