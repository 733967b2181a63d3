# napari-petite: set-up, demo and tests on a Debian machine with Python 3.11.
#   make demo   sets everything up, then opens napari with the plugin (headless demo without a display)
#   make test   sets everything up, then runs ruff, the manifest check, the wheel checks (contents,
#               and the installed wheel in a fresh venv) and pytest
# GPU machines: `make setup TORCH=torch` lets pip choose a CUDA build; the default pins the CPU
# build that this project's machines keep on local disk.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

SYSTEM_PACKAGES := xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 \
	libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 \
	libxcb-xkb1 libxcb-sync1 libxcb-shm0 \
	dicom3tools dcm2niix orthanc

.PHONY: setup system-packages demo test lint manifest wheel pytest clean

setup: system-packages $(STAMP)

# Qt 6 needs the xcb libraries; the tests need Xvfb and Mesa for napari's OpenGL canvas, and
# the DICOM tests dicom3tools (dciodvfy, dcentvfy), dcm2niix and Orthanc (a real PACS).
system-packages:
	@missing=$$(dpkg-query -W -f='$${Status} $${Package}\n' $(SYSTEM_PACKAGES) 2>/dev/null \
		| grep -v '^install ok installed' | wc -l); \
	known=$$(dpkg-query -W $(SYSTEM_PACKAGES) 2>/dev/null | wc -l); \
	if [ "$$missing" = 0 ] && [ "$$known" = "$(words $(SYSTEM_PACKAGES))" ]; then \
		echo "system packages: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(SYSTEM_PACKAGES); \
	else \
		echo "Please install (as root): apt-get install $(SYSTEM_PACKAGES)"; exit 1; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq "$(TORCH)"
	$(BIN)/python -m pip install -qq -e ".[all,testing]"
	touch $(STAMP)

demo: setup
	$(BIN)/petite gui

lint: setup
	$(BIN)/ruff check napari_petite tests benchmarks tools

manifest: setup
	$(BIN)/npe2 validate napari-petite --imports

# The wheel must carry the npe2 manifest and the shipped sample data, and work once installed
# into a fresh venv (manifest with imports, a sample-data entry, both shipped base models).
wheel: setup
	rm -rf dist
	$(BIN)/python -m build --wheel --outdir dist . >/dev/null
	$(BIN)/python tools/check_wheel.py dist/*.whl
	$(BIN)/python tools/check_installed_wheel.py dist/*.whl

pytest: setup
	$(BIN)/python -m pytest -q

test: lint manifest wheel pytest

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache
