"""Command line: ``python -m vibtools train`` runs the reference recipe and prints the reference's lines.

Every bad input is rejected before any work with one line on stderr and exit status 2, and nothing is written
or created. Ctrl-C (or SIGTERM) stops after saving the last finished epoch, prints one line and exits 130
(143 for SIGTERM); running the same command again resumes, and prints the stored epochs first, so its output
equals an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from .config import MAX_EPOCHS, check_int, check_number, user_path
from .interrupts import Terminated as _Terminated
from .interrupts import interruptible as _interruptible
from .interrupts import on_sigterm as _on_sigterm

PROG = "python -m vibtools"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):
        """One line, exit status 2, no usage dump."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parsed(name: str, cast: Callable, check: Callable, *bounds):
    """An argparse type: ``cast`` the text (int or float), then the package's own check of ``name`` (its message)."""

    def parse(text: str):
        """Parse one value."""
        try:
            value = cast(text)
        except ValueError:
            value = text  # not a number: the check rejects the text itself, saying what was wanted
        try:
            return check(name, value, *bounds)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _beta(text: str) -> float:
    """Parse --beta: a finite number >= 0."""
    return _parsed("beta", float, check_number)(text)


def _integer(name: str, low: int, high: int | None = None):
    """A parser of integers in [low, high] for the option ``name``."""
    return _parsed(name, int, check_int, low, high)


def _folder(option: str):
    """A parser of a folder option (``~`` expanded; empty names, broken links and over-long names refused)."""
    return _parsed(option, str, lambda name, text: user_path(text, name))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options ``reproduce`` and ``attack-study`` share: device, data, results folder and run cache."""
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--data", type=_folder("--data"), default=None,
                   help="MNIST folder holding MNIST/raw/ (default $VIBTOOLS_DATA)")
    p.add_argument("--results", type=_folder("--results"), default="results", help="results folder (default ./results)")
    p.add_argument("--cache", type=_folder("--cache"), default=None,
                   help="run cache for resuming (default $VIBTOOLS_CACHE, else ~/.cache/vibtools/runs)")


def build_parser() -> argparse.ArgumentParser:
    """The ``vibtools`` argument parser."""
    from .baselines import MODELS
    from .config import MAX_SEED
    from .experiments import EXPERIMENTS, PAPER_EPOCHS, PASS_MODEL_EPOCHS

    p = _Parser(prog=PROG, description="Deep Variational Information Bottleneck on MNIST.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train one VIB model with the reference recipe",
                       description="Train one VIB model (reference recipe: batch 100, Adam 1e-4 with betas "
                                   "(0.5, 0.999), x0.97 every 2 epochs, EMA 0.999) and print the reference's "
                                   "per-epoch line, then the EMA weights' line. A run already in --out is "
                                   "loaded, an interrupted one resumed (Ctrl-C saves the last finished epoch).")
    t.add_argument("--model", choices=(*MODELS, "ceb"), default="vib",
                   help="vib (default), or a baseline of the paper's Table 1 on the same network with z = mu: "
                        "deterministic, dropout (0.5 on the hidden units), label-smoothing (0.1), "
                        "confidence-penalty (1.0); or ceb, the Conditional Entropy Bottleneck (encoder N(mu(x), I), "
                        "learned backward encoder b(z|y))")
    t.add_argument("--beta", type=_beta, default=None,
                   help="weight of the info loss, >= 0 (default 1e-3; VIB and CEB only)")
    t.add_argument("--k", type=_integer("k", 1), default=256, help="latent size K, >= 1 (default 256; 2 to plot)")
    t.add_argument("--epochs", type=_integer("epochs", 1, MAX_EPOCHS), default=10,
                   help="training epochs, >= 1 (default 10)")
    t.add_argument("--seed", type=_integer("seed", 0, MAX_SEED), default=0,
                   help=f"random seed for weights, noise and batches, 0 to {MAX_SEED} (default 0)")
    t.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    t.add_argument("--out", type=_folder("--out"), default="runs",
                   help="output folder for the checkpoint and history JSON (default ./runs)")
    t.add_argument("--data", type=_folder("--data"), default=None,
                   help="MNIST folder holding MNIST/raw/ (default $VIBTOOLS_DATA, else ~/.cache/vibtools/data; "
                        "downloaded there if missing)")
    t.add_argument("--covariance", choices=("diag", "full", "unit", "none"), default=None,
                   help="q(z|x) of VIB: diag (reference, default), full (paper's K=2 encoder), unit (N(mu, I)), "
                        "none (z = mu)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    r = sub.add_parser("reproduce", help="train the paper's experiments and write results/",
                       description="Train the named experiments (all when none is named): what is missing is "
                                   "trained, models of one shape in one stacked pass; interrupted runs resume from "
                                   "the run cache. Each finished run is written to RESULTS/<experiment>/<run>.json.")
    r.add_argument("names", nargs="*", metavar="NAME", help=f"experiments: {', '.join(EXPERIMENTS)} (default: all)")
    r.add_argument("--epochs", type=_integer("epochs", 1, MAX_EPOCHS), default=PAPER_EPOCHS,
                   help=f"epochs of every run (default {PAPER_EPOCHS}, the paper's protocol)")
    _add_run_options(r)
    r.add_argument("--compile", default="", choices=("", "default", "reduce-overhead"),
                   help="torch.compile the step: default, or reduce-overhead (CUDA graphs on a GPU)")
    r.add_argument("--only", default=None, metavar="PATTERNS",
                   help="train only runs whose name matches one of these comma-separated shell patterns, e.g. "
                        "'vib-*,deterministic-*' or '*-beta0.1-*' (run names: --list)")
    r.add_argument("--pass-model-epochs", type=_integer("pass-model-epochs", 1), default=PASS_MODEL_EPOCHS,
                   metavar="N", help=f"at most N model-epochs per stacked pass (default {PASS_MODEL_EPOCHS}: "
                                     "two 200-epoch models; a GPU takes larger passes)")
    r.add_argument("--list", action="store_true", help="list the experiments and their runs, and exit")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    a = sub.add_parser("attack-study", help="attack the adversarial chapter's models and write results/adversarial/",
                       description="Attack each model of the adversarial chapter (FGSM, PGD plain and strong with "
                                   "a step check, PGD on the margin, PGD L2 with its own step check, noise, the L2 "
                                   "optimization attack in two forms, and torchattacks' APGD-CE/-DLR in L-inf and L2 "
                                   "when installed; each image's outcome under each attack is kept) and write "
                                   "RESULTS/adversarial/<run>.json as each model finishes; models with a record are "
                                   "skipped. 10-epoch models are "
                                   "trained when missing; 200-epoch ones must be in the run cache.")
    a.add_argument("--epochs", type=int, choices=(10, PAPER_EPOCHS), default=10,
                   help="10: the deterministic net and VIB at beta 1e-3 ... 1; 200: Table 1's deterministic net "
                        "and VIB (default 10)")
    a.add_argument("--only", default=None, metavar="PATTERNS",
                   help="attack only models whose run name matches one of these comma-separated shell patterns")
    a.add_argument("--paper", action="store_true",
                   help="run the paper's own attack instead (Carlini-Wagner L2, untargeted and targeted, on the first "
                        "1000 test images, 12 samples of z for the gradients and the success test) and write "
                        "RESULTS/adversarial-paper/<run>.json")
    a.add_argument("--ceb", action="store_true",
                   help="attack the Conditional Entropy Bottleneck's models (those of reproduce ceb, 10 epochs) "
                        "instead of the deterministic net and VIB")
    _add_run_options(a)
    e = sub.add_parser("explorer-data", help="write the β explorer's stored embeddings (results/explorer/)",
                       description="Write RESULTS/explorer/k2-embeddings.json, which the β explorer draws with no "
                                   "kernel: the 2-D posteriors of the first 1000 test images of each K=2 model of its "
                                   "slider, with its error and information-plane numbers. The decades come from the "
                                   "k2 records (reproduce k2 --epochs 20); the half-decades from the run cache, where "
                                   "the explorer chapter trained them (left out, and said, when absent).")
    _add_run_options(e)
    a.add_argument("--list", action="store_true", help="list the models attacked, and exit")
    return p


def _fail(message: str, code: int = 2) -> int:
    """Print one error line (a newline inside a name is shown as \\n) and return the exit status."""
    print(f"{PROG}: error: {message}".replace("\n", "\\n"), file=sys.stderr)
    return code


def _interrupted(exc: KeyboardInterrupt) -> int:
    """The one line of an interrupt (Ctrl-C: 130, SIGTERM: 143), after which further ones are ignored.

    A second Ctrl-C may land while the first unwinds, replacing it: the message of the training loop's
    :class:`~vibtools.training.TrainingInterrupted` (which epochs are saved) is looked up along the chain. Once
    the command is on its way out, one landing in Python's shutdown (atexit callbacks) would print a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__context__
    said = [str(e) for e in chain if str(e) and isinstance(e, KeyboardInterrupt)]
    message = said[-1] if said else "interrupted; rerun the same command to resume"
    return _fail(message, 143 if any(isinstance(e, _Terminated) for e in chain) else 130)


def _check_data_folder(folder: Path | None) -> None:
    """Raise ValueError unless --data (when given) is a readable folder."""
    if folder is not None and (not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK)):
        raise ValueError(f"data folder {str(folder)!r} is not a readable folder: pass the folder that holds "
                         f"MNIST/raw/")


def _config(args):
    """The run's TrainConfig from the options; ValueError when --beta or --covariance contradict --model."""
    from .baselines import model_config

    fields = {"k": args.k, "epochs": args.epochs, "seed": args.seed}
    beta = 1e-3 if args.beta is None else args.beta
    if args.model == "vib":
        return model_config("vib", **fields, beta=beta).with_(covariance=args.covariance or "diag")
    if args.model == "ceb":
        if args.covariance not in (None, "unit"):
            raise ValueError(f"--model ceb uses the encoder N(mu(x), I) (--covariance unit), not {args.covariance}")
        from .config import TrainConfig

        return TrainConfig(**fields, beta=beta, covariance="unit", bottleneck="ceb")
    if args.beta is not None:
        raise ValueError(f"--beta applies to --model vib and ceb only; {args.model} has no info loss")
    if args.covariance not in (None, "none"):
        raise ValueError(f"--covariance applies to --model vib only; {args.model} uses z = mu")
    return model_config(args.model, **fields)


def _patterns(text: str | None) -> list[str]:
    """The shell patterns of ``--only`` (None: the option not given, every run).

    Raises:
        ValueError: an empty pattern (``--only ','``, ``--only ' '``), which would otherwise select every run.
    """
    if text is None:
        return []
    patterns = [p.strip() for p in text.split(",")]
    if not all(patterns):
        raise ValueError(f"--only {text!r} holds an empty pattern: give comma-separated run-name patterns such as "
                         f"'vib-*,deterministic-*', or leave --only out to select every run")
    return patterns


def _reproduce(args) -> int:
    """The ``reproduce`` command (names, patterns and --list are answered before torch is imported)."""
    from .experiments import EXPERIMENTS, plan_passes, run_name, select_across

    names = args.names or list(EXPERIMENTS)
    try:
        only = _patterns(args.only)
        unknown = [n for n in names if n not in EXPERIMENTS]
        if unknown:
            raise ValueError(f"unknown experiment {unknown[0]!r}: use one of {', '.join(EXPERIMENTS)}")
        chosen = select_across({n: EXPERIMENTS[n].runs(args.epochs) for n in names}, only)
        planned = {n: plan_passes(chosen[n], args.pass_model_epochs) for n in names}
        if args.list:
            for n in names:
                print(f"{n}: {EXPERIMENTS[n].description}; {args.epochs} epochs, in this order:")
                for g, group in enumerate(planned[n]):
                    print(f"  pass {g + 1}: {', '.join(run_name(c) for c in group)}")
            return 0
        from .data import DataNotFoundError, load_mnist
        from .device import pick_device
        from .preflight import check_writable
        from .reproduce import reproduce
        from .store import cache_folder

        _interruptible()
        device = pick_device(args.device)
        _check_data_folder(args.data)
        results = args.results
        if results.exists() and not results.is_dir():
            raise ValueError(f"--results {str(results)!r} exists and is not a folder")
        check_writable(results, 2**20, what="--results")
        cache = args.cache if args.cache is not None else True
        folder = cache_folder(cache)  # $VIBTOOLS_CACHE or --cache: refused here, before any "pass ... started"
        if folder is not None and folder.exists() and not folder.is_dir():
            raise ValueError(f"the run cache {str(folder)!r} exists and is not a folder: point --cache or "
                             f"$VIBTOOLS_CACHE at a folder")
    except ValueError as exc:
        return _fail(str(exc))
    try:
        data = load_mnist(args.data, device)
        fashion = None
        if any(EXPERIMENTS[n].needs_fashion for n in names):
            from .data import load_fashion_mnist

            fashion = load_fashion_mnist(args.data, device)  # the far OOD set of the uncertainty experiments
    except DataNotFoundError as exc:
        return _fail(str(exc))

    def announce(name: str, group: int, groups: int, runs: list[str]) -> None:
        """One line per stacked pass that trains (its progress bar gives the pass's ETA)."""
        print(f"{name}: pass {group + 1} of {groups} ({args.epochs} epochs, started "
              f"{time.strftime('%H:%M')}): {', '.join(runs)}", flush=True)

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    t0 = time.perf_counter()
    try:
        written = reproduce(names, data, epochs=args.epochs, device=str(device), results_dir=results, cache=cache,
                            progress=not args.no_progress, on_group=announce, only=only,
                            max_pass=args.pass_model_epochs, fashion=fashion,
                            compile={"": False, "default": True}.get(args.compile, args.compile))
    except ValueError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a write failed after the checks (the disk filled up meanwhile, ...)
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(f"could not write{where} ({exc.strerror or exc}); finished passes are written and the last "
                     f"finished epoch is kept: rerun the same command once it can be written", 1)
    except (MemoryError, RuntimeError) as exc:
        return _fail_on_memory(exc)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: finished passes are written, the current one resumes
        return _interrupted(exc)
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) is _on_sigterm:  # not once interrupted
            signal.signal(signal.SIGTERM, previous)
    print(f"# wrote {len(written)} results files to {results} in {time.perf_counter() - t0:.0f} s")
    return 0


def _attack_study(args) -> int:
    """The ``attack-study`` command."""
    import fnmatch

    from .experiments import run_name
    from .robustness import study_configs

    try:
        only = _patterns(args.only)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        names = [run_name(c) for cs in study_configs(args.epochs, args.ceb).values() for c in cs]
    except ValueError as exc:
        return _fail(str(exc))
    for pattern in only:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            return _fail(f"--only {pattern!r} matches none of the study's models (they are named like "
                         f"{names[0]!r}); see --list")
    if args.list:
        print("\n".join(n for n in names if not only or any(fnmatch.fnmatchcase(n, p) for p in only)))
        return 0
    from .data import DataNotFoundError, load_mnist
    from .device import pick_device
    from .preflight import check_writable
    from .robustness import run_study

    try:
        device = pick_device(args.device)
        _check_data_folder(args.data)
        if args.results.exists() and not args.results.is_dir():
            raise ValueError(f"--results {str(args.results)!r} exists and is not a folder")
        check_writable(args.results, 2**20, what="--results")
        data = load_mnist(args.data, device)
    except (ValueError, DataNotFoundError) as exc:
        return _fail(str(exc))
    _interruptible()
    try:
        written = run_study(args.epochs, data, results_dir=args.results, device=str(device),
                            cache=args.cache if args.cache is not None else True, only=only,
                            log=lambda line: print(line, flush=True), paper=args.paper, ceb=args.ceb)
    except ValueError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt as exc:  # finished models are written; the next run starts with the one cut short
        return _interrupted(exc)
    print(f"# wrote {len(written)} records to {args.results / ('adversarial-paper' if args.paper else 'adversarial')}")
    return 0


def _explorer_data(args) -> int:
    """The ``explorer-data`` command."""
    from .data import DataNotFoundError, load_mnist
    from .device import pick_device
    from .explorer import write_explorer_data
    from .preflight import check_writable
    from .records import ResultsError

    try:
        _check_data_folder(args.data)
        check_writable(args.results, 2**22, what="--results")
        data = load_mnist(args.data, pick_device(args.device))
    except (ValueError, DataNotFoundError) as exc:
        return _fail(str(exc))
    _interruptible()
    try:
        path = write_explorer_data(args.results, data, args.cache if args.cache is not None else True)
    except (ValueError, ResultsError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt as exc:  # the file is written atomically: the old one stays whole
        return _interrupted(exc)
    print(f"# wrote {path}")
    return 0


def _write_history(result, path: Path) -> None:
    """The history JSON beside the run, written under the run's lock; left alone when it already says the same
    (so a read-only folder holding a finished run serves it)."""
    import json

    from .store import RunCache

    want = {"config": result.config.as_dict(), "history": result.history, "final": result.final}
    try:
        if json.loads(path.read_text()) == json.loads(json.dumps(want)):
            return
    except (OSError, ValueError):
        pass
    with RunCache(path.parent).locked([result.path]):
        result.save_history(path)


def _fail_on_memory(exc: BaseException) -> int:
    """One line for an allocation that failed although the memory check passed (a limit it could not see); other
    RuntimeErrors are not this command's to hide."""
    text = str(exc)
    if not (isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text):
        raise exc
    first = (text.splitlines() or [type(exc).__name__])[0].split("] ")[-1]  # without torch's "[enforce fail at"
    return _fail(f"ran out of memory ({first}); the last finished epoch is kept: use a smaller K or fewer models, or "
                 f"free memory, then rerun the same command to resume", 1)


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line ("python -m vibtools: warning: ...")."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _negative_values_joined(argv: list[str]) -> list[str]:
    """``--beta -inf`` as ``--beta=-inf``: argparse reads a value that starts with '-' as an option unless it looks
    like -1 or -.5, so ``-inf`` or ``-1e-3`` would get "expected one argument" instead of the option's own check."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and token.startswith("-") and _is_float(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _is_float(text: str) -> bool:
    """True when ``float(text)`` parses."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status. Warnings print as one line while it runs (restored after)."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    """The command itself (see :func:`main`)."""
    args = build_parser().parse_args(_negative_values_joined(sys.argv[1:] if argv is None else argv))
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command == "attack-study":
        return _attack_study(args)
    if args.command == "explorer-data":
        return _explorer_data(args)
    try:  # the options alone, before torch is imported
        config = _config(args)
        _check_data_folder(args.data)
    except ValueError as exc:
        return _fail(str(exc))
    from .data import DataNotFoundError, load_mnist
    from .device import pick_device
    from .evaluation import format_line
    from .preflight import check_memory, check_writable
    from .store import checkpoint_bytes
    from .training import train

    _interruptible()

    out = args.out
    try:  # everything that can be checked before reading the data (nothing is created if any fails), then the data
        device = pick_device(args.device)
        check_memory([config], device)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {str(out)!r} is a file, not a folder")
        if not out.exists():  # an existing folder is checked by train(): a read-only one may hold the finished run
            check_writable(out, checkpoint_bytes(config), what="--out")
        data = load_mnist(args.data, device)
    except (ValueError, DataNotFoundError) as exc:
        return _fail(str(exc))


    def show(epoch: int, rows: list[dict]) -> None:
        """Print one epoch's test line in the reference's format."""
        m = {k[len("test_"):]: v for k, v in rows[0].items() if k.startswith("test_")}
        print(format_line(str(epoch), m), flush=True)

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    t0 = time.perf_counter()
    try:
        result = train(config, data, device=str(device), cache=out, progress=not args.no_progress, on_epoch=show)
        if result.from_cache:
            for i in range(len(result.history["epoch"])):
                show(i, [{k: v[i] for k, v in result.history.items()}])
        print(format_line("EMA", result.final["ema_test"]))
        history = out / f"{result.path.stem}.json"
        _write_history(result, history)
    except ValueError as exc:  # the checks train() makes before any work (data size, memory)
        return _fail(str(exc))
    except KeyboardInterrupt as exc:  # in training: the saved epochs are named; outside it nothing is lost
        return _interrupted(exc)
    except OSError as exc:  # a write failed after the checks (the disk filled up meanwhile, ...)
        return _fail(f"could not write to {str(out)!r} ({exc.strerror or exc}); the last finished epoch is kept: "
                     f"rerun the same command once the folder can be written (space, permissions)", 1)
    except (MemoryError, RuntimeError) as exc:
        return _fail_on_memory(exc)
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) is _on_sigterm:  # not once interrupted
            signal.signal(signal.SIGTERM, previous)
    spent = result.seconds
    print(f"# device={device.type} wall={time.perf_counter() - t0:.1f}s training={spent['training']:.1f}s "
          f"evaluation={spent['epoch_eval'] + spent['final_eval']:.1f}s cached={result.from_cache} "
          f"checkpoint={result.path} history={history}")
    return 0
