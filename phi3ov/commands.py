"""The model commands: `phi3ov export`, `download` and `doctor` (argparse here; the work in phi3ov/models/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ExportFailed
from .models.doctor import check_precision, diagnose, repair
from .models.export import FALLBACKS, WEIGHT_FORMATS, ExportOptions, export
from .models.hub import download
from .settings import ServerSettings


def register(sub) -> None:
    register_export(sub)
    register_doctor(sub)


def register_export(sub) -> None:
    d = ExportOptions()
    p = sub.add_parser(
        "export", help="Export a model to an OpenVINO folder with optimum-intel (int4 by default).",
        description="Export a Hugging Face model (Hub id, checkpoint folder or .gguf) to an OpenVINO folder "
        "the app can serve. Defaults are the classic command: --task text-generation-with-past --weight-format int4 "
        "--group-size 128 --ratio 0.6 --sym --trust-remote-code.")
    p.add_argument("source", help="Hub id (e.g. microsoft/Phi-3-mini-4k-instruct), checkpoint folder or .gguf file.")
    p.add_argument("out", type=Path, help="Folder to write (e.g. ./model/phi3-instruct/int4).")
    p.add_argument("--task", default=d.task, help=f"optimum task (default {d.task}).")
    p.add_argument("--weight-format", choices=WEIGHT_FORMATS, default=d.weight_format, help="Weight precision (default int4).")
    p.add_argument("--group-size", type=int, default=d.group_size, help="int4 group size; -1 for per-channel (default 128).")
    p.add_argument("--ratio", type=float, default=d.ratio, help="Share of layers in int4, the rest int8 (default 0.6).")
    p.add_argument("--sym", dest="sym", action="store_true", default=d.sym, help="Symmetric quantization (default).")
    p.add_argument("--asym", dest="sym", action="store_false", help="Asymmetric quantization.")
    p.add_argument("--group-size-fallback", choices=FALLBACKS, default=None,
                   help="When a layer width is not divisible by the group size (default: adjust, and say so).")
    p.add_argument("--backup-precision", choices=["none", "int8_sym", "int8_asym"], help="Precision of the non-int4 layers.")
    p.add_argument("--all-layers", action="store_true", help="Also compress embeddings and the last layer to int4.")
    p.add_argument("--awq", action="store_true", help="AWQ (data-free, or data-aware with --dataset).")
    p.add_argument("--scale-estimation", action="store_true", help="Scale estimation (needs --dataset).")
    p.add_argument("--gptq", action="store_true", help="GPTQ (needs --dataset).")
    p.add_argument("--dataset", help="Data-aware compression, e.g. wikitext2 or auto (downloads the dataset).")
    p.add_argument("--num-samples", type=int, help="Samples taken from --dataset.")
    p.add_argument("--no-trust-remote-code", dest="trust_remote_code", action="store_false", default=d.trust_remote_code,
                   help="Refuse model code from the Hub repo.")
    p.add_argument("--force", action="store_true", help="Export again even if OUT holds a complete export.")
    p.set_defaults(func=cmd_export)

    dl = sub.add_parser("download", help="Download a converted OpenVINO model from the Hugging Face Hub.",
                        description="Download a pre-converted OpenVINO model (e.g. OpenVINO/Phi-3-mini-4k-instruct-int4-ov). "
                        "Resumable: run it again after an interruption.")
    dl.add_argument("repo_id", help="Hub repo id of an OpenVINO model.")
    dl.add_argument("out", nargs="?", type=Path, help="Folder to write (default: the Hugging Face cache).")
    dl.add_argument("--revision", help="Branch, tag or commit (default main).")
    dl.set_defaults(func=cmd_download)


def cmd_export(args: argparse.Namespace) -> int:
    if (args.scale_estimation or args.gptq) and not args.dataset:
        raise ExportFailed("--scale-estimation and --gptq need data.", "Add --dataset wikitext2 (or auto).")
    options = ExportOptions(
        task=args.task, weight_format=args.weight_format, group_size=args.group_size, ratio=args.ratio, sym=args.sym,
        trust_remote_code=args.trust_remote_code, group_size_fallback=args.group_size_fallback,
        backup_precision=args.backup_precision, all_layers=args.all_layers, awq=args.awq,
        scale_estimation=args.scale_estimation, gptq=args.gptq, dataset=args.dataset, num_samples=args.num_samples)
    result = export(args.source, args.out, options, force=args.force)
    print(result.summary())
    return 0 if result.report.ok else 1


def cmd_download(args: argparse.Namespace) -> int:
    folder = download(args.repo_id, args.out, revision=args.revision)
    report = diagnose(folder)
    print(report.text())
    print(f"Serve it: python app.py --model {args.out or args.repo_id}")
    return 0 if report.ok else 1


def register_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="Check a model folder point by point (and repair what can be repaired).",
                       description="Check that an OpenVINO model folder can be served: model IR, tokenizer and "
                       "detokenizer IR, chat template, stop tokens, context length, weight precision; and the inference "
                       "precision the device computes in (PHI3OV_DEVICE, PHI3OV_OV_CONFIG). "
                       "Exit code 0 when it can be served, 1 when not.")
    p.add_argument("folder", type=Path, help="The model folder (holding openvino_model.xml).")
    p.add_argument("--fix", action="store_true", help="Repair what can be repaired without asking "
                   "(convert a missing tokenizer with openvino-tokenizers, add missing stop tokens).")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = ServerSettings.from_env()  # the device and --ov-config a server would use (PHI3OV_DEVICE, PHI3OV_OV_CONFIG)
    precision = check_precision(settings.device, dict(settings.ov_config))
    report = diagnose(args.folder)
    report.checks.append(precision)
    print(report.text())
    if report.fixable:
        if args.fix or _confirm(f"Repair {len(report.fixable)} point(s) now?"):
            for line in repair(args.folder, report):
                print(f"Repaired: {line}")
            report = diagnose(args.folder)
            report.checks.append(precision)
            print(report.text())
        else:
            print(f"To repair: phi3ov doctor {args.folder} --fix")
    return 0 if report.ok else 1


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [Y/n] ").strip().lower()
    except EOFError:
        return False
    return answer in ("", "y", "yes")
