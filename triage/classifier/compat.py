"""Old module paths that pickled models name: each maps to the module that now holds the same
code."""

from __future__ import annotations

import importlib
import sys

# A model file pickles its functions by module path (`triage.model.clean_pairs`). When a module
# moves, old files name the old path; each entry says where that code lives now. Add an entry
# whenever a module that a pipeline references (cleaning, features) moves.
RENAMED_MODULES: dict[str, str] = {
    "triage.model": "triage.classifier.model",  # moved into the classifier wing at 716eb17
    "triage.cleaning": "triage.classifier.cleaning",  # likewise
}


def register_renamed_modules() -> None:
    """Make every old module path importable as its new module, so a pickle naming either loads."""
    for old, new in RENAMED_MODULES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
