"""neurodiff: augmenting scarce neuroimaging data with a diffusion model, reproducibly.

The package is a house with floors; a module imports only from its own floor or below.

* **Lower floor** -- shared pieces: :mod:`~neurodiff.config` (parameters), :mod:`~neurodiff.errors`,
  :mod:`~neurodiff.io` (atomic writes), :mod:`~neurodiff.device`, :mod:`~neurodiff.intensity`
  (the [-1, 1] <-> [0, 1] conversions), :mod:`~neurodiff.templates` (MNI152),
  :mod:`~neurodiff.cohort` (reading input scans), :mod:`~neurodiff.registry` (every stage declared
  once), :mod:`~neurodiff.runs` (run folders keyed by parameters), :mod:`~neurodiff.artifacts`
  (every read and write of stage outputs), :mod:`~neurodiff.checkpoints`.
* **Middle floor** -- the machinery: :mod:`~neurodiff.model` (UNet, noise schedule, loss),
  :mod:`~neurodiff.weights` (the generator as one safetensors file),
  :mod:`~neurodiff.sampling` (the sampler engine), :mod:`~neurodiff.features` (feature
  extractors), :mod:`~neurodiff.measures` (metric families, interval rules, real-vs-real redraws,
  the calibration ladder) and the figure kit :mod:`~neurodiff.viz`.
* **Stages** -- one per chapter, never importing each other: :mod:`~neurodiff.demo_data`
  (simulated cohort), :mod:`~neurodiff.explore`, :mod:`~neurodiff.preprocess`,
  :mod:`~neurodiff.train`, :mod:`~neurodiff.sample`, :mod:`~neurodiff.metrics`,
  :mod:`~neurodiff.augment`. Each has ``run(params)``.
* **Top** -- :mod:`~neurodiff.runner` (notebooks through papermill, the book),
  :mod:`~neurodiff.notebook`, :mod:`~neurodiff.record`, :mod:`~neurodiff.release` (the
  generator's file and model card for the book and the release), :mod:`~neurodiff.links` (the
  built book's internal links) and :mod:`~neurodiff.cli`.

CONTRIBUTING.md draws the data flow between the stages.
"""

__version__ = "0.1.0"
