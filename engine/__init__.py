"""Visual furniture search engine: photo -> category -> similar catalogue products."""
