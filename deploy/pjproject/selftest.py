"""Build-time check of the pjsua2 module compiled in deploy/Dockerfile: it imports, the library
initialises with the null sound device, and Opus is among the codecs. Exits non-zero otherwise."""

import sys

import pjsua2 as pj


def main() -> int:
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    codecs = sorted(info.codecId for info in ep.codecEnum2())
    version = ep.libVersion().full
    ep.libDestroy()
    print(f"pjsua2 {version}; codecs: {', '.join(codecs)}")
    wanted = ("PCMU/8000", "PCMA/8000", "G722/16000", "opus/48000")
    missing = [name for name in wanted if not any(c.startswith(name) for c in codecs)]
    if missing:
        print("missing codecs:", ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
