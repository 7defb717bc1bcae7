"""`trm-train`: fit a model (from a config, or from a data file and a preset chosen for it), list the
presets, evaluate a bundle, or export a checkpoint to a bundle."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import torch

from trainer import teacher
from trainer.arguments import (
    bundle_version,
    positive_int,
    positive_number,
    seed_number,
    thread_count,
    whole_number,
    writable_folder,
)
from trainer.baseline import comparison
from trainer.checkpoint_file import NoRoomForCheckpoint
from trainer.config import (
    DEFAULT_BUNDLE_VERSION,
    TrainConfig,
    dotted,
    load_config,
    parse_override,
    with_overrides,
)
from trainer.data.checks import spelt_as
from trainer.data.files import DataError, counted
from trainer.data.text import LABEL_COLUMN, TEXT_COLUMN
from trainer.evaluate import evaluate_bundle, grid_result, label_coverage, missed_labels
from trainer.export import ablation_summary, export_bundle, reexport_bundle
from trainer.fit import fit, from_checkpoint
from trainer.out_of_scope import DEFAULT_PRECISION, AbstainCalibration, deferral_note
from trainer.presets import PRESETS, file_kind, plan_fit, presets_table
from trainer.run_lock import only_fit_of
from trainer.sequence.bundle import KEEP_NORMALIZE, reexport_sequence_bundle
from trainer.sequence.user_fit import fit_sequence
from trainer.train import check_device
from trm_bundle import BundleError
from trm_bundle.checksums import sha256_of
from trm_bundle.manifest import (
    INPUT_NORMALIZATIONS,
    MANIFEST_FILE,
    NAME_RULE,
    VERSION_RULE,
    Bundle,
    is_bundle_version,
    is_model_name,
    load_bundle,
    model_name_from,
)
from trm_bundle.writer import check_replaceable
from trm_service.config import DEFAULT_MODELS_DIR

SEQUENCE_MINUTES = 15.0  # --task sequence: the fit's minutes without --time-budget
SEQUENCE_START = DEFAULT_MODELS_DIR / "code-dictation"  # --task sequence starts from its weights (TRAINING.md)
FRESH_START = "scratch"  # --start-from scratch: a fresh model
SEQUENCE_USEFUL_MINUTES = 1.0  # below this a sequence fit says that its model will be weak


KIND_COLUMNS = {"text": "text,label", "grid": "question,answer", "sequence": "source,target"}


class FitSetup(NamedTuple):
    config: TrainConfig
    training_ends_s: float | None  # after the fit's start: a preset's fit whose training minutes no flag set
    closing_note: str | None  # the plan's, printed after the test figures


def _fit_config(args: argparse.Namespace) -> FitSetup:
    """The config file with the flags applied; without --config, the plan of trainer/presets.py for the
    training file (printed before anything else happens). With it, the seconds after the fit's start by which
    its training loop ends: a fit of a preset whose training minutes no flag set times itself to its budget."""
    overrides: dict[str, Any] = {
        "task": args.task, "data": args.data, "test_data": args.test, "name": args.name,
        "out_dir": args.run_dir, "max_steps": args.max_steps, "max_minutes": args.max_minutes,
        "batch_size": args.batch_size, "lr": args.lr, "device": args.device, "seed": args.seed,
        "oos_label": args.oos_label, "abstain_precision": args.abstain_precision,
        "text_column": args.text_column, "label_column": args.label_column,
        "version": args.bundle_version,
    }
    overrides.update(parse_override(item) for item in args.set)
    if args.config:
        if args.preset or args.time_budget:
            raise ValueError("--preset and --time-budget size a fit without --config; a config sets everything")
        return FitSetup(load_config(args.config, overrides), None, None)
    if not args.data:
        raise ValueError("give the training file with --train FILE (text,label or question,answer columns), "
                         "or a YAML config with --config")
    columns = (args.text_column or TEXT_COLUMN, args.label_column or LABEL_COLUMN)
    kind = file_kind(args.data, columns[0])
    if args.task not in (None, kind):
        raise ValueError(f"--task {args.task}, but {args.data} holds {kind} data ({KIND_COLUMNS[kind]} columns): "
                         f"drop --task, or give a file of {KIND_COLUMNS[args.task]} columns")
    plan = plan_fit(args.data, args.preset, args.time_budget, teacher.available(), args.test, columns)
    print(plan.description, flush=True)
    settings = with_overrides({"name": model_name_from(Path(args.data).stem), **plan.settings}, overrides)
    if "keep_best" not in overrides and settings.get("soup"):
        settings["keep_best"] = False  # the preset's choice among evaluated weights needs one model
    cfg = TrainConfig.from_dict(settings)  # checked before the plan's changes are told
    planned, given = dotted(plan.settings), dotted(settings)
    if changed := [f"{key} {given[key]} (planned {planned[key]})" for key in planned if given[key] != planned[key]]:
        print(f"The flags change the plan: {', '.join(changed)}.", flush=True)
    ends_s = None if overrides.get("max_minutes") is not None else plan.training_ends_s
    return FitSetup(cfg, ends_s, plan.closing_note)


def cmd_fit(args: argparse.Namespace) -> int:
    inferred = (args.task is None and not args.config and args.data
                and file_kind(args.data, args.text_column or TEXT_COLUMN) == "sequence")
    if args.task == "sequence" or inferred:
        return _fit_sequence(args)
    if args.start_from:
        raise ValueError("--start-from applies to --task sequence: a text or grid fit starts from a fresh model")
    started = args.started
    cfg, training_ends_s, closing_note = _fit_config(args)
    torch.set_num_threads(args.threads) if args.threads else None
    command = "trm-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    check_device(cfg.device)
    check_bundle_folder(Path(args.out) / cfg.name, cfg.version, cfg.data, cfg.run_dir)
    ends_by = None if training_ends_s is None else started + training_ends_s
    with only_fit_of(cfg.run_dir):
        fitted = fit(cfg, resume=not args.restart, command=command, ends_by=ends_by)
        bundle = export_bundle(fitted, Path(args.out) / cfg.name, started=started)
    print(json.dumps({"bundle": str(bundle.path), "metrics": bundle.manifest.metrics}, indent=1))
    print(f"{cfg.name}: bundle {bundle.path} written after {(time.monotonic() - started) / 60:.1f} min")
    int8_served = bundle.manifest.onnx_int8 is not None
    max_steps = bundle.manifest.recursion.N_sup
    versus = (comparison(bundle.manifest.metrics, int8_served=int8_served, max_steps=max_steps)
              or grid_result(bundle.manifest.metrics, int8_served, max_steps))
    if versus:
        print(f"{cfg.name}: {versus}")
    if coverage := label_coverage(bundle.manifest.metrics, len(bundle.manifest.labels)):
        print(f"{cfg.name}: {coverage}")
    abstain = bundle.manifest.out_of_scope
    evaluation = json.loads((bundle.path / "evaluation.json").read_text())
    if missed := missed_labels(evaluation["results_int8" if int8_served else "results"]):
        print(f"{cfg.name}: note: {missed}")
    note = (deferral_note(bundle.manifest.metrics, abstain.threshold, cfg.abstain_precision, int8_served,
                          AbstainCalibration.from_json(evaluation.get("abstain_calibration")))
            if abstain and abstain.label is None else None)
    for line in (note, closing_note):
        if line:
            print(f"{cfg.name}: {line}")
    return 0


def _fit_sequence(args: argparse.Namespace) -> int:
    """`fit --task sequence`: a user's source,target file (trainer/sequence/user_fit.py)."""
    given = (("--config", args.config), ("--preset", args.preset), ("--set", args.set), ("--max-steps", args.max_steps),
             ("--max-minutes", args.max_minutes), ("--device", args.device), ("--oos-label", args.oos_label),
             ("--abstain-precision", args.abstain_precision is not None),
             ("--text-column", args.text_column), ("--label-column", args.label_column))
    unused = [flag for flag, value in given if value]
    if unused:
        columns = (": a sequence file's columns are read by their names alone, source and target; rename them in the "
                   "file" if args.text_column or args.label_column else "")
        raise ValueError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to --task sequence "
                         "(it takes --train, --test, --name, --bundle-version, "
                         "--out, --run-dir, --time-budget, --batch-size, --lr, --seed, --threads, --restart, "
                         f"--start-from){columns}")
    if not args.data:
        raise ValueError("give the training file with --train FILE (source,target columns)")
    started = args.started
    torch.set_num_threads(args.threads) if args.threads else None
    name = args.name or model_name_from(Path(args.data).stem)
    if not is_model_name(name):
        raise ValueError(f"--name {name!r} must be {NAME_RULE}")
    version = args.bundle_version or DEFAULT_BUNDLE_VERSION
    run_dir = Path(args.run_dir or "runs") / name
    check_bundle_folder(Path(args.out) / name, version, args.data, run_dir)
    if args.time_budget and args.time_budget < SEQUENCE_USEFUL_MINUTES:
        print(f"{name}: note: a budget of {args.time_budget:g} min trains a few hundred steps at most: expect a weak "
              f"model (the default is {SEQUENCE_MINUTES:g} min)", flush=True)
    with only_fit_of(run_dir):
        bundle = fit_sequence(
            Path(args.data), Path(args.test) if args.test else None, out=Path(args.out), name=name,
            version=version, run_dir=run_dir, minutes=args.time_budget or SEQUENCE_MINUTES,
            seed=args.seed or 0, command="trm-train " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            resume=not args.restart, batch_size=args.batch_size or 64, lr=args.lr,
            start_from=None if args.start_from == FRESH_START else Path(args.start_from or SEQUENCE_START),
            started=started)
    metrics = bundle.manifest.metrics
    print(json.dumps({"bundle": str(bundle.path), "metrics": metrics}, indent=1))
    unsure = bundle.manifest.sequence.unsure_below
    print(f"{name}: bundle {bundle.path} written after {(time.monotonic() - started) / 60:.1f} min; held-out exact "
          f"match {100 * metrics['test_exact_match']:.2f}%, character error rate {100 * metrics['test_cer']:.2f}%; "
          + (f"answers below confidence {unsure:.6g} are marked unsure" if unsure else "no answer is marked unsure"))
    return 0


def check_bundle_folder(folder: Path, version: str, data: str, run_dir: Path) -> None:
    """Before training: the bundle's folder may be written (an earlier bundle there of this `version` fitted on
    the same `data` file is replaced, said where the file's contents changed; one of another file or another version
    outside the packaged models, the run's own folder `run_dir`, or anything else, refused), and a note where its
    name and version are those of one of the server's packaged models."""
    if folder.resolve() == run_dir.resolve():
        raise ValueError(f"--out and --run-dir both put {folder.name} in {folder.parent}: the bundle and the run's "
                         "checkpoint need folders of their own (a run folder is not a bundle, and the fit would be "
                         "refused after training): give another --out or --run-dir")
    check_replaceable(folder, hint="; give another --out or --name")
    earlier = _manifest_of(folder)
    recorded = (earlier.get("training") or {}).get("config") or {}
    fitted_on = recorded.get("data") or recorded.get("train")  # a sequence fit records its file as `train`
    if fitted_on and Path(fitted_on).resolve() != Path(data).resolve():
        raise ValueError(f"{folder} holds the model fitted on {fitted_on}, another file than {data} (two files of one "
                         "name, as projects' train.csv often are, give one model name): give this fit another "
                         f"--name (or --out), or remove {folder} to replace that model")
    name, held = earlier.get("name", folder.name), earlier.get("version")
    packaged = DEFAULT_MODELS_DIR / folder.name
    if held is not None and held != version and folder.resolve() != packaged.resolve():  # `make models` replaces
        raise ValueError(f"{folder} holds {name} {held}, which this fit of {version} would replace (a version serves "
                         f"from a folder of its own): to serve both, move it first (`mv {folder} "
                         f"{folder.parent / f'{folder.name}-{held}'}`: a server of --models-dir {folder.parent} serves "
                         f"both), or give another --out; remove {folder} to replace it")
    trained_on = ((earlier.get("training") or {}).get("data_sha256") or {}).get(Path(data).name)
    if held == version and trained_on and Path(data).is_file() and sha256_of(Path(data)) != trained_on:
        print(f"{folder.name}: note: this fit replaces {name} {version} at {folder}, fitted on other contents of "
              f"{data}: a client that pins version {version} gets the new model once a server reloads it "
              "(--bundle-version names a new version)", flush=True)
    if folder.resolve() == packaged.resolve() or not (packaged / MANIFEST_FILE).is_file():
        return  # `make models` replaces the packaged bundle
    if json.loads((packaged / MANIFEST_FILE).read_text()).get("version") == version:
        print(f"{folder.name}: note: version {version} of a model of this name ships with the server, which refuses "
              "this bundle beside it as already served: serve it with `trm-service serve --no-default-models`, or "
              "give it another --name or --bundle-version", flush=True)


def _manifest_of(folder: Path) -> dict[str, Any]:
    """The manifest of the bundle at `folder` ({} where there is none)."""
    manifest = folder / MANIFEST_FILE
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def cmd_presets(args: argparse.Namespace) -> int:
    print(presets_table())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.split and Path(args.data).is_file():
        raise ValueError(f"--split picks a split of a dataset folder; a file ({args.data}) is evaluated whole: "
                         "leave --split out")
    columns = (args.text_column, args.label_column)
    scored = evaluate_bundle(Path(args.bundle), Path(args.data), args.split or "test", args.limit, args.int8, columns)
    print(json.dumps(scored, indent=1))
    if (left_out := scored.get("left_out")) and "labels" in left_out:
        known = load_bundle(Path(args.bundle)).manifest.labels
        print(f"trm-train eval: {counted(left_out['rows'], 'row')} of labels the model was not trained on left out "
              f"({', '.join(left_out['labels'])}): it cannot answer them{spelt_as(left_out['labels'], known)}",
              file=sys.stderr)
    elif left_out:
        print(f"trm-train eval: {counted(left_out['rows'], 'row')} left out: their source is longer than the "
              f"{left_out['longer_than']} characters the model reads, and the server refuses them", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(item) for item in args.set)
    if args.bundle_version:
        overrides["version"] = args.bundle_version
    if args.from_bundle and load_bundle(Path(args.from_bundle)).manifest.task == "sequence":
        bundle = _reexport_sequence(args, overrides)
    else:
        ablation = ablation_summary(Path(args.ablation)) if args.ablation else None
        if args.from_bundle:
            bundle = reexport_bundle(Path(args.from_bundle), Path(args.out), overrides, ablation)
        else:
            fitted = from_checkpoint(Path(args.checkpoint), overrides, args.training_command,
                                     exported_by="trm-train " + " ".join(sys.argv[1:]))
            bundle = export_bundle(fitted, Path(args.out) / fitted.cfg.name, ablation)
    print(json.dumps({"bundle": str(bundle.path)}))
    return 0


def _reexport_sequence(args: argparse.Namespace, overrides: dict[str, Any]) -> Bundle:
    """`export --from-bundle` of a sequence bundle: its weights as they are; its version and how it reads its text
    (`--set normalize=spoken_words`, or `null` for the text as given) the only settings."""
    if set(overrides) - {"version", "normalize"} or args.ablation:
        raise ValueError("a sequence bundle is re-exported as it is: --bundle-version and --set normalize=... are "
                         "its only settings (leave out --ablation and other --set)")
    version = overrides.get("version")
    if version is not None and not is_bundle_version(version):
        raise ValueError(f"--set version={version}: must be {VERSION_RULE}: give one with --bundle-version")
    normalize = overrides.get("normalize", KEEP_NORMALIZE)
    if normalize not in (KEEP_NORMALIZE, None, *INPUT_NORMALIZATIONS):
        raise ValueError(f"--set normalize={normalize}: must be one of {', '.join(INPUT_NORMALIZATIONS)}, or null "
                         "(the text as given)")
    return reexport_sequence_bundle(Path(args.from_bundle), Path(args.out), version,
                                    command="trm-train " + " ".join(sys.argv[1:]), normalize=normalize)


def _column_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a column name, got an empty one")
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trm-train", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('trm-coprocessor')}")
    sub = parser.add_subparsers(dest="command", required=True)

    fit_cmd = sub.add_parser("fit", help="train a model and write its bundle")
    fit_cmd.add_argument("--config", help="YAML config (see trainer/configs/)")
    fit_cmd.add_argument("--preset", choices=list(PRESETS),
                         help="without --config: force this preset instead of the one the data suggests "
                         "(see trm-train presets)")
    fit_cmd.add_argument("--time-budget", type=positive_number, metavar="MINUTES",
                         help="without --config: minutes for the whole fit, from reading the data to the "
                         "written bundle, of each command (a fit resumed after Ctrl-C gets them again; its training "
                         "counts the minutes trained before) (default: the preset's, 15 for short text, 30 for long "
                         "text, 90 for grids; 15 for --task sequence)")
    fit_cmd.add_argument("--oos-label", help="the out-of-scope label (default: a label named oos, out_of_scope "
                         "or none; '' for none at all; without one, an abstain threshold is calibrated)")
    fit_cmd.add_argument("--abstain-precision", type=float, metavar="P",
                         help="without an out-of-scope label: how often the answers the model gives must be right on "
                         f"validation (default {DEFAULT_PRECISION:g}); below the confidence that reaches it, it "
                         "defers (defer_to_llm). Lower answers more, less often right; 0 never defers. A finished "
                         "run's same command with another value exports it again")
    fit_cmd.add_argument("--task", choices=["text", "grid", "sequence"],
                         help="sequence: a source,target file, the model writes the target (default: from the data)")
    fit_cmd.add_argument("--data", "--train", dest="data",
                         help="the training CSV/TSV/JSONL/JSON file; a dataset folder only with --config")
    fit_cmd.add_argument("--test", help="test CSV/TSV/JSONL/JSON for a user's data (default: 10%% of the training "
                         "file held out for test, and as much again for validation)")
    _add_column_flags(fit_cmd, "text", "label")
    fit_cmd.add_argument("--name", help="bundle name")
    fit_cmd.add_argument("--bundle-version", type=bundle_version, metavar="VERSION",
                         help=f"the bundle's version (default {DEFAULT_BUNDLE_VERSION}): every answer names the "
                         "version that gave it; an older version's bundle kept in another folder is served beside "
                         "it, for requests that name that version")
    fit_cmd.add_argument("--out", type=writable_folder, default="bundles",
                         help="folder that receives the bundle folder (default bundles/)")
    fit_cmd.add_argument("--run-dir", type=writable_folder,
                         help="folder that receives the run's folder NAME/ with its checkpoint.pt, which a fit run "
                         "again resumes from (default runs/)")
    fit_cmd.add_argument("--max-steps", type=positive_int,
                         help="most optimizer steps (default: the plan's, or the config's); not for a sequence fit")
    fit_cmd.add_argument("--max-minutes", type=positive_number,
                         help="minutes of training, fixed: the loop no longer times itself to the budget (default: "
                         "the plan's, or the config's; --set max_minutes=0 for no time limit); not for a "
                         "sequence fit")
    fit_cmd.add_argument("--batch-size", type=positive_int,
                         help="the training batch (default: the preset's sized to the data, or the config's; 64 for a "
                         "sequence fit)")
    fit_cmd.add_argument("--lr", type=positive_number,
                         help="the peak learning rate (default: the preset's, or the config's; for a sequence fit "
                         "5e-4 from a bundle, 2e-3 for a fresh model)")
    fit_cmd.add_argument("--device", help="auto (a GPU when there is one), cpu or cuda; not for a sequence fit, "
                         "which runs on the CPU")
    fit_cmd.add_argument("--seed", type=seed_number,
                         help="chooses the held-out rows, the batches and a fresh model's initial weights (default "
                         "0, or the config's); a checkpoint of another seed is not resumed: the fit starts over")
    fit_cmd.add_argument("--threads", type=thread_count, default=0,
                         help="torch CPU threads (0: torch's default; at most 4 per CPU)")
    fit_cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config key, e.g. --set model.hidden_size=128")
    fit_cmd.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    fit_cmd.add_argument("--start-from", metavar="BUNDLE",
                         help=f"--task sequence: the sequence bundle whose weights, model and halting rule the fit "
                         f"trains on your rows (default: the packaged code-dictation), or '{FRESH_START}' for a fresh "
                         "model")
    fit_cmd.set_defaults(func=cmd_fit)

    presets_cmd = sub.add_parser("presets", help="list the presets a fit without --config chooses from")
    presets_cmd.set_defaults(func=cmd_presets)

    eval_cmd = sub.add_parser("eval", help="evaluate a bundle on a dataset split or a file; prints JSON")
    eval_cmd.add_argument("--bundle", required=True)
    eval_cmd.add_argument("--data", "--test", dest="data", required=True,
                          help="dataset folder of ../shared/data or a user's file (--test, as fit names it)")
    eval_cmd.add_argument("--split", help="a dataset folder's split (default: test); not for a user's file")
    eval_cmd.add_argument("--limit", type=whole_number, default=0,
                          help="evaluate a fixed random subset of this size (0: every example)")
    eval_cmd.add_argument("--int8", action="store_true",
                          help="evaluate the bundle's int8 step (model.int8.onnx); without it, the fp32 step "
                          "(model.onnx), while a fit's last line quotes the step the server runs")
    _add_column_flags(eval_cmd, "the bundle's text column", "the bundle's label column")
    eval_cmd.set_defaults(func=cmd_eval)

    export_cmd = sub.add_parser("export", help="write a bundle from a training checkpoint")
    source = export_cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="runs/NAME or runs/NAME/checkpoint.pt")
    source.add_argument("--from-bundle", help="an existing bundle folder: re-export its weights (e.g. after an "
                        "exporter change) with fresh measurements and its original training record")
    export_cmd.add_argument("--out", type=writable_folder, default="bundles")
    export_cmd.add_argument("--bundle-version", type=bundle_version, metavar="VERSION",
                            help="the bundle's version (default: the checkpoint's or bundle's own)")
    export_cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a top-level config key for export, e.g. --set eval_limit=500 or "
                        "--set max_chars=20000")
    export_cmd.add_argument("--ablation", help="a bundle of the same model with less recursion (e.g. n=1, T=1), "
                        "trained as long: its figures go into REPORT.md next to this bundle's; or an earlier "
                        "bundle's evaluation.json, whose ablation is kept")
    export_cmd.add_argument("--training-command", default="",
                        help="the command that trained the checkpoint, recorded in REPORT.md (default: the one "
                        "its checkpoint records; a checkpoint from before 2026-12-03 records none, and the "
                        "export's own is recorded)")
    export_cmd.set_defaults(func=cmd_export)
    return parser


def _add_column_flags(command: argparse.ArgumentParser, text_default: str, label_default: str) -> None:
    """--text-column and --label-column: where a user's file keeps its texts and labels."""
    command.add_argument("--text-column", type=_column_name, metavar="NAME",
                         help=f"the column (CSV/TSV, any case) or JSON field of the texts (default: {text_default})")
    command.add_argument("--label-column", type=_column_name, metavar="NAME",
                         help=f"the column or JSON field of the labels (default: {label_default})")


def main(argv: list[str] | None = None, started: float | None = None) -> int:
    """Run one command. `started` is when the command began (`time.monotonic()`, taken by trainer/__main__.py
    before this module's imports, a few seconds of torch): a fit's time budget counts from it."""
    args = build_parser().parse_args(argv)
    args.started = time.monotonic() if started is None else started
    # scikit-learn's guess that labels of few rows each are a regression target, printed with its file path: the
    # plan already names labels that have few rows
    warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%", UserWarning)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at interpreter exit
        return status
    except BrokenPipeError:  # the reader stopped early (`trm-train eval ... | head`): what is left goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except DataError as error:
        print(f"trm-train: data error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # training's own stop says where its checkpoint is; elsewhere it is bare
        print(f"trm-train: {str(stop) or 'interrupted (Ctrl-C)'}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, BundleError) as error:
        print(f"trm-train: {error}", file=sys.stderr)
        return 2
    except NoRoomForCheckpoint as error:  # found before training: nothing was written
        print(f"trm-train: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the disk, not the data: full, read-only or gone while the command wrote
        where = "there" if error.filename else (  # an error of no file: a library's own files, in the temporary folder
            f"on the disks of --out, --run-dir and the temporary folder ({tempfile.gettempdir()}, TMPDIR)")
        print(f"trm-train: {error}: free space {where} or write elsewhere (--out, --run-dir); a fit's last checkpoint "
              "is kept, and the same command resumes from it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
