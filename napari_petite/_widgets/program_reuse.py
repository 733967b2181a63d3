"""A visual's shader program is linked again only when its code changed.

vispy regenerates a visual's GLSL whenever one of its shader functions changes, and
napari's grid moves visuals between cells (another view box, so another transform chain)
at every layout: every visual in a moved cell, and every overlay of every cell, is marked
for a rebuild. vispy then sends the new sources to OpenGL and links the program again
even when the generated code is the very code already linked: the chains of two cells
differ in their objects, not in their GLSL. With software OpenGL each link costs ~10 ms,
and the repaint after a layout step linked 18-26 programs (200-300 ms of one turn of the
event loop). :func:`install` keeps the linked program when the sources are unchanged;
the program's variables are uploaded again all the same (vispy does it after every
rebuild), so new transforms and textures reach the shaders under the names they had.
"""

from __future__ import annotations


def install() -> None:
    """Skip relinking identical sources in vispy's ``ModularProgram`` (idempotent)."""
    from vispy.visuals.shaders.program import ModularProgram

    original = ModularProgram.set_shaders
    if getattr(original, "petite_reuse", False):
        return

    def set_shaders(self, vert, frag, geom=None, update_variables=True):
        sources = (vert, frag, geom)
        if self.__dict__.get("_petite_sources") == sources:
            return  # linked from these very sources already
        original(self, vert, frag, geom, update_variables)
        self._petite_sources = sources

    set_shaders.petite_reuse = True
    ModularProgram.set_shaders = set_shaders
