"""PSF kernels against lenstronomy, and the convolution against scipy."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import lsst_bands
from scipy import ndimage, signal

from skyscan.cases.lenses.sim.psf import PSFConvolver, moffat_alpha, psf_kernel


def test_gaussian_kernel_matches_lenstronomy():
    """Same size and values as lenstronomy's PSF(psf_type='GAUSSIAN', truncation=5): atol 1e-15."""
    from lenstronomy.Data.psf import PSF

    for band in lsst_bands(("u", "g", "r", "i", "z", "y")):
        ref = PSF(
            psf_type="GAUSSIAN", fwhm=band.seeing, truncation=5, pixel_size=band.pixel_scale
        ).kernel_point_source
        ours = psf_kernel(band)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-15)


def test_moffat_kernel_matches_lenstronomy():
    """Moffat sampled at pixel centres vs lenstronomy's kernel_moffat_grid (rtol 1e-12), and
    its half maximum lies at FWHM/2."""
    from lenstronomy.Util import kernel_util, util

    band = dataclasses.replace(lsst_bands(("g",))[0], psf_type="moffat", moffat_beta=3.5)
    ours = psf_kernel(band)
    n = ours.shape[0]
    x, y = util.make_grid(n, band.pixel_scale)
    ref = util.array2image(kernel_util.kernel_moffat_grid(x, y, band.seeing, 3.5))
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    alpha = moffat_alpha(band.seeing, 3.5)
    assert (1 + (band.seeing / 2) ** 2 / alpha**2) ** -3.5 == pytest.approx(0.5, rel=1e-12)
    # the cut keeps at least 99.9% of the profile's flux
    enclosed = 1 - (1 + ((n // 2) * band.pixel_scale) ** 2 / alpha**2) ** (1 - 3.5)
    assert enclosed >= 0.999


@pytest.mark.parametrize("psf_type", ["gaussian", "moffat"])
def test_convolver_matches_scipy_nearest(psf_type):
    """The matrix-product convolution equals scipy.ndimage.convolve(mode='nearest'): atol 1e-12
    relative to the image peak (Gaussian rank 1; Moffat several separable terms)."""
    bands = [dataclasses.replace(b, psf_type=psf_type) for b in lsst_bands()]
    kernels = [psf_kernel(b) for b in bands]
    rng = np.random.default_rng(0)
    images = rng.exponential(size=(4, 3, 45, 45))
    conv = PSFConvolver(kernels, (45, 45), dtype=torch.float64)
    ours = conv(torch.tensor(images)).numpy()
    for k, kern in enumerate(kernels):
        for i in range(4):
            ref = ndimage.convolve(images[i, k], kern, mode="nearest")
            np.testing.assert_allclose(ours[i, k], ref, atol=1e-12 * images.max())
    if psf_type == "gaussian":
        assert conv.rank == 1


def test_convolver_zero_edges_matches_fftconvolve():
    kernels = [psf_kernel(b) for b in lsst_bands()]
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 3, 33, 33))
    ours = PSFConvolver(kernels, (33, 33), dtype=torch.float64, edge="zeros")(
        torch.tensor(images)
    ).numpy()
    for k in range(3):
        ref = signal.fftconvolve(images[1, k], kernels[k], mode="same")
        np.testing.assert_allclose(ours[1, k], ref, atol=1e-12)


def test_convolver_keeps_flux_of_a_centred_source():
    kernels = [psf_kernel(b) for b in lsst_bands()]
    img = np.zeros((1, 3, 45, 45))
    img[0, :, 22, 22] = 1.0
    out = PSFConvolver(kernels, (45, 45), dtype=torch.float64)(torch.tensor(img)).numpy()
    np.testing.assert_allclose(out.sum(axis=(2, 3)), 1.0, rtol=1e-12)
