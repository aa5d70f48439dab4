"""Seed-layer kernels: the PyTorch reference (every device) and the fused Triton kernel (CUDA)."""
