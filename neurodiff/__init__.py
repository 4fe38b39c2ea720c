"""neurodiff: augmenting scarce neuroimaging data with a diffusion model, reproducibly.

Pipeline stages, one module each: :mod:`neurodiff.demo_data` (simulated cohort),
:mod:`neurodiff.data` (cohort loading), :mod:`neurodiff.preprocess`, :mod:`neurodiff.model`,
:mod:`neurodiff.train`, :mod:`neurodiff.sample`, :mod:`neurodiff.metrics`; parameters in
:mod:`neurodiff.config`; notebooks run by :mod:`neurodiff.runner`.
"""

__version__ = "0.1.0"
