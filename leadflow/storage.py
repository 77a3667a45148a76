from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed static files; a file missing from the manifest (tests,
    a forgotten collectstatic) falls back to its plain name instead of a 500."""

    manifest_strict = False
