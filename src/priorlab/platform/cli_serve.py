"""`priorlab serve`: run a Serve app on the local Ray (or a cluster) until Ctrl-C (docs/serve.md).

    priorlab serve text2nerf --checkpoint CKPT [--host 127.0.0.1] [--port 8000] [--sd-model PATH]
    priorlab serve molscore  --checkpoint CKPT [--set max_batch_size=16 --set device=cpu]

``--set KEY=VALUE`` sets any field of the app's typed arguments (``Text2NerfArgs``,
``MolscoreArgs``; a JSON value for nested ones, e.g.
``--set 'featurizer_autoscaling={"max_replicas": 4}'``); an unknown key is an error that lists
the valid ones. The server binds to 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

APPS = ("text2nerf", "molscore")


class ServeError(ValueError):
    """Arguments an app cannot start with."""


def add_parsers(sub) -> None:
    sv = sub.add_parser("serve", help="serve HyperFields (text2nerf) or a molecule scorer (molscore) "
                                      "over HTTP with Ray Serve (docs/serve.md)")
    sv.add_argument("app", choices=APPS)
    sv.add_argument("--checkpoint", required=True,
                    help="text2nerf: a fields-hyper checkpoint; molscore: a molecules-scorer checkpoint")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--address", default=None, help="a running Ray cluster (default: a local Ray)")
    sv.add_argument("--expected-sha256", default=None,
                    help="refuse to start unless the checkpoint folder has this hash")
    sv.add_argument("--sd-model", default=None,
                    help="text2nerf: a local Stable Diffusion folder for fine-tunes of any prompt (SDS)")
    sv.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="any field of the app's arguments (repeatable)")


def app_args(app: str, checkpoint: str, settings: list[str], **given: Any):
    """The app's typed arguments from the flags: a ServeError naming what is wrong."""
    from pydantic import ValidationError

    from priorlab.serve_apps.molscore import MolscoreArgs
    from priorlab.serve_apps.text2nerf import Text2NerfArgs

    model = Text2NerfArgs if app == "text2nerf" else MolscoreArgs
    values: dict[str, Any] = {"checkpoint": checkpoint}
    values.update({k: v for k, v in given.items() if v is not None})
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ServeError(f"--set {item!r}: write KEY=VALUE, e.g. --set max_batch_size=16")
        if key not in model.model_fields:
            raise ServeError(f"--set {key}: {app} has no such setting; the settings are "
                             f"{sorted(model.model_fields)}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    try:
        return model.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in err.errors(include_url=False))
        raise ServeError(f"{app} settings: {problems}") from None


def check_port_free(host: str, port: int) -> None:
    """A ServeError when ``host``:``port`` cannot be bound (Serve's proxy would fail there with
    a traceback, after Ray has started)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ServeError(f"cannot listen on {host}:{port} ({err.strerror}): another server "
                             "uses it; stop it or pass another --port") from None


def build(app: str, args):
    from priorlab.serve_apps.molscore import build_molscore_app
    from priorlab.serve_apps.text2nerf import build_text2nerf_app

    try:
        return (build_text2nerf_app if app == "text2nerf" else build_molscore_app)(args)
    except (ValueError, FileNotFoundError) as err:
        raise ServeError(str(err)) from None


def deploy(app: str, args, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
           route_prefix: str = "/") -> str:
    """Start Serve on this Ray (``host``:``port``; kept if Serve already runs) and deploy the app;
    returns its base URL."""
    from ray import serve

    application = build(app, args)
    serve.start(http_options={"host": host, "port": port})
    serve.run(application, name=name or app, route_prefix=route_prefix)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"


def cmd_serve(args) -> int:
    from ray import serve

    from priorlab.platform import runtime
    from priorlab.serve_apps.common import checkpoint_sha256

    given = {"expected_sha256": args.expected_sha256}
    if args.app == "text2nerf":
        given["sd_model"] = args.sd_model
    elif args.sd_model:
        raise ServeError("--sd-model is a text2nerf setting; molscore has no use for it")
    typed = app_args(args.app, args.checkpoint, args.settings, **given)
    build(args.app, typed)                          # checkpoint problems before Ray starts
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        check_port_free(args.host, args.port)
    runtime.start(args.address)

    def stop(signum, _frame):
        raise KeyboardInterrupt

    # Ctrl-C, and `kill` (SIGTERM) too, stop Serve cleanly, also when started in the background
    # (where a shell leaves SIGINT ignored); installed after Ray's start, which sets its own
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"deploying {args.app} from {args.checkpoint} (sha256 {checkpoint_sha256(args.checkpoint)})",
          flush=True)
    routes = ("POST /v1/generate, POST /v1/finetune, GET /v1/jobs/{id}" if args.app == "text2nerf"
              else "POST /v1/score")
    try:
        url = deploy(args.app, typed, host=args.host, port=args.port)
        print(f"{args.app} is up at {url}  ({routes}, GET /v1/info, GET /healthz); Ctrl-C stops it",
              flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        serve.shutdown()
    print(f"{args.app} stopped", flush=True)
    return 0
