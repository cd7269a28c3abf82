"""`gateway run | check | warm | schema | calls | call | simulate | loadtest`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import re
import sys
from pathlib import Path

from gateway.config.settings import Settings, load_settings
from gateway.errors import ConfigError, GatewayError

# The files `gateway schema` writes a JSON Schema for: file name -> the model ("module:class").
SCHEMAS = {
    "gateway": "gateway.config.settings:GatewayFile",
    "codec-profile": "gateway.config.codecs:CodecProfile",
    "dialplan": "gateway.dialplan.loader:DialplanFile",
    "agent-script": "gateway.script.loader:ScriptFile",
    "scenario": "gateway.caller.scenario:ScenarioFile",
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if rest and not args.own_flags:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    # The caller-side tools parse their own flags (the caller is a SIP phone, not the gateway).
    for name, func, what in (
        ("call", _call, "call a number and hold a spoken conversation (gateway call -h)"),
        ("simulate", _simulate, "scripted caller personas vs the agents, with assertions (gateway simulate -h)"),
        ("loadtest", _loadtest, "many concurrent calls; setup, latency, CPU (gateway loadtest -h)"),
    ):
        sub.add_parser(name, help=what, add_help=False).set_defaults(func=func, own_flags=True)
    run = sub.add_parser("run", help="answer calls")
    _common(run)
    run.add_argument("--sip-address", help="address to listen on for SIP and RTP")
    run.add_argument("--sip-port", type=int, help="SIP port (UDP and TCP)")
    run.add_argument("--metrics-port", type=int, help="Prometheus /metrics port")
    run.add_argument("--http-port", type=int,
                     help="HTTP port: WebRTC calls (WHIP) and the call page; 0 for none")
    run.add_argument("--rtp-port", type=int, help="first RTP port")
    run.add_argument("--tls-port", type=int, help="SIP over TLS port (with --tls-cert and --tls-key)")
    run.add_argument("--tls-cert", type=Path, help="PEM certificate of the TLS listener")
    run.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    run.add_argument("--srtp", choices=("off", "optional", "mandatory"), help="SRTP media (default off)")
    run.add_argument("--records", metavar="PATH|URL", help="call store: SQLite file or postgresql:// URL")
    run.add_argument("--workers", type=int, help="worker processes (more than 1 adds the front)")
    run.set_defaults(func=_run)
    check = sub.add_parser("check", help="validate config and dialplans, print file:line errors")
    _common(check)
    check.set_defaults(func=_check)
    warm = sub.add_parser("warm", help="render every dialplan prompt into the cache")
    _common(warm)
    warm.set_defaults(func=_warm)
    schema = sub.add_parser("schema", help="write JSON Schemas of the YAML files, for editors")
    schema.add_argument("--out", type=Path, default=Path("schemas"), help="directory (default: ./schemas)")
    schema.set_defaults(func=_schema)
    _calls_parser(sub)
    parser.set_defaults(own_flags=False)
    return parser


def _call(args: argparse.Namespace) -> int:
    from gateway.caller.phone_call import main as call_main

    return call_main(args.rest)


def _simulate(args: argparse.Namespace) -> int:
    from gateway.caller.simulate import main as simulate_main

    return simulate_main(args.rest)


def _loadtest(args: argparse.Namespace) -> int:
    from gateway.caller.loadtest import main as loadtest_main

    return loadtest_main(args.rest)


def _schema(args: argparse.Namespace) -> int:
    from gateway.config.schema import json_schema

    args.out.mkdir(parents=True, exist_ok=True)
    for name, target in SCHEMAS.items():
        module, _, attr = target.partition(":")
        path = args.out / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(getattr(importlib.import_module(module), attr)), indent=2) + "\n")
        print(path)
    return 0


def _calls_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    calls = sub.add_parser("calls", help="the call store: list, show, export, verify, purge")
    actions = calls.add_subparsers(dest="action", required=True)
    for name, what in (("list", "calls, newest last"), ("show", "one call's timeline and audit trail"),
                       ("export", "calls as JSON lines or CSV"), ("verify", "check the audit chains (exit 1 if broken)"),
                       ("purge", "apply retention now")):
        p = actions.add_parser(name, help=what)
        p.add_argument("--config", type=Path, help="gateway.yaml (its records: is the default store)")
        p.add_argument("--records", metavar="PATH|URL", help="call store: SQLite file or postgresql:// URL")
        if name in ("list", "export"):
            p.add_argument("--since", help="only calls started this long ago or later (30m, 1h, 7d)")
        if name == "list":
            p.add_argument("--number", help="caller or dialled number")
            p.add_argument("--outcome", action="append", default=[], help="completed, failed, ... (repeatable)")
        if name in ("list", "show"):
            p.add_argument("--json", action="store_true", help="JSON instead of text")
        if name == "show":
            p.add_argument("call_id")
        if name == "verify":
            p.add_argument("call_id", nargs="?")
        if name == "export":
            p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    calls.set_defaults(func=_calls)


def _calls(args: argparse.Namespace) -> int:
    import time

    from gateway.compliance.retention import parse_duration
    from gateway.store import report
    from gateway.store.calls import CallStore
    from gateway.store.db import StoreError
    from gateway.store.purge import purge

    try:
        settings = load_settings(args.config).with_overrides(**_records_override(args.records))
        since = time.time() - parse_duration(args.since) if getattr(args, "since", None) else None
        target = settings.records_target
        if isinstance(target, Path) and not target.exists():
            raise StoreError(f"{target}: no call store there (see records: in gateway.yaml, or --records)")
        store = CallStore(target)
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"gateway calls: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            calls = store.list_calls(since=since, number=args.number, outcome=args.outcome)
            print(json.dumps(calls, indent=2, default=str) if args.json else report.table(calls))
        elif args.action == "show":
            call = store.get_call(args.call_id)
            if call is None:
                print(f"gateway calls: no call {args.call_id!r} in {store.where}", file=sys.stderr)
                return 1
            print(json.dumps(call, indent=2, default=str) if args.json else report.show(call))
        elif args.action == "export":
            calls = store.full_calls(since=since)
            sys.stdout.write(report.jsonl(calls) if args.format == "jsonl" else report.csv_text(calls))
        elif args.action == "verify":
            broken = store.verify(args.call_id)
            for call_id, problem in broken:
                print(f"BROKEN {call_id}: {problem}")
            if broken:
                return 1
            count = 1 if args.call_id else len(store.list_calls())
            print(f"ok: {count} audit chain{'s' * (count != 1)} intact in {store.where}")
        else:
            done = purge(store, time.time())
            print(f"purged: {len(done.transcripts)} transcripts, {len(done.recordings)} recordings, "
                  f"{len(done.calls)} calls past their audit period")
    except StoreError as exc:
        print(f"gateway calls: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="gateway.yaml (default: built-in defaults)")
    p.add_argument("--dialplans", type=Path, help="dialplan directory (default: ./dialplans)")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    return settings.with_overrides(
        dialplans=args.dialplans,
        sip_address=getattr(args, "sip_address", None),
        sip_port=getattr(args, "sip_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        http_port=getattr(args, "http_port", None),
        rtp_port_start=getattr(args, "rtp_port", None),
        tls_port=getattr(args, "tls_port", None),
        tls_cert=_resolved(getattr(args, "tls_cert", None)),
        tls_key=_resolved(getattr(args, "tls_key", None)),
        srtp=getattr(args, "srtp", None),
        **_records_override(getattr(args, "records", None)),
        workers=getattr(args, "workers", None),
    )


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def _records_override(records: str | None) -> dict[str, object]:
    if records is None:
        return {}
    if re.match(r"^postgres(ql)?://", records):
        return {"records_url": records}
    return {"records": Path(records), "records_url": ""}


def _check(args: argparse.Namespace) -> int:
    from gateway.config.settings import read_settings
    from gateway.dialplan.loader import load_dialplans

    loaded, config_errors = read_settings(args.config)
    for error in config_errors:
        print(error, file=sys.stderr)  # every mistake at once, not one per run
    if loaded is None or config_errors:
        return 1
    settings = _settings(args)
    plans, errors = load_dialplans(settings.dialplans)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 1
    provider_errors = provider_problems(settings)
    for error in provider_errors:
        print(error, file=sys.stderr)
    if provider_errors:
        return 1
    build_errors, build_notes = _check_build(settings)
    for error in build_errors:
        print(error, file=sys.stderr)
    if build_errors:
        return 1
    print(f"ok: config ({settings.frame_ms} ms media frames) and "
          f"{len(plans.plans) + (plans.default is not None)} dialplans in {settings.dialplans}")
    print("\n".join(build_notes))
    return 0


def _check_build(settings: Settings) -> tuple[list[ConfigError], list[str]]:
    """The codec profile against the pjsua2 module installed here, and what that module can do."""
    from gateway.config.codecs import read_codec_profile

    try:
        from gateway.sip.build import probe
    except ImportError:
        return [], ["pjsua2 is not installed here: codec names checked, not the module's codecs"]
    build = probe()
    notes = [build.summary()]
    if settings.calls_per_worker > build.max_calls:
        notes.append(f"warning: calls_per_worker {settings.calls_per_worker} is above the "
                     f"{build.max_calls} calls this pjsua2 module holds")
    return read_codec_profile(settings.codec_profile, build.codecs)[1], notes


def provider_problems(settings: Settings) -> list[str]:
    """Every configured cloud provider built once, as `run` builds them: a missing key, package or
    bad option is a line naming the setting and what to do, not a traceback at the first call."""
    from gateway.speech.registry import make_llm, make_stt, make_tts

    local = ("local", "whisper", "piper")
    options = settings.provider_options
    wanted = [("stt", name, make_stt) for name in settings.stt if name not in local]
    if settings.tts not in local:
        wanted.append(("tts", settings.tts, make_tts))
    problems = []
    for setting, name, make in wanted:
        try:
            make(name, **options.get(name, {}))
        except GatewayError as exc:
            problems.append(f"{setting}: {exc}")
        except Exception as exc:  # noqa: BLE001 - an SDK's own failure, reported as the setting's
            problems.append(f"{setting}: {name}: {type(exc).__name__}: {exc}")
    if settings.llm:
        llm = dict(settings.llm)
        try:
            make_llm(str(llm.pop("provider", "openai")), **llm)
        except GatewayError as exc:
            problems.append(f"llm: {exc}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"llm: {type(exc).__name__}: {exc}")
    return problems


def _warm(args: argparse.Namespace) -> int:
    from gateway.dialplan.loader import load_dialplans, flow_texts
    from gateway.worker.runner import TRANSFER_FAILED_TEXT
    from gateway.speech.prompts import PromptRenderer

    settings = _settings(args)
    plans, _errors = load_dialplans(settings.dialplans)
    renderer = PromptRenderer(settings.cache_dir / "prompts")
    texts = flow_texts(plans) | {TRANSFER_FAILED_TEXT}
    rendered = sum(renderer.cached(text) is None and bool(renderer.render(text)) for text in texts)
    print(f"{len(texts)} prompts, {rendered} newly rendered")
    return 0


class OneLineFormatter(logging.Formatter):
    """One record, one line: control characters in a message (from a SIP header, a model, a
    webhook) are escaped, so nothing a caller sends can forge or hide a log line."""

    _CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        text = super().formatMessage(record)
        return self._CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    problems = provider_problems(settings)
    if problems:
        for problem in problems:
            print(f"gateway run: {problem}", file=sys.stderr)
        return 1
    if settings.workers > 1:
        from gateway.ops.supervisor import Supervisor

        return Supervisor(settings, args.config).run()
    from gateway.store.db import StoreError
    from gateway.worker.server import Worker

    try:
        asyncio.run(Worker(settings).run())
    except (StoreError, GatewayError) as exc:
        logging.getLogger("gateway").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
