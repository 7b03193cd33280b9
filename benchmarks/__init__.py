"""Benchmarks of stream-rca: speed and accuracy, side by side with DoWhy-GCM, in one run.

Run everything and write ``docs/benchmarks.md``::

    python -m benchmarks.run

DoWhy-GCM is optional (``pip install -e '.[bench]'``, best in a separate virtual environment);
without it the DoWhy columns say so and everything else still runs.
"""
