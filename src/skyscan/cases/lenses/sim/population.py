"""Population priors and the per-block parameter draw.

Every system is a function of ``(seed, global index)``: systems are drawn in fixed blocks of
:data:`BLOCK_SIZE` rows, block ``k`` from ``SeedSequence(seed, spawn_key=(k,))``.  Shards of any
size are slices of this one sequence, so the rows are the same whatever the shard size or the
number of workers.

Kinds (column ``kind``; ``label`` is 1 for the kinds that carry a lensed light component, i.e.
``lens`` only; which kind carries which component is the table
:data:`skyscan.cases.lenses.sim.components.COMPONENTS`):

``lens``
    SIE + shear deflector (Sersic light) and a Sersic source behind it.
``no_source``
    The same deflector population with nothing behind it.
``companion``
    A deflector with an unlensed Sersic galaxy 1-4" away.
``ring``
    A deflector-like galaxy with a collisional or resonance ring, the classic Einstein-ring
    impostor made not to be one: radius over the theta_E range, but centred up to 0.4 radii
    off the galaxy, knotty (2-6 Gaussian knots along it), partial for half of them (an arc of
    120-320 degrees), and bluer or redder than its host (``ring_colors`` are offsets from the
    host's colours).
``spiral``
    A bulge plus an exponential disk with logarithmic spiral arms.
``star_blend``
    A deflector with a bright star close by.

Every kind also has line-of-sight neighbours: field galaxies and stars of
:mod:`.field` (the survey tiles' number counts and sizes) at ``lenses.neighbours``
densities, a Poisson number per stamp in fixed slots (4 galaxies, 1 star), scattered uniformly
over the stamp outside ``min_distance`` of its centre, and drawn after everything else so the
other columns do not depend on them.  They are not lensed signal.

Simulation cost (draw + render, default config: g, r, i coadd, 45 px, 3x super-sampling,
noise and S/N, 1,000 systems, eager, one thread): 0.66 ms per system before the neighbours and
the new ring, at most 1.0 ms with them (measured on a busier machine, so an upper bound);
neighbours add ~0.9 Sersic evaluations per stamp and ~60 columns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping

import numpy as np
from scipy import special, stats

from skyscan.cases.lenses.sim import field
from skyscan.cases.lenses.sim.components import COMPONENTS as LIGHT_COMPONENTS
from skyscan.cases.lenses.sim.components import (
    KINDS,
    carriers,
    component_names,
    is_lens,
    neighbour_slots,
)
from skyscan.cases.lenses.sim.profiles import (
    RING_KNOTS,
    SOURCE_CLUMPS,
    ellipticity_to_phi_q,
    phi_q_to_ellipticity,
    sersic_total_flux,
)
from skyscan.cases.lenses.sim.survey import ConfigError
from skyscan.core.seeding import BLOCK_SIZE, block_rng

__all__ = ["KINDS", "BLOCK_SIZE", "Prior", "parse_prior", "Population", "block_rng"]

log = logging.getLogger(__name__)


_DIST_PARAMS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "sigma"),
    "constant": ("value",),
    "choice": ("values",),
}


class Prior:
    """A one-dimensional prior drawn by inverse transform of uniforms (one uniform per draw).

    Parameters
    ----------
    key : str
        Dotted config key (for error messages).
    spec : mapping
        ``{"dist": ..., parameters}``; see ``cases/lenses/config.schema.yaml``.
    """

    def __init__(self, key: str, spec: Mapping):
        self.key = key
        self.dist = spec.get("dist")
        if self.dist not in _DIST_PARAMS:
            raise ConfigError(
                f"config key '{key}.dist': {self.dist!r} is not one of {', '.join(_DIST_PARAMS)}"
            )
        for p in _DIST_PARAMS[self.dist]:
            if p not in spec:
                raise ConfigError(f"config key '{key}': dist {self.dist} needs '{p}'")
        allowed = set(_DIST_PARAMS[self.dist]) | {"dist"}
        if self.dist in ("normal", "lognormal"):
            allowed |= {"low", "high"}
        for p in spec:
            if p not in allowed:
                raise ConfigError(
                    f"unknown config key '{key}.{p}' for dist {self.dist} "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )
        self.spec = dict(spec)
        low, high = spec.get("low", -np.inf), spec.get("high", np.inf)
        if self.dist in ("uniform", "loguniform") and not low < high:
            raise ConfigError(f"config key '{key}': low ({low}) must be below high ({high})")
        if self.dist in ("normal", "lognormal") and not low < high:
            raise ConfigError(f"config key '{key}': low ({low}) must be below high ({high})")
        if self.dist == "loguniform" and low <= 0:
            raise ConfigError(f"config key '{key}': loguniform needs low > 0, got {low}")
        if self.dist == "normal" and not spec["sd"] > 0:
            raise ConfigError(f"config key '{key}.sd' must be > 0, got {spec['sd']}")
        if self.dist == "lognormal":
            if not spec["median"] > 0:
                raise ConfigError(f"config key '{key}.median' must be > 0, got {spec['median']}")
            if not spec["sigma"] > 0:
                raise ConfigError(f"config key '{key}.sigma' must be > 0, got {spec['sigma']}")
        if self.dist == "lognormal" and high <= 0:
            raise ConfigError(f"config key '{key}': lognormal needs high > 0, got {high}")

    def from_uniform(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms in [0, 1) to draws of this prior."""
        s = self.spec
        if self.dist == "uniform":
            return s["low"] + (s["high"] - s["low"]) * u
        if self.dist == "loguniform":
            lo, hi = np.log(s["low"]), np.log(s["high"])
            return np.exp(lo + (hi - lo) * u)
        if self.dist == "constant":
            return np.full_like(u, float(s["value"]))
        if self.dist == "choice":
            values = np.asarray(s["values"], dtype=np.float64)
            return values[np.minimum((u * len(values)).astype(np.int64), len(values) - 1)]
        # Truncated (log)normal by inverse CDF between the CDFs of the bounds.
        if self.dist == "normal":
            mean, sd = s["mean"], s["sd"]
            lo, hi = s.get("low", -np.inf), s.get("high", np.inf)
        else:
            mean, sd = np.log(s["median"]), s["sigma"]
            lo = np.log(s["low"]) if s.get("low", 0) > 0 else -np.inf
            hi = np.log(s["high"]) if "high" in s else np.inf
        c_lo, c_hi = special.ndtr((lo - mean) / sd), special.ndtr((hi - mean) / sd)
        z = special.ndtri(np.clip(c_lo + (c_hi - c_lo) * u, 1e-300, 1 - 1e-16))
        x = np.clip(mean + sd * z, lo, hi)
        return np.exp(x) if self.dist == "lognormal" else x

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values."""
        return self.from_uniform(rng.random(n))


def parse_prior(key: str, spec: Mapping) -> Prior:
    """Build a :class:`Prior` from a config entry, naming ``key`` in any error."""
    return Prior(key, spec)


def _color_offsets(key: str, colors: Mapping, reference: str, bands) -> dict[str, list]:
    """For each band, the signed chain of colour keys leading from the reference band."""
    edges: dict[str, list] = {}
    for name in colors:
        parts = name.split("-")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"config key '{key}.{name}': a colour is named 'a-b' (e.g. 'g-r')")
        a, b = parts
        # mag_a = mag_b + (a-b);  mag_b = mag_a - (a-b)
        edges.setdefault(b, []).append((a, name, +1))
        edges.setdefault(a, []).append((b, name, -1))
    paths = {reference: []}
    todo = deque([reference])
    while todo:
        band = todo.popleft()
        for nxt, name, sign in edges.get(band, []):
            if nxt not in paths:
                paths[nxt] = paths[band] + [(name, sign)]
                todo.append(nxt)
    missing = [b for b in bands if b not in paths]
    if missing:
        raise ConfigError(
            f"config key '{key}': no colour chain connects band(s) {', '.join(missing)} to the "
            f"reference band {reference!r} (have: {', '.join(colors) or 'none'})"
        )
    return {b: paths[b] for b in bands}


def _population_table(spec: Mapping | None, bands, seed: int):
    """The :class:`~.lenspop.LensPopTable` of ``lenses.population``, or None for the priors."""
    spec = dict(spec or {})
    if spec.get("table") in (None, "priors"):
        return None
    from skyscan.cases.lenses.sim.lenspop import LensPopTable

    return LensPopTable(
        name=spec["table"],
        bands=list(bands),
        splits=spec.get("splits"),
        seed=int(seed),
        enrich_cell=float(spec.get("enrich_cell", 0.0)),
    )


class Population:
    """The configured population: kind fractions and priors, drawn block by block.

    Parameters
    ----------
    sim_config : mapping
        The validated ``lenses`` config section (``kinds``, ``reference_band``, ``priors``,
        ``neighbours``, ``stamp_size``).
    bands : list of str
        Band names, in channel order.
    """

    #: Names of the light components (:data:`.components.COMPONENTS`) with their
    #: ``<name>_mag`` and ``<name>_colors`` priors (the neighbour slots have none).
    COMPONENTS = component_names(neighbours=False)

    def __init__(self, sim_config: Mapping, bands, pixel_scale: float | None = None, seed: int = 0):
        self.bands = list(bands)
        self.table = _population_table(sim_config.get("population"), self.bands, seed)
        self.source_model = sim_config.get("source_model", "sersic")
        kinds = dict(sim_config["kinds"])
        total = sum(kinds.get(k, 0.0) for k in KINDS)
        if not total > 0:
            raise ConfigError("config key 'lenses.kinds': the fractions must not all be zero")
        self.kind_cdf = np.cumsum([kinds.get(k, 0.0) / total for k in KINDS])
        self.reference = sim_config["reference_band"]
        pri = sim_config["priors"]
        self.priors = {
            name: parse_prior(f"lenses.priors.{name}", spec)
            for name, spec in pri.items()
            if not name.endswith("_colors")
        }
        self.colors = {}
        for comp in self.COMPONENTS:
            key = f"lenses.priors.{comp}_colors"
            spec = pri[f"{comp}_colors"]
            chains = _color_offsets(key, spec, self.reference, self.bands)
            used = sorted({name for chain in chains.values() for name, _ in chain})
            self.colors[comp] = (
                chains,
                {c: parse_prior(f"{key}.{c}", spec[c]) for c in used},
            )
        self.relative = {
            c.name: c.colors_relative_to
            for c in LIGHT_COMPONENTS
            if c.colors_relative_to is not None and c.name in self.COMPONENTS
        }
        self._setup_neighbours(sim_config.get("neighbours") or {}, sim_config, pixel_scale)

    def _setup_neighbours(self, cfg: Mapping, sim_config: Mapping, pixel_scale) -> None:
        """The neighbour slots in use and the Poisson means of their counts per stamp."""
        density = {k: float(cfg.get(k, 0.0)) for k in ("field", "star")}
        self.min_distance = float(cfg.get("min_distance", 0.0))
        slots = neighbour_slots()
        # No slots (no columns, no draws) when a density is 0: the columns say what was drawn.
        # Names, not components: the population travels to worker processes by pickle.
        galaxies = [c.name for c in slots if c.convolved]
        self.neighbour_galaxies = galaxies if density["field"] else []
        self.neighbour_stars = [c.name for c in slots if not c.convolved] if density["star"] else []
        self.neighbour_mean = {"field": 0.0, "star": 0.0}
        self.half_side = 0.0
        if not any(density.values()):
            return
        if pixel_scale is None:
            raise ValueError("Population: neighbours (lenses.neighbours) need the pixel scale")
        self.half_side = sim_config["stamp_size"] * pixel_scale / 2
        if not self.min_distance < self.half_side:
            raise ConfigError(
                f"config key 'lenses.neighbours.min_distance': {self.min_distance:g} arcsec "
                f"must be below half the stamp side ({self.half_side:g} arcsec)"
            )
        # The densities hold where neighbours may fall: the stamp less the central disc.
        area = ((2 * self.half_side) ** 2 - np.pi * self.min_distance**2) / 3600.0
        for kind, slots in (("field", self.neighbour_galaxies), ("star", self.neighbour_stars)):
            mean = density[kind] * area
            self.neighbour_mean[kind] = mean
            lost = stats.poisson.sf(len(slots), mean)
            if slots and lost > 0.01:  # counts are capped at the slots
                log.warning(
                    "lenses.neighbours.%s: %.2f per stamp on average but %d slot(s): "
                    "%.1f%% of stamps have more than fit (a smaller stamp or density avoids it)",
                    kind,
                    mean,
                    len(slots),
                    100 * lost,
                )

    def _mags(self, rng, comp: str, n: int, host=None, reference=None) -> dict[str, np.ndarray]:
        """Magnitudes of ``comp`` per band: its reference-band prior plus its colours, plus
        the host's colours for a component whose colours are offsets from another's
        (``host``: the drawn columns; ``reference``: this draw's reference-band magnitudes
        by component, which need not be of a simulated band; ``comp``'s are added to it)."""
        ref = self.priors[f"{comp}_mag"].draw(rng, n)
        if reference is not None:
            reference[comp] = ref
        chains, priors = self.colors[comp]
        colors = {name: priors[name].draw(rng, n) for name in priors}
        relative = self.relative.get(comp)
        out = {}
        for band in self.bands:
            mag = ref.copy()
            for name, sign in chains[band]:
                mag = mag + sign * colors[name]
            if relative is not None:
                mag = mag + (host[f"{relative}_mag_{band}"] - reference[relative])
            out[f"{comp}_mag_{band}"] = mag
        return out

    def _neighbours(self, rng, n: int) -> dict[str, np.ndarray]:
        """Line-of-sight field galaxies and stars scattered over the stamp: every slot drawn
        for every row (fixed order), unused slots NaN."""
        cols: dict[str, np.ndarray] = {}
        for kind, slots in (("field", self.neighbour_galaxies), ("star", self.neighbour_stars)):
            count = rng.poisson(self.neighbour_mean[kind], n)
            draw = field.field_galaxies if kind == "field" else field.field_stars
            for k, name in enumerate(slots):
                x, y = field.scatter(rng, n, self.half_side, self.min_distance)
                for key, value in draw(rng, n, self.bands, x, y).items():
                    cols[f"{name}_{key}"] = np.where(k < count, value, np.nan)
        return cols

    def _clumps(self, rng, n: int, cols: Mapping) -> dict[str, np.ndarray]:
        """Gaussian star-forming clumps in the source's disc (``lenses.source_model:
        clumpy``): a ``source_clumpy`` share of the sources hold ``source_clumps`` of them,
        carrying ``source_clump_flux`` of the source's light between them (shares 0.5-1.5
        apart), each of Gaussian sigma ``source_clump_sigma``, placed uniformly over the
        disc's ellipse out to 1.5 half-light radii.  Every slot is drawn for every row."""
        p = self.priors
        clumpy = rng.random(n) < p["source_clumpy"].draw(rng, n)
        count = np.where(clumpy, np.rint(p["source_clumps"].draw(rng, n)), 0)
        fraction = np.where(clumpy, p["source_clump_flux"].draw(rng, n), 0.0)
        radius = np.asarray(cols["source_R_sersic"], dtype=float)
        host = sersic_total_flux(np.maximum(radius, 1e-4), cols["source_n_sersic"])
        phi, q = ellipticity_to_phi_q(cols["source_e1"], cols["source_e2"])
        slots = np.arange(1, SOURCE_CLUMPS + 1)
        share = rng.uniform(0.5, 1.5, (n, SOURCE_CLUMPS)) * (slots[None, :] <= count[:, None])
        total = share.sum(axis=1)
        flux = share / np.where(total > 0, total, 1.0)[:, None]
        flux *= (fraction / (1 - fraction) * host)[:, None]
        out = {"source_clump_fraction": fraction, "source_clumps": count.astype(float)}
        for j in range(SOURCE_CLUMPS):
            r = 1.5 * radius * np.sqrt(rng.random(n))
            angle = 2 * np.pi * rng.random(n)
            sigma = p["source_clump_sigma"].draw(rng, n)
            xe, ye = r * np.cos(angle), r * q * np.sin(angle)  # major axis along x
            used = flux[:, j] > 0
            out[f"source_clump{j + 1}_x"] = (
                cols["source_center_x"] + xe * np.cos(phi) - ye * np.sin(phi)
            )
            out[f"source_clump{j + 1}_y"] = (
                cols["source_center_y"] + xe * np.sin(phi) + ye * np.cos(phi)
            )
            out[f"source_clump{j + 1}_sigma"] = sigma
            out[f"source_clump{j + 1}_amp"] = np.where(
                used, flux[:, j] / (2 * np.pi * sigma**2), 0.0
            )
        return out

    def draw(
        self, rng: np.random.Generator, n: int, index: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Draw ``n`` systems: a dict of column name -> array (float64, ``kind`` as str).

        Every prior is drawn for every row in a fixed order, whatever the row's kind, and
        components a kind lacks are set to NaN afterwards; the draw is therefore a function of
        the generator state alone (and, with a population table, of the systems' global
        ``index``, which picks the split whose table rows they draw from; ``None`` draws from
        every row).
        """
        # Reference-band magnitudes of this draw's components, for colours relative to a
        # host (the reference band need not be simulated).
        reference: dict[str, np.ndarray] = {}
        p = self.priors
        kind_index = np.searchsorted(self.kind_cdf, rng.random(n), side="right")
        kind = np.asarray(KINDS, dtype=object)[np.minimum(kind_index, len(KINDS) - 1)]
        cols: dict[str, np.ndarray] = {"kind": kind, "label": is_lens(kind).astype(np.int8)}

        # Deflector: mass and light share centre and ellipticity (light traces mass).
        theta_E = p["theta_E"].draw(rng, n)
        q = p["lens_q"].draw(rng, n)
        phi = np.deg2rad(p["lens_phi"].draw(rng, n))
        e1, e2 = phi_q_to_ellipticity(phi, q)
        cx, cy = p["lens_center"].draw(rng, n), p["lens_center"].draw(rng, n)
        cols.update(
            theta_E=theta_E,
            e1=e1,
            e2=e2,
            center_x=cx,
            center_y=cy,
            gamma1=p["shear_gamma"].draw(rng, n),
            gamma2=p["shear_gamma"].draw(rng, n),
            lens_R_sersic=p["lens_R_sersic"].draw(rng, n),
            lens_n_sersic=p["lens_n_sersic"].draw(rng, n),
            lens_e1=e1.copy(),
            lens_e2=e2.copy(),
            lens_center_x=cx.copy(),
            lens_center_y=cy.copy(),
        )
        cols.update(self._mags(rng, "lens", n, reference=reference))

        # Source, offset from the lens centre by a fraction of theta_E.
        sq = p["source_q"].draw(rng, n)
        sphi = np.deg2rad(p["source_phi"].draw(rng, n))
        se1, se2 = phi_q_to_ellipticity(sphi, sq)
        off = p["source_offset"].draw(rng, n) * theta_E
        ang = 2 * np.pi * rng.random(n)
        cols.update(
            source_R_sersic=p["source_R_sersic"].draw(rng, n),
            source_n_sersic=p["source_n_sersic"].draw(rng, n),
            source_e1=se1,
            source_e2=se2,
            source_center_x=cx + off * np.cos(ang),
            source_center_y=cy + off * np.sin(ang),
        )
        cols.update(self._mags(rng, "source", n, reference=reference))

        # Companion galaxy (unlensed).
        cq = p["companion_q"].draw(rng, n)
        ce1, ce2 = phi_q_to_ellipticity(np.pi * rng.random(n), cq)
        dist = p["companion_distance"].draw(rng, n)
        ang = 2 * np.pi * rng.random(n)
        cols.update(
            companion_R_sersic=p["companion_R_sersic"].draw(rng, n),
            companion_n_sersic=p["companion_n_sersic"].draw(rng, n),
            companion_e1=ce1,
            companion_e2=ce2,
            companion_center_x=cx + dist * np.cos(ang),
            companion_center_y=cy + dist * np.sin(ang),
        )
        cols.update(self._mags(rng, "companion", n, reference=reference))

        # Collisional/resonance ring about a centre offset from the central galaxy's: knots of
        # varied brightness, partial for some, colours offset from the galaxy's (_mags).
        rq = p["ring_q"].draw(rng, n)
        re1, re2 = phi_q_to_ellipticity(np.pi * rng.random(n), rq)
        radius = p["ring_radius"].draw(rng, n)
        off = p["ring_offset"].draw(rng, n) * radius
        ang = 2 * np.pi * rng.random(n)
        partial = rng.random(n) < p["ring_partial"].draw(rng, n)
        arc = np.where(partial, p["ring_arc"].draw(rng, n), 360.0)
        knots = p["ring_knots"].draw(rng, n)
        contrast = p["ring_knot_contrast"].draw(rng, n)
        cols.update(
            ring_radius=radius,
            ring_width=p["ring_width"].draw(rng, n),
            ring_e1=re1,
            ring_e2=re2,
            ring_center_x=cx + off * np.cos(ang),
            ring_center_y=cy + off * np.sin(ang),
            ring_arc=arc,
            ring_arc_angle=2 * np.pi * rng.random(n),
            ring_knot_width=p["ring_knot_width"].draw(rng, n),
        )
        for j in range(1, RING_KNOTS + 1):
            angle, spread = 2 * np.pi * rng.random(n), rng.uniform(0.5, 1.5, n)
            cols[f"ring_knot{j}_angle"] = angle
            cols[f"ring_knot{j}_amp"] = np.where(j <= knots, contrast * spread, 0.0)
        cols.update(self._mags(rng, "ring", n, host=cols, reference=reference))

        # Spiral disk around the central galaxy (its bulge).
        dq = p["spiral_q"].draw(rng, n)
        de1, de2 = phi_q_to_ellipticity(np.pi * rng.random(n), dq)
        cols.update(
            spiral_R_sersic=p["spiral_R_sersic"].draw(rng, n),
            spiral_e1=de1,
            spiral_e2=de2,
            spiral_arms=p["spiral_arms"].draw(rng, n),
            spiral_pitch=p["spiral_pitch"].draw(rng, n),
            spiral_amplitude=p["spiral_amplitude"].draw(rng, n),
            spiral_phase=2 * np.pi * rng.random(n),
        )
        cols.update(self._mags(rng, "spiral", n, reference=reference))

        # Star.
        dist = p["star_distance"].draw(rng, n)
        ang = 2 * np.pi * rng.random(n)
        cols.update(star_center_x=cx + dist * np.cos(ang), star_center_y=cy + dist * np.sin(ang))
        cols.update(self._mags(rng, "star", n, reference=reference))

        # Line-of-sight neighbours, drawn last so that the columns above do not move; scattered
        # about the stamp centre (the target's position), whatever the kind.
        if self.neighbour_galaxies or self.neighbour_stars:
            cols.update(self._neighbours(rng, n))

        # A forecast table replaces the deflector and the source by whole rows of it, drawn
        # after everything else so the prior-drawn columns do not move.
        if self.table is not None:
            self.table.apply(rng, cols, index)

        # Star-forming clumps of the lensed source, last of all (a smooth-source config
        # draws none, so its rows do not move).
        if self.source_model == "clumpy":
            cols.update(self._clumps(rng, n, cols))

        # Blank out what each kind does not have.
        for comp in LIGHT_COMPONENTS:
            mask = carriers(comp, kind)
            if mask.all():
                continue
            for name in cols:
                if name.startswith(comp.name + "_"):
                    cols[name] = np.where(mask, cols[name], np.nan)
        return cols
