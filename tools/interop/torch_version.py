#!/usr/bin/env python3
"""Prints the interop venv's torch version as one line `torch_version=X.Y.Z...` (torchrun's TCPStore
protocol follows torch's major version: DistributedCLITests compares it with our LibTorch's)."""
import torch

print(f"torch_version={torch.__version__}")
