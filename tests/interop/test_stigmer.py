"""Stigmer's runner contract: a grpcio client (stubs generated from the ai.stigmer .proto
files actorstage ships) drives `actorstage serve` as it would drive Stigmer's workflow
runner, and a grpcio server of Stigmer's status callback receives the updateStatus
snapshots. Configured by Stigmer's environment; the workflows call a local HTTP server."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from tests.interop.conftest import serve

API_KEY = "stigmer-key"


class Statuses:
    """A Stigmer backend's status callback: keeps every updateStatus it receives."""

    def __init__(self, pb: ModuleType, grpc_pb: ModuleType) -> None:
        self.pb = pb
        self.calls: list[tuple[str, Any, str]] = []  # (execution_id, status, authorization)
        self.changed = threading.Condition()
        self.refuse = 0  # answer UNAVAILABLE to this many calls first
        outer = self

        class Servicer(grpc_pb.WorkflowExecutionCommandControllerServicer):  # type: ignore[misc,name-defined]
            def updateStatus(self, request: Any, context: Any) -> Any:
                if outer.refuse > 0:
                    outer.refuse -= 1
                    context.abort(grpc.StatusCode.UNAVAILABLE, "down for a moment")
                auth = dict(context.invocation_metadata()).get("authorization", "")
                with outer.changed:
                    outer.calls.append((request.execution_id, request.status, auth))
                    outer.changed.notify_all()
                return pb.WorkflowExecution(api_version="agentic.stigmer.ai/v1",
                                            kind="WorkflowExecution", status=request.status)

        self.servicer = Servicer()

    def of(self, execution_id: str) -> list[Any]:
        with self.changed:
            return [status for id_, status, _auth in self.calls if id_ == execution_id]

    def wait(self, execution_id: str, done: Callable[[Any], bool], timeout: float = 30) -> Any:
        """The first snapshot of the execution for which ``done`` holds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for id_, status, _auth in self.calls:
                    if id_ == execution_id and done(status):
                        return status
                left = deadline - time.monotonic()
                if left <= 0:
                    phases = [status.phase for status in self.of_locked(execution_id)]
                    raise AssertionError(f"no such status of {execution_id}; phases {phases}")
                self.changed.wait(left)

    def of_locked(self, execution_id: str) -> list[Any]:
        return [status for id_, status, _auth in self.calls if id_ == execution_id]


@contextmanager
def status_endpoint(stubs: dict[str, ModuleType], tls: tuple[str, str] | None = None
                    ) -> Iterator[tuple[Statuses, int]]:
    statuses = Statuses(stubs["execution_api_pb2"], stubs["execution_command_pb2_grpc"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    stubs["execution_command_pb2_grpc"].add_WorkflowExecutionCommandControllerServicer_to_server(
        statuses.servicer, server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        cert, key = (Path(name).read_bytes() for name in tls)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        yield statuses, port
    finally:
        server.stop(grace=None).wait(10)


class _Api(BaseHTTPRequestHandler):
    """The HTTP API the golden workflows call: posts to read, posts to create, an endpoint
    that is missing, and one that fails twice before it answers."""

    flaky: dict[str, int] = {}

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/posts/"):
            number = int(self.path.rsplit("/", 1)[1])
            self._answer(200, {"id": number, "userId": number, "title": f"post {number}"})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        if self.path == "/posts":
            self._answer(201, {**body, "id": 101})
        elif self.path.startswith("/flaky/"):
            key = self.path
            self.flaky[key] = self.flaky.get(key, 0) + 1
            if self.flaky[key] <= 2:
                self._answer(503, {"error": "try again"})
            else:
                self._answer(200, {"attempts": self.flaky[key], **body})
        else:
            self._answer(404, {"error": "no such endpoint"})

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SWITCH_WITH_CALLS = """
document: {{dsl: '1.0.0', namespace: golden-tests, name: switch-conditional-test,
           version: '1.0.0'}}
do:
  - fetchPost:
      call: http
      with: {{method: GET, endpoint: {{uri: '{api}/posts/7'}}}}
      export: {{as: '${{ . }}'}}
  - classifyUser:
      switch:
        - highValueCase: {{when: '${{ $context.userId > 5 }}', then: highValueUser}}
        - regularUserCase: {{when: '${{ $context.userId <= 5 }}', then: regularUser}}
        - defaultCase: {{then: unknownUser}}
  - highValueUser:
      call: http
      with:
        method: POST
        endpoint: {{uri: '{api}/posts'}}
        body: {{category: premium, userId: '${{ $context.userId }}', postId: '${{ $context.id }}'}}
      then: end
  - regularUser:
      call: http
      with:
        method: POST
        endpoint: {{uri: '{api}/posts'}}
        body: {{category: standard, userId: '${{ $context.userId }}'}}
      then: end
  - unknownUser:
      call: http
      with: {{method: POST, endpoint: {{uri: '{api}/posts'}}, body: {{category: unknown}}}}
      then: end
"""

RETRY = """
document: {{dsl: '1.0.0', namespace: golden-tests, name: error-retry-test, version: '1.0.0'}}
do:
  - initialize:
      set: {{started: true}}
  - flakyOperation:
      try:
        - attemptCall:
            call: http
            with: {{method: POST, endpoint: {{uri: '{api}/flaky/{key}'}}, body: {{title: flaky}}}}
      catch:
        errors: {{with: {{type: 'https://serverlessworkflow.io/spec/1.0.0/errors/communication'}}}}
        retry:
          delay: {{milliseconds: 20}}
          backoff: {{exponential: {{}}}}
          limit: {{attempt: {{count: 5}}}}
  - missing:
      try:
        - postToNowhere:
            call: http
            with: {{method: POST, endpoint: {{uri: '{api}/post'}}, body: {{title: lost}}}}
      catch:
        as: error
        do:
          - errorHandler:
              set: {{handled: '${{ $error.status }}'}}
"""

FAILS = """
document: {dsl: '1.0.0', namespace: golden-tests, name: fails, version: '1.0.0'}
do:
  - first: {set: {a: 1}}
  - broken:
      raise:
        error: {type: 'https://serverlessworkflow.io/spec/1.0.0/errors/validation',
                status: 400, title: Bad order, detail: the order has no lines}
  - never: {set: {b: 2}}
"""

SLOW = """
document: {dsl: '1.0.0', namespace: golden-tests, name: slow, version: '1.0.0'}
do:
  - before: {set: {step: 1}}
  - nap: {wait: {milliseconds: 600}}
  - after: {set: {step: 2}}
  - long: {wait: {seconds: 60}}
"""


def _phase(pb: ModuleType, name: str) -> int:
    return int(pb.ExecutionPhase.Value(name))


def _tasks(status: Any, pb: ModuleType) -> dict[str, str]:
    return {task.task_id: pb.WorkflowTaskStatus.Name(task.status) for task in status.tasks}


@contextmanager
def stigmer(stubs: dict[str, ModuleType], statuses_port: int, *flags: str,
            **extra_env: str) -> Iterator[tuple[Any, Any]]:
    port = _free_port()
    env = {"GRPC_PORT": str(port), "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{statuses_port}",
           "STIGMER_SERVICE_API_KEY": API_KEY, "STIGMER_SERVICE_USE_TLS": "false", **extra_env}
    with serve("--host", "127.0.0.1", "--metrics-port", "0", *flags, env=env,
               any_port=False) as served, \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert served.port == port  # GRPC_PORT was honoured
        runner = stubs["interface_pb2_grpc"].WorkflowRunnerServiceControllerStub(channel)
        yield runner, served


def test_golden_workflows_report_every_task_from_in_progress_to_completed(
        stigmer_stubs: dict[str, ModuleType]) -> None:
    io, pb = stigmer_stubs["io_pb2"], stigmer_stubs["execution_enum_pb2"]
    with http_api() as api, status_endpoint(stigmer_stubs) as (statuses, port), \
            stigmer(stigmer_stubs, port) as (runner, served):
        answer = runner.executeAsync(io.WorkflowExecuteInput(
            workflow_execution_id="wex-switch", workflow_yaml=SWITCH_WITH_CALLS.format(
                api=api)), timeout=10)
        assert (answer.workflow_execution_id, answer.status) == ("wex-switch", "running")
        final = statuses.wait("wex-switch", lambda status: status.phase >= _phase(
            pb, "EXECUTION_COMPLETED"))
        snapshots = statuses.of("wex-switch")
        assert snapshots[0].phase == _phase(pb, "EXECUTION_IN_PROGRESS")
        assert final.phase == _phase(pb, "EXECUTION_COMPLETED"), final.error
        assert len(snapshots) >= 6  # every task's start and end went out
        pointers = ["/do/0/fetchPost", "/do/1/classifyUser", "/do/2/highValueUser",
                    "/do/3/regularUser", "/do/4/unknownUser"]
        for snapshot in snapshots:  # every task listed in every snapshot, in order
            assert [task.task_id for task in snapshot.tasks] == pointers
        assert _tasks(final, pb) == {
            "/do/0/fetchPost": "WORKFLOW_TASK_COMPLETED",
            "/do/1/classifyUser": "WORKFLOW_TASK_COMPLETED",
            "/do/2/highValueUser": "WORKFLOW_TASK_COMPLETED",
            "/do/3/regularUser": "WORKFLOW_TASK_SKIPPED",
            "/do/4/unknownUser": "WORKFLOW_TASK_SKIPPED"}
        fetched = final.tasks[0]
        assert fetched.task_name == "fetchPost"
        assert fetched.task_type == pb.WorkflowTaskType.Value("WORKFLOW_TASK_API_CALL")
        assert fetched.output["userId"] == 7 and fetched.started_at and fetched.completed_at
        assert final.tasks[1].task_type == pb.WorkflowTaskType.Value(
            "WORKFLOW_TASK_CONDITIONAL")
        assert dict(final.output) == {"category": "premium", "userId": 7, "postId": 7,
                                      "id": 101}
        assert final.started_at.endswith("Z") and final.completed_at >= final.started_at
        assert {auth for _id, _status, auth in statuses.calls} == {f"Bearer {API_KEY}"}

        answer = runner.executeAsync(io.WorkflowExecuteInput(
            workflow_execution_id="wex-retry", workflow_yaml=RETRY.format(
                api=api, key="retry")), timeout=10)
        final = statuses.wait("wex-retry", lambda status: status.phase >= _phase(
            pb, "EXECUTION_COMPLETED"))
        assert final.phase == _phase(pb, "EXECUTION_COMPLETED"), final.error
        states = _tasks(final, pb)
        assert states.pop("/do/2/missing/try/0/postToNowhere") == "WORKFLOW_TASK_FAILED"
        assert set(states.values()) == {"WORKFLOW_TASK_COMPLETED"}  # (the error was caught)
        attempt = next(task for task in final.tasks if task.task_name == "attemptCall")
        assert attempt.output["attempts"] == 3  # failed twice, retried, then answered
        assert dict(final.output) == {"handled": 404}
        retried = [task.error for snapshot in statuses.of("wex-retry")
                   for task in snapshot.tasks if task.task_name == "flakyOperation"]
        assert any("retrying (attempt 2)" in error for error in retried)

        # Stigmer's operators' metrics, beside actorstage's own.
        metrics = next(line for line in served.lines if "metrics on" in line).rsplit(" ", 1)[1]
        with urllib.request.urlopen(metrics, timeout=5) as response:
            text = response.read().decode()
        assert "workflow_runner_active_executions 0" in text
        assert "workflow_runner_execution_duration_seconds_count 2" in text
        assert "actorstage_status_callback_events_lost_total 0" in text


def test_a_failing_workflow_and_bad_requests(stigmer_stubs: dict[str, ModuleType]) -> None:
    io, pb = stigmer_stubs["io_pb2"], stigmer_stubs["execution_enum_pb2"]
    with status_endpoint(stigmer_stubs) as (statuses, port), \
            stigmer(stigmer_stubs, port) as (runner, _served):
        runner.executeAsync(io.WorkflowExecuteInput(workflow_execution_id="wex-fails",
                                                    workflow_yaml=FAILS), timeout=10)
        final = statuses.wait("wex-fails", lambda status: status.phase >= _phase(
            pb, "EXECUTION_COMPLETED"))
        assert final.phase == _phase(pb, "EXECUTION_FAILED")
        assert "Bad order: the order has no lines" in final.error
        assert _tasks(final, pb) == {"/do/0/first": "WORKFLOW_TASK_COMPLETED",
                                     "/do/1/broken": "WORKFLOW_TASK_FAILED",
                                     "/do/2/never": "WORKFLOW_TASK_SKIPPED"}
        assert "the order has no lines" in final.tasks[1].error

        for given, problem in (("", "workflow_yaml is empty"),
                               ("document: {dsl: '1.0.0'}\ndo: []\n", "document/name")):
            with pytest.raises(grpc.RpcError) as caught:
                runner.executeAsync(io.WorkflowExecuteInput(workflow_execution_id="wex-bad",
                                                            workflow_yaml=given), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert problem in caught.value.details()
        assert statuses.of("wex-bad") == []

        runner.cancelExecution(io.CancelExecutionRequest(execution_id="nobody"), timeout=10)
        runner.cancelExecution(io.CancelExecutionRequest(execution_id="wex-fails"), timeout=10)
        for call in (runner.pauseExecution, runner.resumeExecution):
            for execution_id in ("nobody", "wex-fails"):  # unknown, or ended
                with pytest.raises(grpc.RpcError) as caught:
                    call(io.PauseExecutionRequest(execution_id=execution_id)
                         if call is runner.pauseExecution else
                         io.ResumeExecutionRequest(execution_id=execution_id), timeout=10)
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND
                assert f"execution not found: {execution_id}" in caught.value.details()


def test_pause_holds_at_a_task_boundary_resume_goes_on_and_cancel_ends_it(
        stigmer_stubs: dict[str, ModuleType]) -> None:
    io, pb = stigmer_stubs["io_pb2"], stigmer_stubs["execution_enum_pb2"]
    with status_endpoint(stigmer_stubs) as (statuses, port), \
            stigmer(stigmer_stubs, port) as (runner, _served):
        statuses.refuse = 2  # the backend is down for the first calls: they are retried
        runner.executeAsync(io.WorkflowExecuteInput(workflow_execution_id="wex-slow",
                                                    workflow_yaml=SLOW), timeout=10)
        statuses.wait("wex-slow", lambda status: _tasks(status, pb).get("/do/1/nap") ==
                      "WORKFLOW_TASK_IN_PROGRESS")
        runner.pauseExecution(io.PauseExecutionRequest(execution_id="wex-slow",
                                                       reason="maintenance"), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:  # paused already
            runner.pauseExecution(io.PauseExecutionRequest(execution_id="wex-slow"),
                                  timeout=10)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        time.sleep(1.2)  # twice the nap: a pause inside `wait` holds the rest of it
        assert _tasks(statuses.of("wex-slow")[-1], pb)["/do/2/after"] == "WORKFLOW_TASK_PENDING"
        runner.resumeExecution(io.ResumeExecutionRequest(execution_id="wex-slow"), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:  # running again: nothing to resume
            runner.resumeExecution(io.ResumeExecutionRequest(execution_id="wex-slow"),
                                   timeout=10)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot resume execution in status: running" in caught.value.details()
        statuses.wait("wex-slow", lambda status: _tasks(status, pb)["/do/3/long"] ==
                      "WORKFLOW_TASK_IN_PROGRESS")
        runner.cancelExecution(io.CancelExecutionRequest(execution_id="wex-slow",
                                                         reason="no longer needed"),
                               timeout=10)
        final = statuses.wait("wex-slow", lambda status: status.phase >= _phase(
            pb, "EXECUTION_COMPLETED"), timeout=10)
        assert final.phase == _phase(pb, "EXECUTION_CANCELLED")
        assert _tasks(final, pb)["/do/2/after"] == "WORKFLOW_TASK_COMPLETED"
        assert _tasks(final, pb)["/do/3/long"] == "WORKFLOW_TASK_FAILED"
        phases = [status.phase for status in statuses.of("wex-slow")]
        assert phases == sorted(phases)  # in order, though the first calls were refused
        runner.cancelExecution(io.CancelExecutionRequest(execution_id="wex-slow"),
                               timeout=10)  # again: still OK


def test_status_updates_travel_over_tls_by_default(stigmer_stubs: dict[str, ModuleType],
                                                   tmp_path: Path) -> None:
    """As Stigmer's runner: TLS unless STIGMER_SERVICE_USE_TLS=false; here the endpoint's
    certificate is vouched for by --stigmer-ca."""
    from tests.service.test_operations import _certificate

    io, pb = stigmer_stubs["io_pb2"], stigmer_stubs["execution_enum_pb2"]
    cert, key = _certificate(tmp_path)
    with status_endpoint(stigmer_stubs, tls=(cert, key)) as (statuses, port), \
            stigmer(stigmer_stubs, port, "--stigmer-ca", cert,
                    STIGMER_SERVICE_USE_TLS="") as (runner, _served):
        runner.executeAsync(io.WorkflowExecuteInput(
            workflow_execution_id="wex-tls", workflow_yaml=(
                "document: {dsl: '1.0.0', namespace: t, name: tls, version: '1.0.0'}\n"
                "do:\n  - first: {set: {a: 1}}\n")), timeout=10)
        final = statuses.wait("wex-tls", lambda status: status.phase >= _phase(
            pb, "EXECUTION_COMPLETED"))
        assert final.phase == _phase(pb, "EXECUTION_COMPLETED")
        assert dict(final.output) == {"a": 1}


def test_a_killed_runner_s_stigmer_execution_reports_on_after_it_restarts(
        stigmer_stubs: dict[str, ModuleType], tmp_path: Path) -> None:
    io, pb = stigmer_stubs["io_pb2"], stigmer_stubs["execution_enum_pb2"]
    state = ("--state", f"sqlite:///{tmp_path / 'runner.db'}")
    with status_endpoint(stigmer_stubs) as (statuses, port):
        with stigmer(stigmer_stubs, port, *state) as (runner, served):
            runner.executeAsync(io.WorkflowExecuteInput(
                workflow_execution_id="wex-durable", workflow_yaml=SLOW.replace(
                    "  - long: {wait: {seconds: 60}}\n", "")), timeout=10)
            statuses.wait("wex-durable", lambda status: _tasks(status, pb)["/do/1/nap"] ==
                          "WORKFLOW_TASK_IN_PROGRESS")
            served.process.send_signal(signal.SIGKILL)
            served.process.wait(10)
        with stigmer(stigmer_stubs, port, *state):
            final = statuses.wait("wex-durable", lambda status: status.phase >= _phase(
                pb, "EXECUTION_COMPLETED"))
    assert final.phase == _phase(pb, "EXECUTION_COMPLETED")
    assert _tasks(final, pb) == {"/do/0/before": "WORKFLOW_TASK_COMPLETED",
                                 "/do/1/nap": "WORKFLOW_TASK_COMPLETED",
                                 "/do/2/after": "WORKFLOW_TASK_COMPLETED"}
    assert dict(final.output) == {"step": 2}
