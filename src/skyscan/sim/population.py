"""Population priors and the per-block parameter draw.

Every system is a function of ``(seed, global index)``: systems are drawn in fixed blocks of
:data:`BLOCK_SIZE` rows, block ``k`` from ``SeedSequence(seed, spawn_key=(k,))``.  Shards of any
size are slices of this one sequence, so the rows are the same whatever the shard size or the
number of workers.

Kinds (column ``kind``; ``label`` is 1 for the kinds that carry a lensed light component, i.e.
``lens`` only; which kind carries which component is the table
:data:`skyscan.sim.components.COMPONENTS`):

``lens``
    SIE + shear deflector (Sersic light) and a Sersic source behind it.
``no_source``
    The same deflector population with nothing behind it.
``companion``
    A deflector with an unlensed Sersic galaxy 1-4" away.
``ring``
    A deflector-like galaxy with a Gaussian ring of blue light (collisional/resonance ring),
    the classic Einstein-ring impostor.
``spiral``
    A bulge plus an exponential disk with logarithmic spiral arms.
``star_blend``
    A deflector with a bright star close by.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np
from scipy import special

from skyscan.sim.components import COMPONENTS as LIGHT_COMPONENTS
from skyscan.sim.components import KINDS, carriers, component_names, is_lens
from skyscan.sim.profiles import phi_q_to_ellipticity
from skyscan.sim.survey import ConfigError

__all__ = ["KINDS", "BLOCK_SIZE", "Prior", "parse_prior", "Population", "block_rng"]

#: Rows per random block; the unit of randomness (not of work).
BLOCK_SIZE = 250

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
        ``{"dist": ..., parameters}``; see ``schemas/config.schema.yaml``.
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


def block_rng(seed: int, block: int) -> tuple[np.random.Generator, int]:
    """Independent random streams of one block: a numpy generator for the parameters and a
    64-bit seed for the noise (drawn by torch's generator, 3x faster than numpy's normals)."""
    params_ss, noise_ss = np.random.SeedSequence(seed, spawn_key=(block,)).spawn(2)
    noise_seed = int(noise_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(params_ss), noise_seed


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


class Population:
    """The configured population: kind fractions and priors, drawn block by block.

    Parameters
    ----------
    sim_config : mapping
        The validated ``simulate`` section.
    bands : list of str
        Band names, in channel order.
    """

    #: Names of the light components (:data:`skyscan.sim.components.COMPONENTS`), each with its
    #: ``<name>_mag`` and ``<name>_colors`` priors.
    COMPONENTS = component_names()

    def __init__(self, sim_config: Mapping, bands):
        self.bands = list(bands)
        kinds = dict(sim_config["kinds"])
        total = sum(kinds.get(k, 0.0) for k in KINDS)
        if not total > 0:
            raise ConfigError("config key 'simulate.kinds': the fractions must not all be zero")
        self.kind_cdf = np.cumsum([kinds.get(k, 0.0) / total for k in KINDS])
        self.reference = sim_config["reference_band"]
        pri = sim_config["priors"]
        self.priors = {
            name: parse_prior(f"simulate.priors.{name}", spec)
            for name, spec in pri.items()
            if not name.endswith("_colors")
        }
        self.colors = {}
        for comp in self.COMPONENTS:
            key = f"simulate.priors.{comp}_colors"
            spec = pri[f"{comp}_colors"]
            chains = _color_offsets(key, spec, self.reference, self.bands)
            used = sorted({name for chain in chains.values() for name, _ in chain})
            self.colors[comp] = (
                chains,
                {c: parse_prior(f"{key}.{c}", spec[c]) for c in used},
            )

    def _mags(self, rng, comp: str, n: int) -> dict[str, np.ndarray]:
        ref = self.priors[f"{comp}_mag"].draw(rng, n)
        chains, priors = self.colors[comp]
        colors = {name: priors[name].draw(rng, n) for name in priors}
        out = {}
        for band in self.bands:
            mag = ref.copy()
            for name, sign in chains[band]:
                mag = mag + sign * colors[name]
            out[f"{comp}_mag_{band}"] = mag
        return out

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Draw ``n`` systems: a dict of column name -> array (float64, ``kind`` as str).

        Every prior is drawn for every row in a fixed order, whatever the row's kind, and
        components a kind lacks are set to NaN afterwards; the draw is therefore a function of
        the generator state alone.
        """
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
        cols.update(self._mags(rng, "lens", n))

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
        cols.update(self._mags(rng, "source", n))

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
        cols.update(self._mags(rng, "companion", n))

        # Ring around the central galaxy.
        rq = p["ring_q"].draw(rng, n)
        re1, re2 = phi_q_to_ellipticity(np.pi * rng.random(n), rq)
        cols.update(
            ring_radius=p["ring_radius"].draw(rng, n),
            ring_width=p["ring_width"].draw(rng, n),
            ring_e1=re1,
            ring_e2=re2,
        )
        cols.update(self._mags(rng, "ring", n))

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
        cols.update(self._mags(rng, "spiral", n))

        # Star.
        dist = p["star_distance"].draw(rng, n)
        ang = 2 * np.pi * rng.random(n)
        cols.update(star_center_x=cx + dist * np.cos(ang), star_center_y=cy + dist * np.sin(ang))
        cols.update(self._mags(rng, "star", n))

        # Blank out what each kind does not have.
        for comp in LIGHT_COMPONENTS:
            mask = carriers(comp, kind)
            if mask.all():
                continue
            for name in cols:
                if name.startswith(comp.name + "_"):
                    cols[name] = np.where(mask, cols[name], np.nan)
        return cols
