#!/usr/bin/env python3
"""fit_normcdf.py: the polynomial behind mb_normcdff in kernels/cpu/vecmath.h.

erfc(a) = t * exp(-a^2 + P(t)) with t = 1 / (1 + a/2) holds for a smooth P
(P(t) -> -log(2 sqrt(pi)) as a -> inf, P(1) = 0). GELU needs erfc(a) for
a = |x| / sqrt(2) in [0, 10] (below that, the float result is 0), i.e.
t in [1/6, 1]. P is interpolated at Chebyshev nodes of that interval as a
power series in s = 2.4 t - 1.4 (s in [-1, 1], where Horner's rule in float
is well conditioned), in 40-digit arithmetic. Prints the float coefficients
and the worst absolute error of P evaluated in float (the relative error
it adds to erfc).

Usage: python tools/fit_normcdf.py [--degree N]   (needs numpy and mpmath)
"""
import argparse

import mpmath as mp
import numpy as np

LO, HI = 1.0 / 6.0, 1.0


def target(t):
    t = mp.mpf(t)
    a = 2 / t - 2
    return mp.log(mp.erfc(a) / t) + a * a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--degree", type=int, default=9)
    args = ap.parse_args()
    mp.mp.dps = 40
    n = args.degree + 1
    nodes = np.cos((2 * np.arange(n) + 1) * np.pi / (2 * n))
    ts = (HI - LO) / 2 * nodes + (HI + LO) / 2
    coef = np.polynomial.polynomial.polyfit(nodes, [float(target(t)) for t in ts], args.degree)
    c32 = coef.astype(np.float32)
    grid = np.linspace(LO, HI, 8001)
    exact = np.array([float(target(t)) for t in grid])
    s = (np.float32(2.4) * grid.astype(np.float32) - np.float32(1.4)).astype(np.float32)
    p = np.zeros_like(s)
    for c in c32[::-1]:
        p = (p * s + c).astype(np.float32)
    print("coefficients of s^0 .. s^%d:" % args.degree)
    for c in c32:
        print("  %.9ef" % c)
    print("worst |P_float - P| on t in [1/6, 1]: %.3g" % np.max(np.abs(p.astype(np.float64) - exact)))


if __name__ == "__main__":
    main()
