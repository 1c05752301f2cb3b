"""The catalogue of single-point source mutations of ``iclkd_jax/`` for ``iclkd bench mutation``.

Each :class:`Mutant` names one file of the library, an exact source snippet that occurs there exactly
once, and its replacement: one planted bug of the kinds a port or an extension of the library
introduces (a constant off by 2, a dropped term, a sign flip, swapped arguments, a wrong normalisation,
an off-by-one, a wrong axis). ``tests/benchmarks/test_mutation.py`` asserts that every entry still
applies exactly once to the current source, so a refactor that moves a snippet is noticed at once and
the entry is rewritten rather than silently skipped.

The catalogue was written from the library source, statement by statement, before looking at what the
checks catch: it covers every module that computes a quantity of docs/statements.md, including code paths
that no check called when it was written (blocked and unbiased MMD, the permutation test, the exact
Rademacher value, ``to_matrix``, ``max_quadratic_on_ball``, the matmul branch of the distances,
``Kernel.log_gram`` of the translation-invariant kernels). ``models.py`` (the trained transformers of
``experiments/``), ``llama.py`` (the SmolLM2 forward, judged by ``verify --real-model smollm2``, not by the
quick profile), ``sharding.py`` (device placement), ``_compile.py`` and ``_validation.py`` (argument checks)
compute no quantity of a statement of the quick profile and are left out.

``equivalent`` holds the reason when a mutant cannot change any verdict (it changes results only at
round-off level, below every tolerance); those are run and reported but kept out of the kill rate.
``quick`` marks the representative subset run by ``--quick`` (at least one per module and per kind).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

KINDS = ("constant", "dropped-term", "sign", "swapped-arguments", "normalisation", "off-by-one", "axis")


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``snippet`` (occurring exactly once) by ``replacement`` in ``iclkd_jax/<file>``."""

    id: str
    file: str
    snippet: str
    replacement: str
    kind: str
    description: str
    quick: bool = False
    equivalent: str | None = None

    def apply(self, source: str) -> str:
        """The mutated source; ValueError unless ``snippet`` occurs exactly once in ``source``."""
        count = source.count(self.snippet)
        if count != 1:
            raise ValueError(f"mutant {self.id}: its snippet occurs {count} times in iclkd_jax/{self.file} "
                             f"(must be exactly once): {self.snippet!r}")
        return source.replace(self.snippet, self.replacement, 1)

    def apply_to_tree(self, root: Path) -> None:
        """Mutates ``root/iclkd_jax/<file>`` in place (``root`` is a temporary copy, never the working tree)."""
        path = Path(root) / "iclkd_jax" / self.file
        path.write_text(self.apply(path.read_text()))


M = Mutant
CATALOGUE: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ attention.py (Thm 3.1, lemma)
    M("attention.softmax-axis", "attention.py",
      "return jax.nn.softmax(logits, axis=-1) @ values",
      "return jax.nn.softmax(logits, axis=0) @ values",
      "axis", "softmax_attention normalises over the queries instead of the keys", quick=True),
    M("attention.query-uses-wk", "attention.py",
      "    q = queries @ weights.wq.T\n    logits = q @ keys.T",
      "    q = queries @ weights.wk.T\n    logits = q @ keys.T",
      "swapped-arguments", "softmax_attention projects the queries with W^K instead of W^Q"),
    M("attention.partition-drops-context", "attention.py",
      "logits = jnp.concatenate([demo_logits, context_logits], axis=-1)",
      "logits = demo_logits",
      "dropped-term", "D' sums over the demonstrations only (the query context's logits dropped)", quick=True),
    M("attention.eta-without-half", "attention.py",
      "log_half = jnp.log(jnp.asarray(0.5, dtype))",
      "log_half = jnp.log(jnp.asarray(1.0, dtype))",
      "constant", "eta = N / D' instead of N / (2 D') (and eta_Q likewise)"),
    M("attention.eta-context-uses-n", "attention.py",
      "log_eta_context = jnp.log(jnp.asarray(n_context, dtype))",
      "log_eta_context = jnp.log(jnp.asarray(n_demos, dtype))",
      "swapped-arguments", "eta_Q = N / (2D') instead of M / (2D')"),
    M("attention.w0-own-partition", "attention.py",
      "demo_weights = jnp.exp(demo_logits - log_partition[:, None])",
      "demo_weights = jnp.exp(demo_logits - jax.nn.logsumexp(demo_logits, axis=-1)[:, None])",
      "normalisation", "W_0 phi(q) normalised by the demonstrations' partition function instead of D'"),
    M("attention.entropy-sign", "attention.py",
      "return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)",
      "return jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)",
      "sign", "attention entropy with the wrong sign"),
    # ------------------------------------------------------------------ kernels.py (Thm 4.1, conj 4.1')
    M("kernels.rbf-factor-2", "kernels.py",
      "return jnp.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))",
      "return jnp.exp(-squared_distances(x, y) / bandwidth**2)",
      "constant", "RBF Gram matrix exp(-|x-y|^2 / s^2) instead of exp(-|x-y|^2 / (2 s^2))", quick=True),
    M("kernels.rbf-log-gram-bandwidth", "kernels.py",
      "log_abs = -squared_distances(x, y) / (2.0 * bandwidth**2)",
      "log_abs = -squared_distances(x, y) / (2.0 * bandwidth)",
      "constant", "Kernel.log_gram of the RBF kernel divides by 2 s instead of 2 s^2"),
    M("kernels.laplace-no-sqrt", "kernels.py",
      "return jnp.exp(-jnp.sqrt(squared_distances(x, y, direct_max=_LAPLACE_DIRECT_MAX)) / bandwidth)",
      "return jnp.exp(-squared_distances(x, y, direct_max=_LAPLACE_DIRECT_MAX) / bandwidth)",
      "dropped-term", "Laplace kernel on the squared distance (the sqrt dropped)"),
    M("kernels.product-sign-dropped", "kernels.py",
      "return jnp.sign(linear), jnp.log(jnp.abs(linear)) + (x @ wk.T) @ (y @ wk.T).T",
      "return jnp.ones_like(linear), jnp.log(jnp.abs(linear)) + (x @ wk.T) @ (y @ wk.T).T",
      "sign", "Thm 4.1's product kernel loses the sign of x.x' (|x.x'| exp(...))", quick=True),
    M("kernels.product-half-temperature", "kernels.py",
      "jnp.log(jnp.abs(linear)) + (x @ wk.T) @ (y @ wk.T).T",
      "jnp.log(jnp.abs(linear)) + 0.5 * (x @ wk.T) @ (y @ wk.T).T",
      "constant", "product kernel (x.x') exp(k.k'/2) instead of (x.x') exp(k.k')"),
    M("kernels.distances-matmul-cross", "kernels.py",
      "return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * cross, 0.0)",
      "return jnp.maximum(x_sq[:, None] + y_sq[None, :] - cross, 0.0)",
      "constant", "matmul branch of squared_distances: |x|^2 + |y|^2 - x.y (factor 2 dropped)", quick=True),
    M("kernels.distances-direct-sign", "kernels.py",
      "diff = x[:, None, :] - y[None, :, :]",
      "diff = x[:, None, :] + y[None, :, :]",
      "sign", "direct branch of squared_distances uses |x + y|^2"),
    M("kernels.median-squared", "kernels.py",
      "dists = np.sqrt(np.sum(diffs * diffs, axis=-1))",
      "dists = np.sum(diffs * diffs, axis=-1)",
      "dropped-term", "median heuristic on squared distances (sqrt dropped)"),
    M("kernels.median-diagonal", "kernels.py",
      "upper = dists[np.triu_indices(pooled.shape[0], k=1)]",
      "upper = dists[np.triu_indices(pooled.shape[0], k=0)]",
      "off-by-one", "median heuristic includes the zero diagonal (k=0 instead of k=1)"),
    # ------------------------------------------------------------------ mmd.py (Thm 4.1)
    M("mmd.cross-factor-2", "mmd.py",
      "return (1.0 / n**2, 1.0 / m**2, -2.0 / (n * m))",
      "return (1.0 / n**2, 1.0 / m**2, -1.0 / (n * m))",
      "constant", "biased MMD^2 cross term -1/(nm) instead of -2/(nm)", quick=True),
    M("mmd.unbiased-normalisation", "mmd.py",
      "return (1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -2.0 / (n * m))",
      "return (1.0 / (n * n), 1.0 / (m * (m - 1)), -2.0 / (n * m))",
      "off-by-one", "unbiased MMD^2 divides the x-x sum by n^2 instead of n(n-1)", quick=True),
    M("mmd.dense-keeps-diagonal", "mmd.py",
      "keep = ~jnp.eye(ra[0].shape[0], dtype=bool) if exclude_diagonal else None",
      "keep = None",
      "dropped-term", "dense unbiased MMD^2 keeps the diagonal k(x_i, x_i)"),
    M("mmd.factor-dropped", "mmd.py",
      "            terms = values * terms",
      "            terms = terms",
      "dropped-term", "the product kernel's sum drops its linear factor x.x' (keeps only exp(logit - shift))"),
    M("mmd.combine-drops-shift", "mmd.py",
      "return _times_exp(total, top)",
      "return total",
      "dropped-term", "MMD^2 of exponential kernels loses the factored-out exp(largest log-entry)"),
    M("mmd.log-drops-shift", "mmd.py",
      "return jnp.sign(total), (log_abs if top is None else log_abs + top)",
      "return jnp.sign(total), log_abs",
      "dropped-term", "log_mmd2 loses the factored-out largest log-entry (log|MMD^2| off by the shift)"),
    M("mmd.blocked-symmetric-weight", "mmd.py",
      "return i, (i + s) % blocks_a, jnp.where(s == 0, 1.0, 2.0)",
      "return i, (i + s) % blocks_a, jnp.where(s == 0, 1.0, 1.0)",
      "constant", "blocked MMD^2 counts each off-diagonal tile pair once instead of twice", quick=True),
    M("mmd.blocked-padding-mask", "mmd.py",
      "keep = (row_ids[:, None] >= i * tile_a) & (col_ids[None, :] >= j * tile_b)",
      "keep = (row_ids[:, None] >= i * tile_a - 1) & (col_ids[None, :] >= j * tile_b)",
      "off-by-one", "blocked MMD^2 counts one row twice where the last tile overlaps its neighbour (>= start - 1)"),
    M("mmd.blocked-no-compensation", "mmd.py",
      "comp = (new_total - total) - term",
      "comp = jnp.zeros((), dtype)",
      "dropped-term", "blocked MMD^2 without Kahan compensation",
      equivalent="Kahan compensation only removes round-off of the running sum: with it dropped the blocked "
                 "MMD^2 differs by O(tiles * eps) relative, below every tolerance of iclkd verify's checks"),
    M("mmd.features-biased-normalisation", "mmd.py",
      "diff = sum_x / n - sum_y / m",
      "diff = sum_x / n - sum_y / n",
      "swapped-arguments", "mmd2_from_features divides the y mean by n instead of m"),
    M("mmd.features-unbiased-diagonal", "mmd.py",
      "within_x = (jnp.sum(sum_x * sum_x) - jnp.sum(fx * fx)) / (n * (n - 1))",
      "within_x = jnp.sum(sum_x * sum_x) / (n * (n - 1))",
      "dropped-term", "unbiased mmd2_from_features keeps the diagonal of the x-x sum"),
    M("mmd.permutation-p-value-direction", "mmd.py",
      "p_value = (1.0 + jnp.sum(quad[1:] >= quad[0])) / (num_permutations + 1.0)",
      "p_value = (1.0 + jnp.sum(quad[1:] <= quad[0])) / (num_permutations + 1.0)",
      "sign", "permutation test counts the permuted statistics below the observed one", quick=True),
    M("mmd.permutation-unbiased-yy", "mmd.py",
      "quad = quad + s_xx / (n * n * (n - 1.0)) + s_yy / (m * m * (m - 1.0))",
      "quad = quad + s_xx / (n * n * (n - 1.0))",
      "dropped-term", "unbiased permutation statistic drops the y-y correction"),
    M("mmd.permutation-coefficients", "mmd.py",
      "coeffs = labels * (inv_n + inv_m) - inv_m",
      "coeffs = labels * (inv_n + inv_m) - inv_n",
      "swapped-arguments", "permutation statistic weights -1/n instead of -1/m on the second sample"),
    M("mmd.mmd-uses-unbiased", "mmd.py",
      'return jnp.sqrt(jnp.maximum(mmd2(x, y, kernel, estimator="biased", block_size=block_size), 0.0))',
      'return jnp.sqrt(jnp.maximum(mmd2(x, y, kernel, estimator="unbiased", block_size=block_size), 0.0))',
      "normalisation", "mmd() takes the U-statistic instead of the V-statistic (Thm 4.1 is exact for the V one)"),
    # ------------------------------------------------------------------ operators.py (Thm 3.1, 3.2, 4.1)
    M("operators.hs-scale-not-squared", "operators.py",
      "+ shift + 2.0 * op.log_scale",
      "+ shift + op.log_scale",
      "constant", "||cW||_HS^2 scaled by c instead of c^2", quick=True),
    M("operators.hs-abs-coefficients", "operators.py",
      "terms = jnp.outer(op.coef, op.coef) * (op.values @ op.values.T) * jnp.exp(log_kernel - shift)",
      "terms = jnp.abs(jnp.outer(op.coef, op.coef)) * (op.values @ op.values.T) * jnp.exp(log_kernel - shift)",
      "sign", "HS norm ignores the signs of the representer coefficients"),
    M("operators.apply-scale-sign", "operators.py",
      "scaled * jnp.exp(shift + op.log_scale))",
      "scaled * jnp.exp(shift - op.log_scale))",
      "sign", "apply_operator multiplies by exp(-log_scale)"),
    M("operators.to-matrix-drops-coef", "operators.py",
      "((op.coef[:, None] * op.values).T @ features)",
      "((op.values).T @ features)",
      "dropped-term", "to_matrix ignores the representer coefficients"),
    M("distillation.distilled-one-over-n", "distillation.py",
      "jnp.log(jnp.asarray(2.0 / n, tokens.dtype)) + log_eta",
      "jnp.log(jnp.asarray(1.0 / n, tokens.dtype)) + log_eta",
      "constant", "distilled_weights = (eta/N) sum v (x) phi(k) instead of (2 eta/N) sum"),
    M("distillation.kd-loss-residual-sign", "distillation.py",
      "residual = tokens @ weights.wv.T - _student(w, tokens @ weights.wk.T, feature_map)",
      "residual = tokens @ weights.wv.T + _student(w, tokens @ weights.wk.T, feature_map)",
      "sign", "KD loss of f_T + f_S instead of f_T - f_S"),
    M("attention.operators-scale-sign", "attention.py",
      "log_scale = -_kd_decomposition(weights, demos, context, query[None, :]).log_partition[0]",
      "log_scale = _kd_decomposition(weights, demos, context, query[None, :]).log_partition[0]",
      "sign", "attention_operators scale W_0 and ΔW by D' instead of 1/D'"),
    M("operators.add-operators-scale", "operators.py",
      "second.coef * jnp.exp(second.log_scale - top)",
      "second.coef * jnp.exp(first.log_scale - top)",
      "swapped-arguments", "add_operators rescales the second operator with the first one's scale"),
    # ------------------------------------------------------------------ features.py (lemma-features, Thm 3.1b)
    M("features.positive-normalisation", "features.py",
      "return jnp.exp(projections - half_sq_norm - 0.5 * math.log(m))",
      "return jnp.exp(projections - half_sq_norm - math.log(m))",
      "normalisation", "positive random features scaled by 1/m instead of 1/sqrt(m)", quick=True),
    M("features.half-norm-dropped-half", "features.py",
      "half_sq_norm = 0.5 * jnp.sum(u * u, axis=-1, keepdims=True)",
      "half_sq_norm = jnp.sum(u * u, axis=-1, keepdims=True)",
      "constant", "random features use exp(-|u|^2) (positive) / exp(|u|^2) (trig) instead of |u|^2/2"),
    M("features.trig-sqrt2", "features.py",
      "math.sqrt(2.0 / m)",
      "math.sqrt(1.0 / m)",
      "constant", "trigonometric features scaled by sqrt(1/m) instead of sqrt(2/m)"),
    M("features.taylor-factorial", "features.py",
      "/ math.sqrt(n)",
      "/ n",
      "normalisation", "Taylor blocks scaled by 1/n! instead of 1/sqrt(n!)"),
    M("features.taylor-order-off-by-one", "features.py",
      "for n in range(1, order + 1):",
      "for n in range(1, order):",
      "off-by-one", "Taylor features stop one order early"),
    M("features.orthogonal-no-norms", "features.py",
      "return orthonormal * norms[:, None]",
      "return orthonormal",
      "dropped-term", "orthogonal random features without the chi-distributed row norms (biased)", quick=True),
    M("features.trig-offset-range", "features.py",
      "offset = jax.random.uniform(offset_key, (num_features,), dtype, 0.0, 2.0 * math.pi)",
      "offset = jax.random.uniform(offset_key, (num_features,), dtype, 0.0, math.pi)",
      "constant", "trigonometric offsets b ~ U[0, pi) instead of U[0, 2 pi)",
      equivalent="equivalent in distribution: every inner product of two trig features is "
                 "(e^{|u|^2/2} e^{|z|^2/2} / m) sum_i [cos(w_i.(u-z)) + cos(w_i.(u+z) + 2 b_i)], and 2b mod 2 pi is "
                 "uniform on [0, 2 pi) for b ~ U[0, pi) as for b ~ U[0, 2 pi): all Gram matrices, hence every "
                 "kernel estimate, KD step and MMD built on them, have the same joint law (found when it survived "
                 "both verify and pytest)"),
    M("features.haar-sign-fix-dropped", "features.py",
      "signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(g.dtype)",
      "signs = jnp.where(jnp.diagonal(r) < 0, 1.0, 1.0).astype(g.dtype)",
      "sign", "orthogonal features: QR without the sign correction (Q not Haar-distributed)"),
    # ------------------------------------------------------------------ quadratic.py (Thm 3.2's exact sup)
    M("quadratic.value-sign", "quadratic.py",
      "value = jnp.sum(lam * w * w) - 2 * jnp.sum(beta * w)",
      "value = jnp.sum(lam * w * w) + 2 * jnp.sum(beta * w)",
      "sign", "trust-region maximum reports w^T A w + 2 b^T w at the maximiser of w^T A w - 2 b^T w", quick=True),
    M("quadratic.few-newton-iterations", "quadratic.py",
      "NEWTON_ITERATIONS = 64",
      "NEWTON_ITERATIONS = 2",
      "constant", "secular equation solved with 2 Newton/bisection steps instead of 64"),
    M("quadratic.hard-case-radius", "quadratic.py",
      "tau = jnp.sqrt(jnp.maximum(radius * radius - rest2, zero))",
      "tau = jnp.sqrt(jnp.maximum(radius - rest2, zero))",
      "constant", "hard case: the top-eigenvector step uses r - |w|^2 instead of r^2 - |w|^2"),
    M("quadratic.dense-untransposed-basis", "quadratic.py",
      "sol = _solve_eigenbasis(lam, q.T @ b, radius)",
      "sol = _solve_eigenbasis(lam, q @ b, radius)",
      "swapped-arguments", "max_quadratic_on_ball: b expressed in the eigenbasis with Q instead of Q^T"),
    # ------------------------------------------------------------------ rademacher.py (Thm 3.2)
    M("rademacher.closed-form-sqrt-n", "rademacher.py",
      "return radius / gram.shape[0] * jnp.sqrt(jnp.maximum(jnp.trace(gram), 0))",
      "return radius / jnp.sqrt(gram.shape[0]) * jnp.sqrt(jnp.maximum(jnp.trace(gram), 0))",
      "normalisation", "closed form (B/sqrt(N)) sqrt(tr K) instead of (B/N) sqrt(tr K)"),
    M("rademacher.mc-scale-uses-signs", "rademacher.py",
      "scale = radius / n",
      "scale = radius / s",
      "swapped-arguments", "Monte Carlo Rademacher estimate divides by the number of sign vectors", quick=True),
    M("rademacher.mc-standard-error", "rademacher.py",
      "scale * jnp.std(norms, ddof=1) / jnp.sqrt(s)",
      "scale * jnp.std(norms, ddof=1) / s",
      "normalisation", "standard error of the Monte Carlo estimate divided by S instead of sqrt(S)"),
    M("rademacher.exact-jensen", "rademacher.py",
      "return float(radius / n * np.mean(np.sqrt(sq)))",
      "return float(radius / n * np.sqrt(np.mean(sq)))",
      "swapped-arguments", "rademacher_exact takes sqrt(E|.|^2) (Jensen's upper bound) instead of E|.|"),
    # ------------------------------------------------------------------ distillation.py (Thm 3.1b, 3.2, 4.1, 4.2)
    M("distillation.target-coefficient", "distillation.py",
      "jnp.full((m,), -1.0 / m, target.dtype)",
      "jnp.full((m,), -1.0 / n, target.dtype)",
      "swapped-arguments", "ΔW weights the target sample by -1/n (the prompt's size) instead of -1/m", quick=True),
    M("distillation.difference-without-2", "distillation.py",
      "jnp.log(jnp.asarray(2.0, target.dtype)) + log_eta",
      "jnp.log(jnp.asarray(1.0, target.dtype)) + log_eta",
      "constant", "ΔW = eta (mu_Q - mu_D) instead of 2 eta (mu_Q - mu_D)"),
    M("distillation.mean-square-axis", "distillation.py",
      "def _mean_square(residual):\n    return jnp.mean(jnp.sum(residual * residual, axis=-1))",
      "def _mean_square(residual):\n    return jnp.mean(jnp.sum(residual * residual, axis=0))",
      "axis", "kd_loss/kd_risk sum over the examples and average over the value coordinates"),
    # ------------------------------------------------------------------ linear.py (linear special case)
    M("linear.dual-uses-wq", "linear.py",
      "return (tokens @ weights.wv.T).T @ (tokens @ weights.wk.T)",
      "return (tokens @ weights.wv.T).T @ (tokens @ weights.wq.T)",
      "swapped-arguments", "linear dual weights sum v_i (W^Q x_i)^T instead of v_i k_i^T", quick=True),
    M("linear.gd-unnormalised", "linear.py",
      "gradient = (xs @ w_init.T - ys).T @ xs / xs.shape[0]",
      "gradient = (xs @ w_init.T - ys).T @ xs",
      "normalisation", "reference GD step uses the summed instead of the mean gradient"),
    M("linear.von-oswald-lr", "linear.py",
      "np.eye(d) * (learning_rate / n_demos)",
      "np.eye(d) * learning_rate",
      "normalisation", "von Oswald projection eta instead of eta / N"),
    M("linear.von-oswald-value-sign", "linear.py",
      "value_map[x_dim:, x_dim:] = -np.eye(y_dim)",
      "value_map[x_dim:, x_dim:] = np.eye(y_dim)",
      "sign", "von Oswald value map +I instead of -I on the y block"),
    M("linear.attention-query-uses-wk", "linear.py",
      "return ((queries @ weights.wq.T) @ (tokens @ weights.wk.T).T) @ (tokens @ weights.wv.T)",
      "return ((queries @ weights.wk.T) @ (tokens @ weights.wk.T).T) @ (tokens @ weights.wv.T)",
      "swapped-arguments", "linear attention projects the queries with W^K"),
    M("linear.prediction-sign", "linear.py",
      "return -updated_queries[:, -y_dim:]",
      "return updated_queries[:, -y_dim:]",
      "sign", "LSA prediction read with the wrong sign"),
    # ------------------------------------------------------------------ distributions.py (Thm 3.2 constants)
    M("distributions.radius-drops-centre", "distributions.py",
      "return float(np.linalg.norm(self.center)) + r",
      "return r",
      "dropped-term", "support radius ignores the centre (|c| + r -> r)", quick=True),
    M("distributions.feature-bound-constant", "distributions.py",
      "return 0.5 * (operator_norm(wk) * self.radius) ** 2",
      "return 0.25 * (operator_norm(wk) * self.radius) ** 2",
      "constant", "log C = (|W^K| R)^2 / 4 instead of / 2 (C too small)"),
    M("distributions.ball-radial-exponent", "distributions.py",
      "radii = scale * jax.random.uniform(rad_key, (n, 1), dtype) ** (1.0 / dim)",
      "radii = scale * jax.random.uniform(rad_key, (n, 1), dtype) ** (1.0 / (dim + 1))",
      "off-by-one", "uniform-ball sampler uses U^(1/(d+1)) for the radius (not uniform in the ball)"),
)

BY_ID: dict[str, Mutant] = {m.id: m for m in CATALOGUE}

#: the library modules each mutant's pytest run covers (tests mirror the package tree)
MIRROR_TESTS: dict[str, tuple[str, ...]] = {
    "mmd.py": ("tests/iclkd_jax/test_mmd.py", "tests/iclkd_jax/test_permutation.py"),
}


def mirror_tests(mutant: Mutant) -> tuple[str, ...]:
    """``tests/iclkd_jax/test_<module>.py`` (and any extra mirror) for the mutated module."""
    default = (f"tests/iclkd_jax/test_{Path(mutant.file).stem}.py",)
    return MIRROR_TESTS.get(mutant.file, default)
