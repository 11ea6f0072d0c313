"""The parameter roles the optimizers tell apart: per-role groups, decay masks, Scion's LMOs.

A role is a string per parameter (``models.param_roles`` gives them); the optimizers only need
the names, listed here once.
"""

__all__ = ["ROLES"]

ROLES = ("embedding", "hidden", "head", "norm", "bias", "conv")
