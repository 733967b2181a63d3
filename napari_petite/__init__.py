"""napari-petite: adapt a pre-trained 3D PET denoising network to a new scanner with Mix-PEFT.

Importing the package stays cheap (no torch, no Qt) so that napari starts fast; the heavy
modules are imported by the functions that need them.
"""

__version__ = "0.1.0"

from napari_petite.errors import PetiteError

__all__ = ["PetiteError", "__version__"]
