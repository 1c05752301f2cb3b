"""The oracles: independent float64 NumPy/SciPy references and ball arithmetic; they import neither JAX nor iclkd_jax."""
