"""Reference gallery builder: Sweet Home 3D models rendered offscreen.

``python -m buildtime.catalogue build`` fetches the models (Debian packages), maps
them to the app's categories, renders catalogue views and held-out queries.
The renderer (:mod:`buildtime.catalogue.render`, with :mod:`buildtime.catalogue.meshes` loading the models) is
reusable on its own.
"""
