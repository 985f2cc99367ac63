"""Runs the OpenHands agent headless on one task, for AgentHub: the OpenHands SDK's Agent with
its terminal and file_editor tools (and the built-in finish and think), in a Conversation on the
current directory (/workspace in the image).

    python3 driver.py TASK_FILE

Environment: LLM_MODEL (a LiteLLM model name: `openai/<model>` for an OpenAI-compatible server),
LLM_BASE_URL, LLM_API_KEY, and any other LLM_<field> of the SDK's LLM (LLM_NUM_RETRIES,
LLM_TIMEOUT, LLM_API_MODE=chat, ...); OPENHANDS_MAX_ITERATIONS (default 100).

Stdout gets one JSON object a line for each event of the conversation, and nothing else: the
SDK's logs and whatever else writes to stdout (LiteLLM does) go to stderr. Each line is

    {"type": <the SDK's event class>, "source": "agent" | "user" | "environment", ...}

with these keys where they apply:

    text         MessageEvent: the message; ActionEvent: the agent's thought before the call,
                 if any; AgentErrorEvent, ConversationErrorEvent: the error
    tool_name    ActionEvent, ObservationEvent, AgentErrorEvent
    action       ActionEvent: the call's arguments as the tool parsed them (`kind`: the action
                 class); the raw arguments when they did not parse
    observation  ObservationEvent: the tool's result, as text
    exit_code    ObservationEvent of the terminal: the command's exit code (not a failed call)
    is_error     ObservationEvent, AgentErrorEvent, ConversationErrorEvent: true if it failed

Other events (SystemPromptEvent, ConversationStateUpdateEvent, ...) carry type and source only.
The last line is {"type": "Result", "source": "driver", "status": <the conversation's execution
status>, "failed_tool_calls": n, "input_tokens": n, "output_tokens": n, "cache_tokens": n,
"cost_usd": x}.

Exit status: 0 when the agent finished and no tool call failed; 1 when the conversation did not
finish (an error, the model unreachable, stuck, out of iterations); 3 when it finished but a tool
call failed (OpenHands itself exits 0 then); 2 for bad usage.
"""

import json
import os
import sys

from openhands.sdk import LLM, Agent, Conversation, Event, TextContent, Tool
from openhands.sdk.context.condenser import default_condenser
from openhands.sdk.conversation import ConversationExecutionStatus
from openhands.sdk.event import ActionEvent, AgentErrorEvent, MessageEvent, ObservationEvent
from openhands.sdk.event.conversation_error import ConversationErrorEvent
from openhands.tools.file_editor import FileEditorTool
from openhands.tools.terminal import TerminalTool


def _text(contents) -> str:
    return "".join(c.text for c in contents if isinstance(c, TextContent))


def describe(event: Event) -> dict:
    line = {"type": type(event).__name__, "source": event.source}
    if isinstance(event, MessageEvent):
        line["text"] = _text(event.llm_message.content)
    elif isinstance(event, ActionEvent):
        line["tool_name"] = event.tool_name
        if event.action is not None:
            line["action"] = event.action.model_dump(mode="json", exclude_none=True)
        else:
            line["action"] = {"arguments": event.tool_call.arguments}
        if thought := _text(event.thought):
            line["text"] = thought
    elif isinstance(event, ObservationEvent):
        line["tool_name"] = event.tool_name
        line["observation"] = event.observation.text
        line["is_error"] = event.observation.is_error
        if (exit_code := getattr(event.observation, "exit_code", None)) is not None:
            line["exit_code"] = exit_code
    elif isinstance(event, AgentErrorEvent):
        line.update(tool_name=event.tool_name, text=event.error, is_error=True)
    elif isinstance(event, ConversationErrorEvent):
        line.update(text=f"{event.code}: {event.detail}", is_error=True)
    return line


def main(argv: list[str]) -> int:
    if len(argv) != 2 or "LLM_MODEL" not in os.environ:
        print(f"usage: LLM_MODEL=... {argv[0]} TASK_FILE", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        task = f.read()

    # Our JSON lines keep the real stdout; everything else written to fd 1 goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)

    failed = 0

    def on_event(event: Event) -> None:
        nonlocal failed
        line = describe(event)
        if line.get("is_error") and "tool_name" in line:
            failed += 1
        out.write(json.dumps(line, ensure_ascii=False) + "\n")

    llm = LLM.load_from_env()
    agent = Agent(
        llm=llm,
        tools=[Tool(name=TerminalTool.name), Tool(name=FileEditorTool.name)],
        condenser=default_condenser(llm.model_copy(update={"usage_id": "condenser"})),
    )
    conversation = Conversation(
        agent=agent,
        workspace=os.getcwd(),
        callbacks=[on_event],
        visualizer=None,
        max_iteration_per_run=int(os.environ.get("OPENHANDS_MAX_ITERATIONS", "100")),
    )
    conversation.send_message(task)
    try:
        conversation.run()
    except Exception as exc:  # the SDK has emitted a ConversationErrorEvent already
        print(f"openhands: the conversation failed: {exc}", file=sys.stderr)
    status = conversation.state.execution_status
    metrics = conversation.conversation_stats.get_combined_metrics()
    usage = metrics.accumulated_token_usage
    result = {
        "type": "Result",
        "source": "driver",
        "status": status.value,
        "failed_tool_calls": failed,
        "input_tokens": usage.prompt_tokens if usage else 0,
        "output_tokens": usage.completion_tokens if usage else 0,
        "cache_tokens": usage.cache_read_tokens if usage else 0,
        "cost_usd": metrics.accumulated_cost,
    }
    out.write(json.dumps(result) + "\n")
    conversation.close()
    if status != ConversationExecutionStatus.FINISHED:
        return 1
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
