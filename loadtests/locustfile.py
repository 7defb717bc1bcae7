"""Locust load test of trm.v1: a weighted mix of unary Reason and ReasonStream calls over the default
models, with real inputs from their test splits.

    PYTHONPATH=. locust -f loadtests/locustfile.py --headless --host 127.0.0.1:50051 -u 32 -r 8 -t 60s \\
        --model-mix intent-clinc150=6,routing-20ng=3,sudoku=1 --stream-share 0.25 --user-rate 0

`python -m loadtests.run` starts a server and runs this file for you (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import random

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import events, task  # noqa: E402
from locust.user.wait_time import constant_pacing  # noqa: E402
from trm.v1 import trm_pb2  # noqa: E402

from loadtests.call_stats import CallStats  # noqa: E402
from loadtests.grpc_user import ReasoningServiceUser  # noqa: E402
from loadtests.inputs import ModelInputs, data_dir, load_inputs  # noqa: E402

DEFAULT_MIX = "intent-clinc150=6,routing-20ng=3,sudoku=1"
LOADED: dict[str, ModelInputs] = {}
CALL_STATS = CallStats()


def parse_mix(text: str) -> dict[str, float]:
    """Parse "a=6,b=3" into {"a": 6.0, "b": 3.0}; every weight must be positive."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if not sep or float(weight) <= 0:
            raise ValueError(f"bad --model-mix entry {part!r}: expected name=positive_weight")
        mix[name.strip()] = float(weight)
    if not mix:
        raise ValueError("--model-mix names no model")
    return mix


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $TRM_DATA_DIR or ../shared/data)")
    parser.add_argument("--model-mix", default=DEFAULT_MIX, help="model=weight,... share of requests per model")
    parser.add_argument("--stream-share", type=float, default=0.25, help="fraction of calls made with ReasonStream")
    parser.add_argument("--user-rate", type=float, default=0.0, help="calls/s per user; 0 = back to back")
    parser.add_argument("--call-timeout", type=float, default=30.0, help="gRPC deadline per call, seconds")
    parser.add_argument("--calls-json", default="", help="write per-call and accepted-call figures here")


@events.init.add_listener
def refuse_a_remote_or_endless_run(environment, **_kwargs) -> None:
    """Load tests target this machine only, and stop by themselves."""
    if not (environment.host or "").startswith("127.0.0.1:") or not environment.parsed_options.run_time:
        raise SystemExit("loadtests: give --host 127.0.0.1:PORT and --run-time: load tests target 127.0.0.1 only "
                         "and stop by themselves")


@events.init.add_listener
def load_model_inputs(environment, **_kwargs) -> None:
    """Read the inputs once per Locust process, before any user starts."""
    options = environment.parsed_options
    mix = parse_mix(options.model_mix)
    LOADED.update(load_inputs(data_dir(options.data_dir), list(mix)))


@events.request.add_listener
def record_call(request_type, name, response_time, response_length, exception=None, **_kwargs) -> None:
    CALL_STATS.record(request_type, name, response_time, response_length, exception)


@events.quitting.add_listener
def write_call_stats(environment, **_kwargs) -> None:
    """Write the calls and accepted-calls figures (see loadtests.call_stats) to --calls-json."""
    path = environment.parsed_options.calls_json
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(CALL_STATS.to_json(), out, indent=1)


class ReasonUser(ReasoningServiceUser):
    """An agent calling the co-processor: a model by weight, a real input, Reason or ReasonStream."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.call_timeout_s = options.call_timeout
        self.rng = random.Random()
        mix = parse_mix(options.model_mix)
        self.models = list(mix)
        self.weights = list(mix.values())
        self.max_chars = {name: self._max_text_chars(name) for name in self.models}

    def _max_text_chars(self, model: str) -> int:
        """The model's text limit from GetModel, so long documents are cut as a real client would."""
        info = self.stub.GetModel(trm_pb2.GetModelRequest(name=model), timeout=self.call_timeout_s)
        return info.limits.max_text_chars

    def wait_time(self) -> float:
        rate = self.environment.parsed_options.user_rate
        return constant_pacing(1.0 / rate)(self) if rate > 0 else 0.0

    def request_for(self, model: str) -> trm_pb2.ReasonRequest:
        """A ReasonRequest with a random test input and the model's default budget."""
        inputs = LOADED[model]
        sample = inputs.pick(self.rng)
        if inputs.kind == "grid":
            return trm_pb2.ReasonRequest(model=model, grid=trm_pb2.Grid(cells=sample))
        return trm_pb2.ReasonRequest(model=model, text=sample[: self.max_chars[model]])

    @task
    def call_model(self) -> None:
        model = self.rng.choices(self.models, self.weights)[0]
        request = self.request_for(model)
        if self.rng.random() < self.environment.parsed_options.stream_share:
            self.reason_stream(request)
        else:
            self.reason(request)
