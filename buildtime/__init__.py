"""Build-time code: what makes the files the product ships, never imported by ``engine`` at run time.

* ``buildtime.catalogue``: renders the bundled catalogue from Sweet Home 3D models (``python -m buildtime.catalogue build``).
* ``buildtime.scenes``: composes room scenes with exact boxes from those renders (training data and the scenes benchmark).
* ``buildtime.train_region_scorer``: trains the region window scorer on composed scenes.
* ``buildtime.convert_detector``: converts the TF.js furniture detector into ``engine/models/``.
"""
