"""HyperFields, part 1: the NeRF core and teachers (thesis Ch. 4, App. B). Pure PyTorch, no Ray.

Modules: ``cameras`` (poses, rays, near/far from a bounding sphere).
"""
