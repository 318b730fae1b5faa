"""The simulator's light components, as one table.

Every system is a deflector-like galaxy plus, depending on its kind, one more light component,
plus line-of-sight neighbours whatever its kind: fixed slots of field galaxies and stars
(:data:`NEIGHBOUR_GALAXIES`, :data:`NEIGHBOUR_STARS`) of which the population fills a Poisson
number at the configured density, unused slots NaN and not drawn.  :data:`COMPONENTS` says,
per component, which kinds carry it, whether it is lensed (ray-traced through the deflector's
SIE + shear) or drawn in the image plane, whether it is convolved with the PSF, and the
function that renders it.  The population
(:mod:`.population`: colour priors, blanking the columns a kind lacks, the label)
and the renderer (:func:`skyscan.cases.lenses.sim.render.render`) both read this table, so adding a
component is one :class:`LightComponent` entry plus its render function, its priors in the
config (``lenses.priors.<name>_mag``, ``<name>_colors`` and the shape priors) and their draw
in :meth:`skyscan.cases.lenses.sim.population.Population.draw`.

A component's columns are named ``<name>_...``: its magnitudes ``<name>_mag_<band>`` set its
per-band amplitudes, and every ``<name>_*`` column is NaN in the rows of kinds that lack it (and,
for a neighbour slot, in the rows where it is unused).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from skyscan.cases.lenses.sim import profiles as prof
from skyscan.cases.lenses.sim.profiles import RING_KNOTS
from skyscan.cases.lenses.sim.psf import psf_kernel_radius, psf_profile

if TYPE_CHECKING:
    from skyscan.cases.lenses.sim.render import Scene

__all__ = [
    "KINDS",
    "LightComponent",
    "COMPONENTS",
    "component_names",
    "neighbour_slots",
    "NEIGHBOUR_GALAXIES",
    "NEIGHBOUR_STARS",
    "carriers",
    "lensed_kinds",
    "is_lens",
]

#: The kinds of systems (column ``kind``), in the order of ``lenses.kinds``.
KINDS = ("lens", "no_source", "companion", "ring", "spiral", "star_blend")


@dataclass(frozen=True)
class LightComponent:
    """One light component of the simulated systems.

    Parameters
    ----------
    name : str
        Prefix of the component's columns (``<name>_mag_<band>``, ...) and of its priors.
    kinds : tuple of str
        The kinds that carry it; its columns are NaN in the other rows.
    render : callable
        ``render(scene, rows, mass)`` draws the component for the systems ``rows`` (indices
        into the batch) on the scene's grid (see :class:`.render.Scene`).  ``mass``
        is the deflector's SIE + shear constants of these rows if ``lensed``, else ``None``.
        A ``convolved`` component returns its unit-amplitude pixel images ``(m, H, W)`` and
        their total flux ``(m,)`` (the bands then only scale them by ``<name>_mag_<band>``);
        one that is not returns its band images ``(m, bands, H, W)`` in e-/s and ``None``.
    lensed : bool
        Ray-traced through the deflector's SIE + shear (its light is the lensed signal: the
        magnification and S/N are measured on it, and kinds carrying it are labelled 1) rather
        than drawn in the image plane.
    convolved : bool
        Drawn unconvolved on the super-sampled grid and convolved with the PSF on the pixel
        grid; ``False`` for a point source drawn as the PSF itself, added after convolution.
    neighbour : bool
        A line-of-sight neighbour slot: drawn from the field's number counts
        (:mod:`.field`) rather than from ``<name>_mag``/``<name>_colors`` priors,
        and rendered only in the rows whose slot is filled (finite ``<name>_mag_<band>``); a
        batch without its columns (the survey tiles' objects) has none.
    colors_relative_to : str, optional
        Another component whose colours this one's ``<name>_colors`` priors are offsets from
        (same row): a ring bluer or redder than its host galaxy.
    """

    name: str
    kinds: tuple[str, ...]
    render: Callable[..., tuple[torch.Tensor, np.ndarray | None]]
    lensed: bool = False
    convolved: bool = True
    neighbour: bool = False
    colors_relative_to: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"component {self.name!r}: unknown kind(s) {unknown}")
        if self.lensed and not self.convolved:
            raise ValueError(f"component {self.name!r}: a lensed component must be convolved")


def _sersic_light(name: str):
    """Render function of an unlensed elliptical Sersic whose columns start with ``name``."""

    def render(scene: Scene, rows: np.ndarray, mass=None):
        n_sersic = scene.col(f"{name}_n_sersic", rows)
        unit = prof.sersic_total_flux(scene.col(f"{name}_R_sersic", rows), n_sersic)
        pixels = scene.evaluate(
            rows, prof.sersic_kernel, scene.sersic(name, rows), roots=prof.sersic_roots(n_sersic)
        )
        return pixels, unit

    render.__name__ = render.__qualname__ = f"render_{name}"
    return render


def render_source(scene: Scene, rows: np.ndarray, mass):
    """The Sersic source behind the deflector, ray-traced through its SIE + shear, with its
    star-forming clumps when the batch has them (``lenses.source_model: clumpy``)."""
    n_sersic = scene.col("source_n_sersic", rows)
    unit = prof.sersic_total_flux(scene.col("source_R_sersic", rows), n_sersic)
    if "source_clump1_amp" not in scene.params:
        pixels = scene.evaluate(
            rows,
            prof.lensed_sersic_kernel,
            mass,
            scene.sersic("source", rows),
            roots=prof.sersic_roots(n_sersic),
        )
        return pixels, unit
    slots = range(1, prof.SOURCE_CLUMPS + 1)
    clump = {
        key: np.stack([scene.col(f"source_clump{j}_{key}", rows) for j in slots], axis=1)
        for key in ("x", "y", "sigma", "amp")
    }
    pixels = scene.evaluate(
        rows,
        prof.lensed_clumpy_sersic_kernel,
        mass,
        scene.sersic("source", rows),
        prof.clump_constants(clump["x"], clump["y"], clump["sigma"], clump["amp"]),
        roots=prof.sersic_roots(n_sersic),
    )
    return pixels, unit + prof.clumps_total_flux(clump["sigma"], clump["amp"])


def render_ring(scene: Scene, rows: np.ndarray, mass=None):
    """A knotty, possibly partial ring whose centre is offset from the central galaxy's."""
    names = ("ring_radius", "ring_width", "ring_e1", "ring_e2", "ring_center_x", "ring_center_y")
    shape = {
        "arc": scene.col("ring_arc", rows),
        "arc_angle": scene.col("ring_arc_angle", rows),
        "knot_angles": np.stack(
            [scene.col(f"ring_knot{j}_angle", rows) for j in range(1, RING_KNOTS + 1)], 1
        ),
        "knot_amplitudes": np.stack(
            [scene.col(f"ring_knot{j}_amp", rows) for j in range(1, RING_KNOTS + 1)], 1
        ),
        "knot_width": scene.col("ring_knot_width", rows),
    }
    radius, width = scene.col("ring_radius", rows), scene.col("ring_width", rows)
    consts = prof.ring_constants(*(scene.col(k, rows) for k in names), **shape)
    unit = prof.ring_total_flux(radius, width, **shape)
    return scene.evaluate(rows, prof.ring_kernel, consts), unit


def render_spiral(scene: Scene, rows: np.ndarray, mass=None):
    """An exponential disk with logarithmic spiral arms about the central galaxy's centre."""
    names = (
        "spiral_R_sersic",
        "spiral_e1",
        "spiral_e2",
        "lens_center_x",
        "lens_center_y",
        "spiral_arms",
        "spiral_pitch",
        "spiral_amplitude",
        "spiral_phase",
    )
    consts = prof.spiral_constants(*(scene.col(k, rows) for k in names))
    r = scene.col("spiral_R_sersic", rows)
    unit = prof.sersic_total_flux(r, np.ones_like(r))
    return scene.evaluate(rows, prof.spiral_kernel, consts), unit


def _point_source(name: str):
    """Render function of a star whose columns start with ``name``: the analytic PSF of each
    band sampled at pixel centres, normalised like the convolution kernels (already convolved,
    so added after the convolution)."""

    def render(scene: Scene, rows: np.ndarray, mass=None):
        obs, device = scene.obs, scene.device
        h = obs.stamp_size
        x, y = scene.grid(1, torch.float64)
        sx = torch.as_tensor(scene.col(f"{name}_center_x", rows), device=device)
        sy = torch.as_tensor(scene.col(f"{name}_center_y", rows), device=device)
        r2 = (x - sx[:, None]) ** 2 + (y - sy[:, None]) ** 2
        out = torch.empty((len(rows), len(obs.bands), h, h), dtype=scene.dtype, device=device)
        for k, band in enumerate(obs.bands):
            rad = psf_kernel_radius(band)
            grid = np.arange(-rad, rad + 1) * band.pixel_scale
            norm = psf_profile(band, grid[None, :] ** 2 + grid[:, None] ** 2).sum()
            rate = band.mag_to_rate(scene.col(f"{name}_mag_{band.name}", rows))
            star = psf_profile(band, r2) / norm * torch.as_tensor(rate, device=device)[:, None]
            out[:, k] = star.reshape(len(rows), h, h).to(scene.dtype)
        return out, None

    render.__name__ = render.__qualname__ = f"render_{name}"
    return render


render_star = _point_source("star")

#: Line-of-sight neighbour slots of every stamp: galaxies ``neighbour1..`` and one star.
NEIGHBOUR_GALAXIES = 4
NEIGHBOUR_STARS = 1


def _neighbours() -> tuple[LightComponent, ...]:
    galaxies = tuple(
        LightComponent(f"neighbour{k}", KINDS, _sersic_light(f"neighbour{k}"), neighbour=True)
        for k in range(1, NEIGHBOUR_GALAXIES + 1)
    )
    star = LightComponent(
        "neighbour_star", KINDS, _point_source("neighbour_star"), convolved=False, neighbour=True
    )
    return (*galaxies, star)


#: The light components, in rendering order (which fixes the float summation order).
COMPONENTS: tuple[LightComponent, ...] = (
    LightComponent("lens", KINDS, _sersic_light("lens")),  # the deflector-like central galaxy
    LightComponent("source", ("lens",), render_source, lensed=True),
    LightComponent("companion", ("companion",), _sersic_light("companion")),
    LightComponent("ring", ("ring",), render_ring, colors_relative_to="lens"),
    LightComponent("spiral", ("spiral",), render_spiral),
    LightComponent("star", ("star_blend",), render_star, convolved=False),
    *_neighbours(),  # last: rows without neighbours keep the summation order of the others
)


def _check_table(components) -> None:
    names = [c.name for c in components]
    if len(set(names)) != len(names):
        raise ValueError(f"light components must have distinct names, got {names}")
    for a in names:
        for b in names:
            if a != b and b.startswith(a + "_"):
                raise ValueError(f"component {b!r} would share the columns of {a!r}")
    for kind in KINDS:
        lensed = [c.name for c in components if c.lensed and kind in c.kinds]
        if len(lensed) > 1:  # the magnification and S/N are per row, of one lensed component
            raise ValueError(f"kind {kind!r} carries more than one lensed component: {lensed}")
    for c in components:
        if c.colors_relative_to is not None and c.colors_relative_to not in names:
            raise ValueError(f"component {c.name!r}: colours relative to unknown component")
        if c.neighbour and c.lensed:
            raise ValueError(f"component {c.name!r}: a neighbour is not lensed")


_check_table(COMPONENTS)


def component_names(neighbours: bool = True) -> tuple[str, ...]:
    """Names of the light components, in table order (without the neighbour slots if
    ``neighbours`` is false: the components with ``<name>_mag``/``<name>_colors`` priors)."""
    return tuple(c.name for c in COMPONENTS if neighbours or not c.neighbour)


def neighbour_slots() -> tuple[LightComponent, ...]:
    """The line-of-sight neighbour components (galaxies first, then stars)."""
    return tuple(c for c in COMPONENTS if c.neighbour)


def carriers(component: LightComponent, kind: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows whose ``kind`` carries ``component``."""
    return np.isin(np.asarray(kind).astype(str), component.kinds)


def lensed_kinds() -> tuple[str, ...]:
    """The kinds that carry a lensed component (the strong lenses, label 1)."""
    return tuple(k for k in KINDS if any(c.lensed and k in c.kinds for c in COMPONENTS))


def is_lens(kind: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows whose ``kind`` is a strong lens (carries a lensed component)."""
    return np.isin(np.asarray(kind).astype(str), lensed_kinds())
