"""Glue between the datareduce core and a torchvision-reference-style classification loop.

``trainers/classify.py`` reads top to bottom like torchvision's ``references/classification/train.py``; the
pieces it needs beyond the reference live in this package, one concept a module (import each name from its
module; this file exports nothing):

* :mod:`.launch` — the device, and the process group from the torchrun environment (gloo on CPU, NCCL on CUDA).
* :mod:`.samplers` — the training sampler (seeded per epoch, sharded over ranks, follows in-place subset
  changes, takes a visiting plan) and the evaluation shards.
* :mod:`.training_set` — offline subsets applied *in place* to the training dataset (``samples``/``targets``/
  ``imgs`` of an ImageFolder), never through a ``Subset``; the full set's labels, size and images; the training
  set as the reduction session (:mod:`datareduce.session`) drives it.
* :mod:`.offline_subset` — the IDS / SSP / RPC / RPD manifest (checked or built).
* :mod:`.loss`, :mod:`.scoring` — per-sample cross-entropy; the scoring forward under ``no_grad`` that changes
  no model state.
* :mod:`.reducer` and ``*_reducer`` — one object per method that turns the epoch's loader into training
  batches: full data, online selection (ADONIS, SB, Stale-SB through :class:`datareduce.online.OnlineSelection`),
  Composer-SB, InfoBatch, RS2. All keep DDP ranks in lockstep (the same number of optimizer steps per epoch).
  :mod:`.reducer_choice` picks a run's reducer.
* :mod:`.training`, :mod:`.evaluation` — ``train_one_epoch`` (each step booked with the reduction session) /
  ``evaluate``.
* :mod:`.checkpoint`, :mod:`.seeding` — checkpoints written atomically and loaded safely; per-epoch seeding.

Console output (tqdm bars, prints) is allowed here; the core stays silent.
"""
