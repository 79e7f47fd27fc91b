"""Tong et al. 2023 ([SF]²M), Table 2, reproduced with flowlab; see README.md."""
