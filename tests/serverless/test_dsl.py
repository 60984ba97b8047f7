"""Serverless Workflow DSL 1.x: the behaviours of the conformance kit's scenarios for set,
do, switch, for, raise, data flow and flow (written anew), and the definition checks."""

from __future__ import annotations

import asyncio
import time
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
  - c: {call: grpc, with: {method: get}}
  - g: {call: http, with: {method: fetch}}
  - d: {wait: 'one minute'}
  - e: {for: {each: x}, do: []}
  - f: {raise: {error: {title: no type}}}
""")
    found = dict(caught.value.problems)
    assert "DSL 1.x" in found["/document/dsl"]
    assert "/document/version" in found and "/document/namespace" in found
    assert "nowhere" in found["/do/0/a/then"]
    assert "a second task named 'a'" in found["/do/1/a"]
    assert "set, wait" in found["/do/2/b"]
    assert "not supported by this runtime yet" in found["/do/3/c/call"]
    assert "/do/4/g/with/endpoint" in found
    assert "ISO 8601" in found["/do/5/d/wait"]
    assert "/do/6/e/for/in" in found and "/do/6/e/do" in found
    assert "/do/7/f/raise/error/type" in found and "/do/7/f/raise/error/status" in found


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
