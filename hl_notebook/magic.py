"""The ``%%hlchat`` cell magic and ``%hlchat_history`` line magic.

Why: the notebook front end. It only adapts: options -> ChatCommand -> run -> frame -> history;
all logic lives in command/grid/spec/sweep/frame so the panel and the Python API share it.
"""
from __future__ import annotations

import re
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .errors import HLError, HLUsageError, did_you_mean

OPTION_NAMES: list[str] = []  # filled below from the parser, for did-you-mean



@magics_class
class HLChatMagics(Magics):
    """Chat magics; registered by ``%load_ext hl_notebook``."""

    @no_var_expand
    @magic_arguments()
    @argument("--endpoint", help="Endpoint: chat, deployed, experiment or model-config. "
              "Usually implied by the options below.")
    @argument("--model", help="Model name for /chat; a comma list sweeps several models.")
    @argument("--provider", help="Provider of the inline config (mock, openai, anthropic, …); comma list sweeps.")
    @argument("--temperature", help="Sampling temperature; a comma list such as 0,0.7 sweeps.")
    @argument("--max-tokens", dest="max_tokens", help="Largest number of tokens to generate; comma list sweeps.")
    @argument("--top-p", dest="top_p", help="Nucleus sampling probability; comma list sweeps.")
    @argument("--stop", action="append", help="A stop sequence; repeat the option for several.")
    @argument("--presence-penalty", dest="presence_penalty", help="Presence penalty, -2 to 2; comma list sweeps.")
    @argument("--frequency-penalty", dest="frequency_penalty", help="Frequency penalty, -2 to 2; comma list sweeps.")
    @argument("--seed", help="Seed for best-effort determinism; comma list sweeps.")
    @argument("--model-config-id", dest="model_config_id",
              help="Registered config id(s) for /chat-model-config; comma list sweeps.")
    @argument("--experiment-id", dest="experiment_id", help="Experiment id(s) for /chat-experiment.")
    @argument("--deployed", action="store_true", help="Use the project's deployed config (/chat-deployed).")
    @argument("--environment", help="Environment name for /chat-deployed (default: the default environment).")
    @argument("--project", help="Project name (created on first use); default HLSettings.project.")
    @argument("-n", "--num-samples", dest="num_samples", type=int, default=1,
              help="Samples per request; each becomes a row.")
    @argument("--stream", action="store_true", help="Show tokens as they arrive, then the table.")
    @argument("--inputs", metavar="VAR", help="A dict, list of dicts or DataFrame of template values; "
              "one request per row. Names not given come from notebook variables of the same name.")
    @argument("--configs", metavar="VAR", help="A list of config dicts or a DataFrame of configs to sweep.")
    @argument("--metadata", metavar="VAR", help="A dict recorded with each log.")
    @argument("--session-id", dest="session_id", help="Attach the logs to this session id (sesh_…).")
    @argument("--no-save", dest="no_save", action="store_true",
              help="Ask the server not to store inputs, messages and outputs.")
    @argument("--concurrency", type=int, default=None, help="Parallel requests for sweeps (default HLSettings).")
    @argument("--cache", action="store_true",
              help="Answer identical requests from the local response cache (see HLSettings.cache).")
    @argument("--base-url", dest="base_url", metavar="URL",
              help="A v4 server for this cell (key from HLSettings.api_key_env); default: HLSettings.base_url, "
                   "then $HUMANLOOP_BASE_URL, then the embedded local server.")
    @argument("-o", "--out", metavar="NAME", help="Also assign the DataFrame to this notebook variable.")
    @cell_magic
    def hlchat(self, line: str, cell: str) -> Any:
        """Send the cell's chat messages to a Humanloop v4 endpoint; return the responses as a DataFrame.

        The cell holds role blocks: a line ``system:``, ``user:``, ``assistant:`` or ``tool:`` starts
        a message and the lines below continue it (text before the first role is a user message).
        A JSON list of message objects works too. ``{{name}}`` placeholders are filled from
        ``--inputs`` or from notebook variables of the same name. One row per returned sample.
        Options that take several values accept a comma list or ``{var}`` naming a notebook
        variable that holds a value or a list (``--model-config-id {config_ids}``).

        Examples
        --------
        ::

          In [1]: %%hlchat --model gpt-4o-mini --temperature 0.7 -n 2
             ...: system: You are terse.
             ...: user: Name a colour.

          In [2]: %%hlchat --model m1,m2 --temperature 0,1 --inputs rows --out df
             ...: user: Summarise {{text}}

          In [3]: %%hlchat --deployed --project support --environment staging
             ...: user: Where is my order?

          In [4]: %%hlchat --model-config-id config_abc --stream
             ...: user: Tell me a story.
        """
        from .runner import run_magic

        return run_magic(self.shell, parse_options(line), cell)

    @line_magic
    def hlchat_panel(self, line: str) -> Any:
        """Show the chat panel: the same calls and sweeps as %%hlchat, with controls."""
        from .panel_view import panel

        return panel(self.shell)

    @line_magic
    def hlchat_history(self, line: str) -> Any:
        """Show the DataFrame of every %%hlchat call of this session (``--all`` for every session)."""
        from .archive import history

        return history(all_sessions="--all" in line.split())


def parse_options(line: str) -> Any:
    """The magic line -> argparse namespace; any mistake is a one-line HLUsageError."""
    try:
        return parse_argstring(HLChatMagics.hlchat, line)
    except (UsageError, ValueError) as exc:  # ValueError: unbalanced quotes in the line
        raise _usage_error(str(exc)) from None


# MagicArgumentParser does not take allow_abbrev; argparse reads the attribute at parse time, so
# "--temp" is an unknown option (with a did-you-mean) rather than a silent prefix of "--temperature"
HLChatMagics.hlchat.parser.allow_abbrev = False  # type: ignore[attr-defined]


def _usage_error(message: str) -> HLUsageError:
    """argparse's message as one line, with a did-you-mean for unknown options."""
    unknown = re.search(r"unrecognized arguments: (\S+)", message)
    if unknown:
        option = unknown.group(1).split("=")[0]
        prefixed = [name for name in _option_names() if name.startswith(option)]
        hint = f"; did you mean {prefixed[0]}?" if len(prefixed) == 1 else did_you_mean(option, _option_names())
        return HLUsageError(f"unknown option {option}{hint}")
    return HLUsageError(message.replace("\n", " "))


def _option_names() -> list[str]:
    if not OPTION_NAMES:
        parser = HLChatMagics.hlchat.parser  # type: ignore[attr-defined]
        OPTION_NAMES.extend(o for action in parser._actions for o in action.option_strings)
    return OPTION_NAMES


def show_error(exc: HLError) -> None:
    """Print an error the way IPython would render it (used where we must not raise)."""
    print("\n".join(exc._render_traceback_()), file=sys.stderr)
