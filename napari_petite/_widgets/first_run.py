"""What a first launch needs: a panel that says what the sample data is and asks before
simulating it (then shows an honest progress bar and time left), and the one-time choice to
open dropped NIfTI files and DICOM folders with this plugin.

napari asks "Choose reader" on every drop when more than one plugin can read a path (its own
reader also reads NIfTI and folders); its documented answer is a reader preference per file
pattern (``settings.plugins.extension2reader``), which :func:`prefer_this_reader` sets only
when the user presses the button that says so.
"""

from __future__ import annotations

import time

from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

#: the plugin's name in napari's reader preferences (napari.yaml's ``name``)
PLUGIN = "napari-petite"
#: file patterns the preference covers (NIfTI, DICOM, ECAT 7); napari matches folders by
#: their path with a trailing separator, so "*/" stands for a dropped folder (a DICOM
#: series)
READER_PATTERNS = ("*.nii", "*.nii.gz", "*.dcm", "*.v", "*/")
#: seconds one sample subject takes on an idle 2-core computer (measured: 3-7 s, more
#: while the computer is busy), for the estimate before the first subject is done
SECONDS_PER_SUBJECT = 8.0


def reader_preferred() -> bool:
    """napari opens every pattern of :data:`READER_PATTERNS` with this plugin already."""
    from napari.settings import get_settings

    prefs = get_settings().plugins.extension2reader
    return all(prefs.get(p) == PLUGIN for p in READER_PATTERNS)


def prefer_this_reader() -> None:
    """Record, in napari's own settings, that dropped NIfTI files, .dcm files and folders
    open with this plugin (napari's Preferences ▸ Plugins can undo it)."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    plugins.extension2reader = {**plugins.extension2reader,
                                **dict.fromkeys(READER_PATTERNS, PLUGIN)}


def time_left(seconds: float) -> str:
    """"about 3 min left", "less than a minute left"."""
    from napari_petite._widgets.run_panel import format_eta

    return format_eta(seconds)


class ReaderChoice(QGroupBox):
    """One line and a button, shown until the user chose to open dropped scans here."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setTitle("Dropped scans")
        self.text = QLabel("napari asks which plugin should read each NIfTI, ECAT or DICOM "
                           "file or DICOM folder dropped on its window.")
        self.text.setWordWrap(True)
        self.button = QPushButton("Always open them with napari-petite")
        self.button.setToolTip(f"Sets napari's reader preference for {', '.join(READER_PATTERNS)}"
                               " ('*/' is a folder); undo it in napari's Preferences ▸ Plugins")
        self.button.clicked.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.button)
        self.setVisible(not reader_preferred())

    def accept(self) -> None:
        prefer_this_reader()
        self.setVisible(False)


class SampleOffer(QGroupBox):
    """Says what the sample data is, asks before simulating it, then shows its progress."""

    def __init__(self, scanners, subjects: int, on_start, on_browse, parent=None) -> None:
        super().__init__("First time here? Sample data", parent)
        self.total = len(scanners) * subjects
        minutes = max(1, round(self.total * SECONDS_PER_SUBJECT / 60))
        self.text = QLabel(
            f"{subjects} simulated people on each of two scanners: a Siemens Biograph mCT "
            f"(where the base model was trained) and a Siemens Biograph Vision 600 (the "
            f"scanner to adapt to), each with a short and a full FDG brain scan (brains from "
            f"the MNI152 template). Nothing is simulated until you press the button; it runs "
            f"once (about {minutes} min, longer when the computer is busy) and is kept.")
        self.text.setWordWrap(True)
        # a wrapped label in a scroll area is squeezed to fewer lines than it needs
        self.text.setMinimumHeight(7 * self.text.fontMetrics().lineSpacing())
        self.start_button = QPushButton("Simulate the sample data")
        self.start_button.clicked.connect(on_start)
        self.browse_button = QPushButton("Open my own data…")
        self.browse_button.clicked.connect(on_browse)
        self.bar = QProgressBar()
        self.bar.setRange(0, self.total)
        self.bar.setFormat(f"%v of {self.total} people simulated")
        self.bar.setVisible(False)
        self.eta = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.browse_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addLayout(row)
        layout.addWidget(self.bar)
        layout.addWidget(self.eta)
        self._started = 0.0

    def begin(self) -> None:
        self._started = time.monotonic()
        self.start_button.setEnabled(False)
        self.browse_button.setEnabled(False)
        self.bar.setVisible(True)
        self.bar.setValue(0)
        self.eta.setText(f"{time_left(self.total * SECONDS_PER_SUBJECT)} (estimate)")

    def advance(self, done: int, subject: str) -> None:
        """``done`` subjects finished: the bar moves, and the time left is measured."""
        self.bar.setValue(done)
        elapsed = time.monotonic() - self._started
        left = elapsed / max(done, 1) * (self.total - done)
        self.eta.setText(f"{subject} done · {time_left(left)}" if done < self.total else
                         f"all {self.total} simulated in {elapsed:.0f} s")

    def failed(self) -> None:
        self.start_button.setEnabled(True)
        self.browse_button.setEnabled(True)
        self.bar.setVisible(False)
        self.eta.setText("")
