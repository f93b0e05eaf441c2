"""Property-based fuzzing of the HTTP app from its own OpenAPI schema (schemathesis, on the ASGI app): schema-valid
and schema-violating requests to ``POST /generate`` (and, more briefly, every route) never get a 5xx answer (but the
503 of a version that is not loaded)."""

from __future__ import annotations

import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from test_server_http_support import Served, build_served
from test_server_support import make_repository

from caloflow_repo import ModelRepository
from caloflow_server import load_runtime
from caloflow_server.http_framing import decode_framed


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    torch.set_num_threads(1)
    repository: ModelRepository = make_repository(tmp_path_factory.mktemp("fuzz"))
    loaded = [load_runtime(repository, model, 1, intra_op_threads=1) for model in ("tiny_photon", "tiny_pion")]
    return build_served(repository, loaded, max_count=4096)


def _check(case: Case) -> None:
    response = case.call()
    unavailable = response.status_code == 503 and response.json()["code"] == "UNAVAILABLE"  # version not loaded
    assert response.status_code < 500 or unavailable, f"{case.method} {case.path} {case.body!r} -> {response.text}"
    if response.status_code != 200 or case.path != "/generate":
        assert response.status_code == 200 or "error" in response.json()
        return
    if response.headers["content-type"] == "application/octet-stream":
        stream = decode_framed(response.content)
        assert stream.status is not None and stream.status["status"] == "ok"
        assert stream.showers.shape == (int(response.headers["x-count"]), int(response.headers["x-voxels"]))


_OPTIONAL = {
    "seed": st.integers(0, 2**64 - 1),
    "start_index": st.integers(0, 2**62),
    "chunk_showers": st.integers(1, 5000),
    "format": st.sampled_from(["npy", "framed", "json"]),
    "allow_extrapolation": st.booleans(),
    "model_version": st.sampled_from([1, "1", 2]),
}
_PARTICLE = st.sampled_from(["photon", "pion"])
_ENERGY = st.floats(1.0, 1e8)
_NEAR_VALID = st.one_of(
    st.fixed_dictionaries(
        {"particle": _PARTICLE, "energy_mev": _ENERGY, "count": st.integers(-2, 3000)}, optional=_OPTIONAL
    ),
    st.fixed_dictionaries(
        {"particle": _PARTICLE, "energies_mev": st.lists(_ENERGY, min_size=0, max_size=300)}, optional=_OPTIONAL
    ),
)
"""Bodies close to valid, so that fuzzing also reaches generation (the schema alone rarely forms a valid request)."""


def test_generate_never_answers_5xx(served: Served) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", served.app)
    operation = schema["/generate"]["POST"]
    cases = st.one_of(
        operation.as_strategy(),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        _NEAR_VALID.flatmap(lambda body: operation.as_strategy(body=body)),
    )

    @_settings(90)
    @given(case=cases)
    def check(case: Case) -> None:
        _check(case)

    check()


def test_no_route_answers_5xx(served: Served) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", served.app)
    cases = st.one_of(schema.as_strategy(), schema.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @_settings(60)
    @given(case=cases)
    def check(case: Case) -> None:
        _check(case)

    check()
