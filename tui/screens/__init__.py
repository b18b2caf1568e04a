"""The panels (1–5) and the modal dialogs.

Imported lazily (PEP 562): the Runs panel is all the first paint needs, and the rest (with
rich's syntax highlighting, JSON and so on) loads when first shown.
"""

from ..lazy import exports

_WHERE = {
    "AnswerModal": "asks",
    "ArtifactsScreen": "artifacts",
    "AsksScreen": "asks",
    "ConfirmModal": "confirm",
    "ExportModal": "artifacts",
    "FilePickerModal": "file_picker",
    "HelpScreen": "help",
    "MemoryScreen": "memory",
    "RunDetailScreen": "run_detail",
    "RunsScreen": "runs",
}

__all__ = sorted(_WHERE)

__getattr__ = exports(__name__, _WHERE)
