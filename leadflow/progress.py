"""A progress bar for the management commands of every app: on the command's stderr,
only on a terminal."""

from typing import Any, TextIO, cast

from django.core.management.base import OutputWrapper
from tqdm import tqdm


def progress_bar(stream: OutputWrapper, **kwargs: Any) -> tqdm:
    # tqdm redraws with "\r": write to the raw stream, not the wrapper that appends newlines.
    out = cast(TextIO, getattr(stream, "_out", stream))
    return tqdm(file=out, disable=not out.isatty(), dynamic_ncols=True, **kwargs)
