"""Front end for notebooks: the ``%%hlchat``/``%%hlchat_judge`` cell magics and the ``%hlchat_history``/``%hlchat_panel`` line magics.

Why: the whole notebook adapter lives here and only adapts: options + cell -> ``plan.make_specs`` ->
``pool.run_specs`` -> ``Run.result``. Importing it loads IPython only; the server, requests and
pandas are imported when a cell actually runs, so a bad cell is rejected cheaply.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .errors import HLUsageError, did_you_mean
from .spec import PARAMETERS, ChatSpec


def parameter_arguments() -> Callable[[Any], Any]:
    """One option per model-config parameter, from ``spec.PARAMETERS`` (in its order)."""
    def decorate(func: Any) -> Any:
        for parameter in reversed(PARAMETERS):  # decorators are listed in reverse (magic_arguments)
            extra = {"action": "append"} if not parameter.sweep else {}
            func = argument(parameter.option, dest=parameter.name, help=parameter.help, **extra)(func)
        return func
    return decorate


@magics_class
class HLChatMagics(Magics):
    """Chat magics; registered by ``%load_ext hl_notebook``."""

    @no_var_expand
    @magic_arguments()
    @argument("--endpoint", help="Endpoint: chat, deployed, experiment or model-config. "
              "Usually implied by the options below.")
    @parameter_arguments()
    @argument("--other", metavar="VAR", help="A dict of provider-specific extras for the inline config "
              "(model_config.other), e.g. {'base_url': 'http://127.0.0.1:8080/v1'}.")
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
    @argument("--baseline", metavar="NAME", help="A result frame in the notebook to diff against when the run "
              "finishes: rows matched by input and sample, outputs side by side, score/cost/latency deltas "
              "(hl_notebook.diff). The new frame is still returned.")
    @cell_magic
    def hlchat(self, line: str, cell: str) -> Any:
        """Send the cell's chat messages to a Humanloop v4 endpoint; return the responses as a DataFrame.

        The cell holds role blocks: a line ``system:``, ``user:``, ``assistant:`` or ``tool:`` starts
        a message and the lines below continue it (text before the first role is a user message).
        A JSON list of message objects works too. ``{{name}}`` placeholders are filled from
        ``--inputs`` or from notebook variables of the same name. One row per returned sample.
        Options that take several values accept a comma list or ``{var}`` naming a notebook
        variable that holds a value or a list (``--model-config-id {config_ids}``). A value in
        quotes is a Python string literal (``--project "my project"``, ``--stop '\\n'``).

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

        Registered configs, experiments and deployments (for --model-config-id, --experiment-id and
        --deployed) are made with ``hl_notebook.register_config(model, temperature=…, project=…)``
        (returns the id), ``create_experiment([ids], name=…)``, ``deploy(config_id=… or
        experiment_id=…)``, and listed with ``list_configs(project)`` / ``list_experiments(project)``::

          In [5]: a = hl_notebook.register_config("m1", temperature=0, project="support")
             ...: b = hl_notebook.register_config("m2", temperature=0.7, project="support")

          In [6]: %%hlchat --model-config-id {a},{b} --project support
             ...: user: Where is my order?

          In [7]: %%hlchat --model m1 --inputs rows --baseline yesterday
             ...: user: Summarise {{text}}
        """
        return run_magic(self.shell, parse_options(line), cell)

    @no_var_expand
    @magic_arguments()
    @argument("frame", metavar="FRAME", help="The notebook variable holding the result frame to judge.")
    @argument("--name", default="judge", help="The score's name: columns score.NAME, score.NAME.reason "
              "(the judge's reply) and score.NAME.error (default: judge).")
    @parameter_arguments()
    @argument("--other", metavar="VAR", help="A dict of provider-specific extras for the judge's inline config.")
    @argument("--model-config-id", dest="model_config_id", help="A registered config id to judge with.")
    @argument("--deployed", action="store_true", help="Judge with the project's deployed config.")
    @argument("--environment", help="Environment name for --deployed.")
    @argument("--project", help="Project name for the judge's calls; default HLSettings.project.")
    @argument("--concurrency", type=int, default=None, help="Parallel judge calls (default HLSettings).")
    @argument("--cache", action="store_true", help="Answer identical judge calls from the local response cache.")
    @argument("--base-url", dest="base_url", metavar="URL", help="A v4 server for the judge's calls.")
    @argument("-o", "--out", metavar="NAME", help="Also assign the scored DataFrame to this notebook variable.")
    @cell_magic
    def hlchat_judge(self, line: str, cell: str) -> Any:
        """Judge every row of a result frame with a model; return the frame with a score column.

        The cell is the judge's prompt, in the format of ``%%hlchat``. ``{{output}}``, ``{{prompt}}``
        and each ``inputs.NAME`` column (as ``{{inputs.NAME}}`` or ``{{NAME}}``) are filled from the
        row; other names from notebook variables. One judge call per row with an output (failed
        rows are not sent), through the same pool as a sweep. The score is the number, or
        pass/fail (1/0), the reply ends with (also ``Score: X`` or ``[[X]]``); a reply without one
        gives NA and a note in ``score.NAME.error``. An inline config runs at temperature 0 unless
        ``--temperature`` is given.

        Examples
        --------
        ::

          In [1]: %%hlchat_judge df --model gpt-4o-mini --name relevance --out scored
             ...: system: You grade answers. End your reply with a score from 1 to 10.
             ...: user: Question: {{prompt}}
             ...: Answer: {{output}}

          In [2]: %%hlchat_judge scored --model gpt-4o-mini --name on_topic
             ...: user: Is "{{output}}" about {{topic}}? Reply pass or fail.
        """
        return run_judge_magic(self.shell, parse_options(line, HLChatMagics.hlchat_judge), cell)

    @line_magic
    def hlchat_panel(self, line: str) -> Any:
        """Show the chat panel: the same calls and sweeps as %%hlchat, with controls."""
        from .widget import panel

        return panel(self.shell)

    @line_magic
    def hlchat_history(self, line: str) -> Any:
        """Show the DataFrame of every %%hlchat call of this session (``--all`` for every session)."""
        from .archive import history

        words = line.split()
        unknown = [word for word in words if word != "--all"]
        if unknown:
            raise _usage_error(f"unrecognized arguments: {unknown[0]}", ["--all"])
        return history(all_sessions="--all" in words)


# MagicArgumentParser does not take allow_abbrev; argparse reads the attribute at parse time, so
# "--temp" is an unknown option (with a did-you-mean) rather than a silent prefix of "--temperature"
HLChatMagics.hlchat.parser.allow_abbrev = False  # type: ignore[attr-defined]
HLChatMagics.hlchat_judge.parser.allow_abbrev = False  # type: ignore[attr-defined]
OPTION_NAMES = [o for action in HLChatMagics.hlchat.parser._actions  # type: ignore[attr-defined]
                for o in action.option_strings]


def parse_options(line: str, magic: Any = HLChatMagics.hlchat) -> Any:
    """The magic line -> argparse namespace; any mistake is a one-line HLUsageError."""
    try:
        args = parse_argstring(magic, line)
    except (UsageError, ValueError) as exc:  # ValueError: unbalanced quotes in the line
        names = [o for action in magic.parser._actions for o in action.option_strings]
        raise _usage_error(str(exc), names) from None
    _unquote_options(args, magic)
    if args.out is not None and not args.out.isidentifier():
        raise HLUsageError(f"--out {args.out!r} is not a valid variable name")
    return args


def _unquote_options(args: Any, magic: Any) -> None:
    """Each option value in matching quotes as the text inside them (``plan.unquote``), but for the
    comma lists, whose items ``plan.parse_axis`` unquotes one by one (quotes keep a comma in one item)."""
    from .plan import AXIS_NAMES, unquote

    lists = {p.name for p in PARAMETERS if p.sweep}
    if magic is HLChatMagics.hlchat:
        lists.update(AXIS_NAMES)
    for action in magic.parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest in lists or not action.option_strings:
            continue
        option = action.option_strings[-1]
        if isinstance(value, str):
            setattr(args, action.dest, unquote(value, option))
        elif isinstance(value, list):
            setattr(args, action.dest, [unquote(v, option) if isinstance(v, str) else v for v in value])


def _usage_error(message: str, names: list[str] = OPTION_NAMES) -> HLUsageError:
    """argparse's message as one line, with a did-you-mean for unknown options."""
    unknown = re.search(r"unrecognized arguments: (\S+)", message)
    if unknown:
        option = unknown.group(1).split("=")[0]
        prefixed = [name for name in names if name.startswith(option)]
        hint = f"; did you mean {prefixed[0]}?" if len(prefixed) == 1 else did_you_mean(option, names)
        return HLUsageError(f"unknown option {option}{hint}")
    return HLUsageError(message.replace("\n", " "))


def magic_specs(args: Any, cell: str, namespace: Mapping[str, Any], default_provider: str | None) -> list[ChatSpec]:
    """Parsed ``%%hlchat`` options + cell body -> ChatSpecs. No network: every mistake found here
    is reported with nothing sent."""
    from .config import HLSettings
    from .parse import parse_cell
    from .plan import AXIS_NAMES, axis_values, make_specs

    messages = parse_cell(cell)
    return make_specs(
        messages, endpoint=args.endpoint,
        axes={n: axis_values(n, getattr(args, n), namespace) for n in AXIS_NAMES},
        configs=_variable(namespace, args.configs, "--configs"), inputs=_variable(namespace, args.inputs, "--inputs"),
        deployed=args.deployed, stop=(args.stop[0] if len(args.stop) == 1 else list(args.stop)) if args.stop else None,
        project=args.project or HLSettings.instance().project or None, num_samples=args.num_samples,
        stream=args.stream, save=not args.no_save, metadata=_variable(namespace, args.metadata, "--metadata"),
        session_id=args.session_id, default_provider=default_provider, namespace=namespace,
        other=_variable(namespace, args.other, "--other"))


def run_magic(shell: Any, args: Any, cell: str) -> Any:
    """``%%hlchat``: options + cell -> specs -> run -> frame (assigned to ``--out`` before any raise)."""
    from .connection import connect, default_provider
    from .display import StreamView
    from .pool import run_specs

    # plan before connecting: a bad cell never starts the embedded server
    specs = magic_specs(args, cell, shell.user_ns, default_provider(args.base_url))
    baseline = _frame_variable(shell.user_ns, args.baseline, "--baseline") if args.baseline else None
    if not specs:
        return _no_calls(shell, args)
    connection = connect(args.base_url)
    view = StreamView() if args.stream else None
    try:
        run = run_specs(specs, connection=connection, concurrency=args.concurrency,
                        on_delta=view.on_delta if view else None, tick=view.flush if view else None,
                        cache=args.cache or None)
    finally:
        if view:
            view.close()
    if args.out:
        shell.user_ns[args.out] = run.frame
    frame = run.result(kept_in=args.out)
    if baseline is not None:
        from IPython.display import display

        from .diffing import diff

        display(diff(baseline, frame))
    return frame


def _no_calls(shell: Any, args: Any) -> Any:
    """An ``--inputs`` or ``--configs`` without rows (a filter that matched nothing): the empty
    frame of the contract, and one line that says so; nothing is sent."""
    import sys

    from .frame import to_frame
    from .plan import rows_of

    empty = [option for option, name in (("--configs", args.configs), ("--inputs", args.inputs))
             if name is not None and not rows_of(shell.user_ns[name], option)]
    print(f"no calls: {' and '.join(empty) or 'the cell'} {'have' if len(empty) > 1 else 'has'} no rows; "
          "nothing was sent", file=sys.stderr)
    frame = to_frame([])
    if args.out:
        shell.user_ns[args.out] = frame
    return frame


def run_judge_magic(shell: Any, args: Any, cell: str) -> Any:
    """``%%hlchat_judge``: frame + options + judge prompt -> ``judging.run_judge`` -> scored frame
    (assigned to ``--out`` before an interrupt is raised; one line on stderr when judge calls failed)."""
    import sys

    from .errors import HLInterrupted
    from .judging import run_judge
    from .plan import SELECTORS, axis_values

    frame = _frame_variable(shell.user_ns, args.frame, "FRAME")
    options: dict[str, Any] = {}
    for parameter in PARAMETERS:
        values = getattr(args, parameter.name)
        if parameter.name != "stop":
            values = axis_values(parameter.name, values, shell.user_ns)
        if values and len(values) > 1 and parameter.name != "stop":
            raise HLUsageError(f"{parameter.option}: a judge takes one value, not {len(values)}")
        if values:
            options[parameter.name] = values[0] if parameter.name != "stop" or len(values) == 1 else list(values)
    options.update({name: getattr(args, name, None) for name in SELECTORS if getattr(args, name, None)})
    scored, run = run_judge(frame, cell, args.name, deployed=args.deployed, project=args.project,
                            other=_variable(shell.user_ns, args.other, "--other"), base_url=args.base_url,
                            concurrency=args.concurrency, cache=args.cache or None, namespace=shell.user_ns,
                            **options)
    if args.out:
        shell.user_ns[args.out] = scored
    if run is not None:
        if run.interrupted and run.cancelled:
            raise HLInterrupted(run.summary() + (f"; rows so far are in {args.out}" if args.out else ""))
        text, problem = run.status()
        if problem:
            print(f"judge: {text}", file=sys.stderr)
    return scored


def _frame_variable(namespace: Mapping[str, Any], name: str, option: str) -> Any:
    """A notebook variable that must hold a result frame (a DataFrame with an ``output`` column)."""
    value = _variable(namespace, name, option)
    if not hasattr(value, "columns") or "output" not in value.columns:
        raise HLUsageError(f"{option} {name!r} is not a result frame (a DataFrame with an output column)")
    return value


def _variable(namespace: Mapping[str, Any], name: str | None, option: str) -> Any:
    if name is None:
        return None
    if name not in namespace:
        raise HLUsageError(f"{option} {name!r} is not defined in the notebook")
    return namespace[name]
