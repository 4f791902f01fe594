"""Reference gallery builder: Sweet Home 3D models rendered offscreen.

``python -m engine.gallery build`` fetches the models (Debian packages), maps
them to the app's categories, renders catalogue views and held-out queries.
The renderer (:mod:`engine.gallery.render`) is reusable on its own.
"""
