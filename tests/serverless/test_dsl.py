"""Serverless Workflow DSL 1.x: the behaviours of the conformance kit's scenarios for set,
do, switch, for, raise, data flow and flow (written anew), and the definition checks."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from actorstage import ActorSystem
from actorstage.serverless import (
    Cancelled,
    DefinitionError,
    Run,
    WorkflowError,
    execute,
    parse_definition,
)

pytestmark = pytest.mark.anyio

HEAD = "document: {dsl: '1.0.3', namespace: default, name: test, version: '1.0.0'}\n"


async def run(body: str, data: Any = None) -> Any:
    return await execute(parse_definition(HEAD + body), data)


async def test_set_evaluates_its_expressions_on_the_input() -> None:
    out = await run("""
do:
  - setShape:
      set:
        shape: circle
        size: ${ .configuration.size }
        fill: ${ .configuration.fill }
""", {"configuration": {"size": {"width": 6}, "fill": {"red": 69}}})
    assert out == {"shape": "circle", "size": {"width": 6}, "fill": {"red": 69}}


async def test_for_iterates_feeding_each_iteration_the_last_ones_output() -> None:
    out = await run("""
do:
  - loopColors:
      for: {each: color, in: '.colors'}
      do:
        - markProcessed:
            set:
              processed: '${ { colors: (.processed.colors + [ $color ]),
                               indexes: (.processed.indexes + [ $index ]) } }'
""", {"colors": ["red", "green", "blue"]})
    assert out == {"processed": {"colors": ["red", "green", "blue"], "indexes": [0, 1, 2]}}
    stopped = await run("""
do:
  - count:
      for: {each: n, in: '.numbers', at: i}
      while: '(.total // 0) < 3'
      do:
        - add: {set: {total: '${ (.total // 0) + $n }', last: '${ $i }'}}
""", {"numbers": [1, 1, 1, 1, 1]})
    assert stopped == {"total": 3, "last": 2}


SWITCH = """
do:
  - switchColor:
      switch:
        - red: {when: '.color == "red"', then: setRed}
        - green: {when: '.color == "green"', then: setGreen}
        - fallback: {then: setBlue}
  - setRed: {set: {colors: '${ .colors + [ "red" ] }'}, then: end}
  - setGreen: {set: {colors: '${ .colors + [ "green" ] }'}, then: end}
  - setBlue: {set: {colors: '${ .colors + [ "blue" ] }'}, then: end}
"""


async def test_switch_takes_the_first_matching_case_or_the_default() -> None:
    assert await run(SWITCH, {"color": "red"}) == {"colors": ["red"]}
    assert await run(SWITCH, {"color": "green"}) == {"colors": ["green"]}
    assert await run(SWITCH, {"color": "mauve"}) == {"colors": ["blue"]}
    no_default = SWITCH.replace("        - fallback: {then: setBlue}\n", "").replace(
        "then: setGreen}\n", "then: setGreen}\n      then: end\n", 1)
    assert await run(no_default, {"color": "mauve"}) == {"color": "mauve"}  # no case: on


async def test_then_orders_the_flow_and_events_name_tasks_by_pointer() -> None:
    definition = parse_definition(HEAD + """
do:
  - setRed: {set: {colors: '${ .colors + [ "red" ] }'}, then: setGreen}
  - setBlue: {set: {colors: '${ .colors + [ "blue" ] }'}, then: end}
  - setGreen: {set: {colors: '${ .colors + [ "green" ] }'}, then: setBlue}
  - never: {set: {colors: []}}
""")
    state = Run(definition, {})
    assert await execute(definition, system=None, run=state) == {
        "colors": ["red", "green", "blue"]}
    assert [where for event, where in state.events if event == "task_started"] == [
        "/do/0/setRed", "/do/2/setGreen", "/do/1/setBlue"]


async def test_exit_leaves_the_enclosing_do_and_the_flow_goes_on_after_it() -> None:
    out = await run("""
do:
  - inner:
      do:
        - first: {set: {steps: [1]}, then: exit}
        - skipped: {set: {steps: [0]}}
  - after: {set: {steps: '${ .steps + [2] }'}}
""")
    assert out == {"steps": [1, 2]}


async def test_data_flow_filters_inputs_outputs_and_exports_to_the_context() -> None:
    out = await run("""
input: {from: '.user'}
do:
  - setPlayerId:
      input: {from: .claims.subject}
      set: {playerId: '${ . }'}
      export: {as: '$context + { player: .playerId }'}
  - pair:
      set: {id: 2}
      output: {as: '{ ids: [ $input.playerId, .id ], player: $context.player }'}
  - skipped:
      if: '.ids | length > 5'
      set: {never: true}
output: {as: '{ result: . }'}
""", {"user": {"claims": {"subject": "6AsnRg"}}})
    assert out == {"result": {"ids": ["6AsnRg", 2], "player": "6AsnRg"}}


async def test_raise_faults_with_the_dsl_error_and_the_tasks_pointer() -> None:
    with pytest.raises(WorkflowError) as caught:
        await run("""
do:
  - raiseError:
      raise:
        error:
          status: 400
          type: https://serverlessworkflow.io/errors/types/compliance
          title: Compliance Error
""")
    assert caught.value.error == {
        "status": 400, "type": "https://serverlessworkflow.io/errors/types/compliance",
        "title": "Compliance Error", "instance": "/do/0/raiseError"}
    with pytest.raises(WorkflowError) as caught:
        await run("""
use:
  errors:
    notFound: {type: 'https://example.com/not-found', status: 404, detail: '${ .id }'}
do:
  - check: {do: [{fail: {raise: {error: notFound}}}]}
""", {"id": "x1"})
    assert caught.value.error == {"type": "https://example.com/not-found", "status": 404,
                                  "detail": "x1", "instance": "/do/0/check/do/0/fail"}


async def test_a_bad_expression_names_the_task_and_the_expression() -> None:
    with pytest.raises(WorkflowError) as caught:
        await run("do:\n  - broken: {set: {x: '${ .a.b.c + }'}}\n")
    assert caught.value.error["type"].endswith("/errors/expression")
    assert "task 'broken'" in caught.value.error["detail"]
    assert ".a.b.c +" in caught.value.error["detail"]
    with pytest.raises(WorkflowError, match="Cannot index number"):
        await run("do:\n  - typed: {set: {x: '${ .a.b }'}}\n", {"a": 1})


async def test_every_problem_of_a_definition_is_reported_at_once_with_its_pointer() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition("""
document: {dsl: '2.0', namespace: Bad_Name, name: x}
do:
  - a: {set: {x: 1}, then: nowhere}
  - a: {set: {x: 2}}
  - b: {set: {x: 1}, wait: PT1S}
  - c: {call: asyncapi, with: {method: get}}
  - g: {call: http, with: {method: fetch}}
  - d: {wait: 'one minute'}
  - e: {for: {each: x}, do: []}
  - f: {raise: {error: {title: no type}}}
  - h: {run: {container: {image: alpine}}}
  - i: {run: {script: {language: ruby, code: puts}, return: everything}}
  - j: {listen: {to: {some: []}}}
  - k: {emit: {event: {with: {type: x}}}}
  - l: {set: {x: 1}, output: {schema: {format: json, document: {type: 12}}}}
""")
    found = dict(caught.value.problems)
    assert "DSL 1.x" in found["/document/dsl"]
    assert "/document/version" in found and "/document/namespace" in found
    assert "nowhere" in found["/do/0/a/then"]
    assert "a second task named 'a'" in found["/do/1/a"]
    assert "set, wait" in found["/do/2/b"]
    assert "it calls grpc, http, openapi" in found["/do/3/c/call"]
    assert "/do/4/g/with/endpoint" in found
    assert "ISO 8601" in found["/do/5/d/wait"]
    assert "/do/6/e/for/in" in found and "/do/6/e/do" in found
    assert "/do/7/f/raise/error/type" in found and "/do/7/f/raise/error/status" in found
    assert "run: container is not supported" in found["/do/8/h/run/container"]
    assert "python or js" in found["/do/9/i/run/script/language"]
    assert "/do/9/i/run/return" in found
    assert "all, any or one" in found["/do/10/j/listen/to"]
    assert "/do/11/k/emit/event/with/source" in found
    assert "not a valid JSON Schema" in found["/do/12/l/output/schema/document"]


async def test_wait_takes_durations_and_pause_holds_it_and_cancel_ends_it() -> None:
    definition = parse_definition(HEAD + """
do:
  - nap: {wait: {milliseconds: 300}}
  - done: {set: {slept: true}}
""")
    async with ActorSystem() as system:
        state = Run(definition, {})
        began = time.monotonic()
        task = asyncio.ensure_future(execute(definition, system=system, run=state))
        await asyncio.sleep(0.1)
        state.control.pause()
        await asyncio.sleep(0.4)
        assert not task.done()  # paused inside the wait
        state.control.resume()
        assert await task == {"slept": True}
        assert time.monotonic() - began >= 0.55  # the wait did not run on while paused
        cancelled = Run(definition, {})
        task = asyncio.ensure_future(execute(definition, system=system, run=cancelled))
        await asyncio.sleep(0.1)
        cancelled.control.cancel()
        with pytest.raises(Cancelled, match="was cancelled"):
            await task
    assert ("task_started", "/do/1/done") not in cancelled.events
    assert parse_definition(HEAD + "do:\n  - w: {wait: PT1M30S}\n")  # ISO 8601 reads


FLAKY = """
use:
  errors:
    unavailable: {type: 'https://example.com/unavailable', status: 503}
do:
  - attempt:
      try:
        - count: {set: {tries: '${ ($context.tries // 0) + 1 }'},
                  export: {as: '{ tries: .tries }'}}
        - failUntil:
            if: '$context.tries < 3'
            raise: {error: unavailable}
        - done: {set: {tries: '${ $context.tries }', ok: true}}
      catch:
        errors: {with: {status: 503}}
        RETRY
"""


async def test_try_retries_a_caught_error_by_its_policy_then_succeeds() -> None:
    out = await run(FLAKY.replace("RETRY", "retry: {delay: {milliseconds: 10}, "
                                  "backoff: {exponential: {}}, limit: {attempt: {count: 5}}}"))
    assert out == {"tries": 3, "ok": True}


async def test_a_caught_error_goes_to_catch_do_under_its_name_when_retries_run_out() -> None:
    out = await run(FLAKY.replace("RETRY", """retry: {limit: {attempt: {count: 1}}}
        as: err
        do:
          - handled: {set: {status: '${ $err.status }', where: '${ $err.instance }'}}"""))
    assert out == {"status": 503, "where": "/do/0/attempt/try/1/failUntil"}
    swallowed = await run("""
do:
  - quiet:
      try: [{boom: {raise: {error: {type: 'https://example.com/x', status: 500}}}}]
      catch: {}
""", {"kept": 1})
    assert swallowed == {"kept": 1}  # caught, no do: the task's output is its input


async def test_an_error_the_filter_does_not_match_faults_the_workflow() -> None:
    with pytest.raises(WorkflowError) as caught:
        await run(FLAKY.replace("RETRY", "").replace("status: 503}}", "status: 404}}", 1))
    assert caught.value.error["status"] == 503
    with pytest.raises(WorkflowError):  # `exceptWhen` holds: not caught
        await run(FLAKY.replace("RETRY", "exceptWhen: '$error.status == 503'"))


async def test_fork_runs_branches_as_concurrent_actors_or_lets_them_compete() -> None:
    both = await run("""
do:
  - branch:
      fork:
        branches:
          - slow: {do: [{nap: {wait: {milliseconds: 200}}}, {red: {set: {c: red}}}]}
          - fast: {set: {c: green}}
""")
    assert both == [{"c": "red"}, {"c": "green"}]  # in the order declared
    began = time.monotonic()
    won = await run("""
do:
  - race:
      fork:
        compete: true
        branches:
          - slow: {do: [{nap: {wait: PT30S}}, {late: {set: {c: slow}}}]}
          - fast: {set: {c: fast}}
""")
    assert won == {"c": "fast"} and time.monotonic() - began < 10  # the slow one stopped
    with pytest.raises(WorkflowError, match="status 418"):
        await run("""
do:
  - branch:
      fork:
        branches:
          - ok: {set: {c: 1}}
          - teapot: {raise: {error: {type: 'https://example.com/teapot', status: 418}}}
""")


async def test_schemas_check_inputs_outputs_and_exports_with_every_problem() -> None:
    schema = "{format: json, document: {type: object, required: [order], " \
             "properties: {order: {type: integer, minimum: 1}}}}"
    body = f"""
input: {{schema: {schema}}}
do:
  - checked:
      input: {{schema: {schema}}}
      set: {{order: '${{ .order + 1 }}', lines: '${{ .lines }}'}}
      output:
        as: '{{order: .order, count: (.lines | length)}}'
        schema: {{format: json, document: {{type: object, properties: {{count: {{maximum: 2}}}}}}}}
      export:
        as: '{{last: .order}}'
        schema: {{format: json, document: {{required: [last]}}}}
"""
    assert await run(body, {"order": 1, "lines": [1, 2]}) == {"order": 2, "count": 2}
    with pytest.raises(WorkflowError) as caught:
        await run(body, {"order": 0})
    error = caught.value.error
    assert error["type"].endswith("/errors/validation") and error["status"] == 400
    assert error["instance"] == "/" and "/order: 0 is less than the minimum of 1" in \
        error["detail"]
    with pytest.raises(WorkflowError, match="count: 3 is greater than the maximum of 2") as \
            caught:
        await run(body, {"order": 1, "lines": [1, 2, 3]})
    assert caught.value.error["instance"] == "/do/0/checked"


async def test_run_shell_and_script_only_where_the_runner_allows_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from actorstage.serverless._process import RUN_ENV

    shell = """
do:
  - greet:
      input: {from: '${ .message }'}
      run:
        shell:
          stdin: '${ . }'
          command: 'input=$(cat); echo "STDIN was: $input"; echo "ARGS are $1 $2" >&2; exit 3'
          arguments: [Foo, Bar]
          environment: {GREETING: hi}
        return: all
"""
    monkeypatch.delenv(RUN_ENV, raising=False)
    with pytest.raises(WorkflowError, match="--allow-run shell") as caught:
        await run(shell, {"message": "Hello World"})
    assert caught.value.error["type"].endswith("/errors/authorization")
    monkeypatch.setenv(RUN_ENV, "shell,script")
    assert await run(shell, {"message": "Hello World"}) == {
        "code": 3, "stdout": "STDIN was: Hello World\n", "stderr": "ARGS are Foo Bar\n"}
    with pytest.raises(WorkflowError, match="exited with code 3") as caught:
        await run(shell.replace("return: all", "return: stdout"), {"message": "x"})
    assert caught.value.error["type"].endswith("/errors/runtime")
    source = tmp_path / "script.py"
    source.write_text("import os, sys\nprint(os.environ['GREETING'], *sys.argv[1:])\n")
    assert await run(f"""
do:
  - py:
      run:
        script: {{language: python, source: {{endpoint: "file://{source}"}},
                 arguments: ['${{ .who }}'], environment: {{GREETING: hello}}}}
  - code:
      run:
        script: {{language: python, code: 'import sys; sys.exit(int(sys.argv[1]))',
                 arguments: ['4']}}
        return: code
      output: {{as: '{{said: $input, code: .}}'}}
""", {"who": "Ada"}) == {"said": "hello Ada\n", "code": 4}


async def test_a_cancel_kills_the_process_a_task_runs(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    from actorstage.serverless._process import RUN_ENV

    monkeypatch.setenv(RUN_ENV, "shell")
    marker = tmp_path / "pid"
    definition = parse_definition(HEAD + f"""
do:
  - sleepy: {{run: {{shell: {{command: 'echo $$ > {marker}; exec sleep 60'}}}}}}
""")
    state = Run(definition, {})
    task = asyncio.ensure_future(execute(definition, run=state))
    for _ in range(1000):  # (the shell writes its pid first)
        if marker.exists() and marker.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = int(marker.read_text())
    state.control.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(task, 5)
    for _ in range(100):  # the process we started is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"process {pid} outlived the cancel")


async def test_unknown_workflow_properties_and_uses_are_problems() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(HEAD + """
use: {secrets: API_KEY, retry: {}}
states: []
do:
  - a: {set: {x: 1}}
""")
    found = dict(caught.value.problems)
    assert "a list of secret names" in found["/use/secrets"]
    assert "/use/retry" in found and "unknown property of a workflow" in found["/states"]


async def test_loop_variables_are_also_under_data_as_stigmer_workflows_use_them() -> None:
    assert await run("""
do:
  - loop:
      for: {each: item, in: .items}
      do:
        - keep: {set: {seen: '${ [.seen[], $data.item] }'}}
""", {"items": [1, 2], "seen": []}) == {"seen": [1, 2]}


async def test_plain_paths_read_as_jq_reads_them() -> None:
    """Plain paths (`.a.b`, `$x.y`) are read without jq: the same results and errors."""
    import jq

    from actorstage.serverless._expressions import ExpressionError, _path, evaluate

    data = {"a": {"b": [1, 2]}, "n": 5, "s": "text", "z": None}
    arguments = {"x": {"y": {"z": True}}, "input": data}
    for text in (".", ".a", ".a.b", ".missing.deeper", ".z.k", "$x", "$x.y.z", "$input.a",
                 ".n.b", ".s.b", ".a.b.c"):
        assert _path(text) is not None, text
        program = jq.compile("".join(f".v.{name} as ${name} | " for name in sorted(arguments))
                             + f".d | ({text})")
        expected: Any
        try:
            expected = program.input_value({"v": arguments, "d": data}).first()
        except ValueError as exc:
            expected = ExpressionError(text, str(exc))
        try:
            found: Any = evaluate(text, data, arguments)
        except ExpressionError as exc:
            found = exc
        if isinstance(expected, ExpressionError):
            assert isinstance(found, ExpressionError) and found.problem == expected.problem
        else:
            assert found == expected, text
    for text in (".a[0]", ". | length", "$x + 1", ".a .b", "..", ".a?"):
        assert _path(text) is None, text
