"""sharded_vmap / monte_carlo on 4 forced CPU devices give bitwise the single-device results, without recompiling.

The device count is fixed when JAX is imported, so the 4-device run happens in a subprocess.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from iclkd_jax import sharding

_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from iclkd_jax import mmd2, rbf_kernel, sharding, trace_counts

def draw(key, scale):
    x = jax.random.normal(key, (40, 4), jnp.float32) * scale
    return {"mmd": mmd2(x[:20], x[20:], rbf_kernel(bandwidth=jnp.float32(1.0))),
            "logsum": jax.nn.logsumexp(x @ x.T), "first": x[0]}

def sweep(point, base):
    return jnp.sum(jnp.exp(-point["h"] * base)) + point["c"]

assert jax.device_count() == 4, jax.devices()
scale = jnp.float32(1.5)
keys = jax.random.split(jax.random.key(0), 10)
four = sharding.sharded_vmap(draw, keys, scale)
one = sharding.sharded_vmap(draw, keys, scale, mesh=sharding.device_mesh(jax.devices()[:1]))
same = all(np.array_equal(np.asarray(four[k]), np.asarray(one[k])) for k in four)
shards = len(four["mmd"].sharding.device_set)
mc = sharding.monte_carlo(draw, jax.random.key(0), 10, scale)
mc_same = all(np.array_equal(np.asarray(four[k]), np.asarray(mc[k])) for k in four)
before = trace_counts()["iclkd_jax.sharding.sharded_vmap[draw]"]
sharding.monte_carlo(draw, jax.random.key(5), 10, jnp.float32(0.5))
retraced = trace_counts()["iclkd_jax.sharding.sharded_vmap[draw]"] - before
points = {"h": jnp.linspace(0.1, 2.0, 7, dtype=jnp.float32), "c": jnp.arange(7, dtype=jnp.float32)}
swept = sharding.sharded_vmap(sweep, points, jnp.linspace(0, 1, 5, dtype=jnp.float32))
print(json.dumps({"same": same, "mc_same": mc_same, "retraced": retraced, "shards": shards,
                  "mmd": np.asarray(four["mmd"]).tolist(), "sweep": np.asarray(swept).tolist()}))
"""


def _run(device_count):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={device_count}"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SCRIPT.replace("== 4", f"== {device_count}")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_match_one_device_bitwise():
    four = _run(4)
    assert four["same"] and four["mc_same"], four
    assert four["retraced"] == 0
    single = _run(1)  # a genuinely single-device process gives the same bits as the 4-device one
    assert four["mmd"] == single["mmd"] and four["sweep"] == single["sweep"]


def test_validation():
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="leading axis"):
        sharding.sharded_vmap(lambda b: b, {"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="key"):
        sharding.monte_carlo(lambda k: k, 0, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        sharding.sharded_vmap(lambda k: k, keys, chunk_size=0)
    out = sharding.sharded_vmap(lambda k: jax.random.normal(k, (2,)), keys)  # x64 on here: float64
    assert out.shape == (3, 2)
    np.testing.assert_array_equal(out, jax.vmap(lambda k: jax.random.normal(k, (2,)))(keys))


@pytest.mark.parametrize("kwargs, match", [
    ({"coordinator_address": "127.0.0.1:1234"}, "together"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 2}, "process_id"),
    ({"coordinator_address": "127.0.0.1", "num_processes": 1, "process_id": 0}, "host:port"),
    ({"coordinator_address": "127.0.0.1:99999", "num_processes": 1, "process_id": 0}, "port"),
    ({"coordinator_address": 1234, "num_processes": 1, "process_id": 0}, "coordinator_address"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 0, "process_id": 0}, "num_processes"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 2}, r"\[0, 2\)"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": -1}, "process_id"),
])
def test_initialize_distributed_validates_before_connecting(kwargs, match):
    """Malformed arguments fail at once with a ValueError (JAX itself would wait for a coordinator)."""
    with pytest.raises(ValueError, match=match):
        sharding.initialize_distributed(**kwargs)


_DISTRIBUTED = r"""
import json, socket, sys
import jax, jax.numpy as jnp
from iclkd_jax import sharding
with socket.socket() as s:  # a free loopback port for the coordinator
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
sharding.initialize_distributed(coordinator_address=f"127.0.0.1:{port}", num_processes=1, process_id=0)
first = jax.distributed.is_initialized()
sharding.initialize_distributed(coordinator_address=f"127.0.0.1:{port}", num_processes=1, process_id=0)  # no-op
out = sharding.monte_carlo(lambda k: jax.random.normal(k, ()), jax.random.key(0), 4)
print(json.dumps({"initialized": first, "processes": jax.process_count(), "index": jax.process_index(),
                  "draws": sharding.gather(out).tolist()}))
"""


def test_initialize_distributed_single_process_on_loopback():
    """A real jax.distributed.initialize with one process on 127.0.0.1 (fresh process), called twice, then a run."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _DISTRIBUTED], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["initialized"] and result["processes"] == 1 and result["index"] == 0
    want = jax.vmap(lambda k: jax.random.normal(k, (), jax.numpy.float32))(jax.random.split(jax.random.key(0), 4))
    np.testing.assert_array_equal(np.asarray(result["draws"], np.float32), np.asarray(want))
