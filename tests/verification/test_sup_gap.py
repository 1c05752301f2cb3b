import jax
import numpy as np

from verification.cases import sup_gap


def test_exact_supremum_matches_a_dense_solver():
    """The Kronecker/eigenbasis sup of one draw equals the dense trust-region solution of the full problem."""
    import iclkd_jax as ik

    setting = sup_gap.SETTINGS[1]
    key = jax.random.key(3)
    wk, wv = sup_gap.random_weights(key, setting)
    pop = sup_gap.population(setting, key, wk, wv, 4 * sup_gap.N_MAX)
    tokens = sup_gap.sample_tokens(setting.distribution, jax.random.fold_in(key, 1), 4 * sup_gap.N_MAX)
    tokens = tokens.reshape(4, sup_gap.N_MAX, sup_gap.TOKEN_DIM)
    res = sup_gap.sup_gaps(tokens, key, sup_gap.demo_weights(setting.n), wk, wv, pop, setting.ball)
    phi, t = sup_gap.features_targets(tokens[0, :setting.n], np.asarray(wk), np.asarray(wv))
    phi, t = np.asarray(phi), np.asarray(t)
    d_sigma = np.asarray(pop.sigma) - phi.T @ phi / setting.n
    d_m = np.asarray(pop.m) - t.T @ phi / setting.n
    d_c = float(pop.c) - np.mean(np.sum(t * t, axis=1))
    a = np.kron(np.eye(sup_gap.VALUE_DIM), d_sigma)
    dense = ik.max_quadratic_on_ball(0.5 * (a + a.T), d_m.reshape(-1), setting.ball)
    np.testing.assert_allclose(res.gap[0], d_c + float(dense.value), rtol=1e-10, atol=1e-12)
