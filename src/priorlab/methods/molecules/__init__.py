"""Molecules (thesis Ch. 5): diffusion features of 3D conformers for property prediction. Pure
PyTorch + RDKit, no Ray.

The MiDi-style joint 3D diffusion model (Sec. 5.3.1-5.3.3):
- ``graphs``: the atom vocabulary, conformer records -> PyG graphs -> dense padded batches,
  empirical marginals (Sec. 5.3.2, the input representation).
- ``noise``: MiDi's adaptive cosine schedules, zero-CoM Gaussian noise and marginal categorical
  transitions (Sec. 5.3.2, Eq. 5.1-5.4).
- ``denoiser``: an E(3)-equivariant EGNN with bond features; its per-layer node features are
  the invariant features the thesis pools (Sec. 5.3.3).
- ``diffusion``: ``MolecularDiffusion``: the training loss, ancestral sampling, pooled features
  at a fixed noise level and a json-able spec for checkpoints.
- ``quality``: RDKit scoring of generated molecules (MiDi's validity, connectivity, uniqueness,
  novelty, atom and molecule stability).

The pretraining and feature-study configs live in ``config``; the evaluation protocol of
Table 5.1 (Sec. 5.3.4, 5.4) and the other feature sets in the family's remaining modules.
"""
