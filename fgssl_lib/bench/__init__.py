"""Benchmarks: ``python -m fgssl_lib.bench <area>``; each area is a module ``fgssl_lib.bench.<area>`` with ``main(argv)``.

Benchmarks print ratios measured side by side in one run; they are scripts, not timed tests.
"""
