"""Hypernetwork-generated ResNets and WRNs (thesis Ch. 3, Sec. 3.3). Pure PyTorch, no Ray.

Modules: ``config`` (HyperConfig), ``hypernet`` (the conv hypernetwork, sharing, output l2,
param groups, Fig. 3.3 diagnostics), ``resnets`` (HyperResNet, HyperWRN, build_model),
``export`` (export_plain, count_params), ``loop`` (supervised training), ``meta`` (MAML
meta-training, Sec. 3.3.1-3.4.3), ``movement`` (the Fig. 3.5 diagnostic), ``rsc`` (Sec. 3.5).
Tests: ``python -m pytest tests/methods/hyper -q``.
"""
