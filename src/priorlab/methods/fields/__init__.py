"""HyperFields, part 1: the NeRF core and teachers (thesis Ch. 4, App. B). Pure PyTorch, no Ray.

Modules:
- ``cameras``: poses, rays, near/far from a bounding sphere (the one camera convention).
- ``config``: ``FieldConfig``, the hash grid, encodings, MLP and renderer settings (App. B.1).
- ``hashgrid``: Instant-NGP multiresolution hash encoding; a pure-PyTorch backend and a
  tiny-cuda-nn one used when it is importable (``build_hash_grid``).
- ``encoding``: the sinusoidal positional encoding γ.
- ``mlp``: the 6 x 64 NeRF MLP with skips every two layers; ``mlp_forward`` runs weights a
  hypernetwork supplies, ``weight_shapes`` names them (Sec. 4.3.1, Eq. 4.2-4.5).
- ``field``: ``NeRFField``, grid + γ -> MLP -> density, colour (and optional features).
- ``renderer``: stratified sampling inside the bounding sphere and alpha compositing.
- ``views``: DreamFusion-style random cameras and view-dependent prompts.
- ``teacher``: reconstruction teachers fitted to exact renders of a procedural scene, and the
  SDS loop (``fit_sds``).
- ``sds``: score distillation (Eq. 4.1) through a local Stable Diffusion (diffusers).
- ``store``: ``TeacherStore``, finished teachers on any pyarrow filesystem (safetensors + meta).
- ``turntable``: ``render_teacher``, orbit views, a contact sheet beside the ground truth, PSNR.
"""
