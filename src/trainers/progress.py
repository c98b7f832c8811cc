"""Progress bars on a terminal, none in logs, so CI output stays readable.

Our own bars use tqdm's `disable=None` (off when stderr is not a TTY); this module applies the
same rule to the HF Trainer's bars and to transformers' and huggingface_hub's loading bars.
"""

from __future__ import annotations

import sys


def interactive() -> bool:
    """Whether stderr, where tqdm draws, is a terminal."""
    return sys.stderr.isatty()


def quiet_libraries() -> None:
    """Silence transformers' (and huggingface_hub's) own bars when not on a terminal."""
    if not interactive():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
